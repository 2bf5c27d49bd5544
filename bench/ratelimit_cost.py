"""Cost of the rate limiter: home page throughput with limits on against limits off, in one run.

Starts two app processes (granian WSGI, production settings) on the same database, one with
RATELIMIT_ENABLED=1 and one with RATELIMIT_ENABLED=0, and drives the signed-in home page (For You,
a reader following 30 authors, a full page of 20 posts) of each with wrk, in alternating rounds
so machine noise hits both alike. With limits on, the limits are raised so that no request is
refused: every request still runs its check (the "requests" and "feeds" counters, one
`INSERT ... ON CONFLICT ... RETURNING` per request), on the same two hot rows (one reader, one
address: the worst case for row contention). Prints JSON with requests/s for each and the ratio
(target: limits on >= 90% of limits off). Every response must be a 200.

    createdb -h 127.0.0.1 -U postgres mb_bench_ratelimit
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_bench_ratelimit \\
        .venv/bin/python bench/ratelimit_cost.py --seconds 10 --rounds 3

`--store redis` (with REDIS_URL) counts on Redis instead of the database.
"""

# ruff: noqa: E402 (Django is set up before the app modules are imported)
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.conf import settings
from django.core.management import call_command
from django.test import Client

from microblog.accounts.models import User
from microblog.follows.services import follow_create
from microblog.posts.services import post_create

HUGE = "1000000000/1m"


def prepare() -> User:
    call_command("migrate", verbosity=0)
    reader = User.objects.filter(username="rlc_reader").first()
    if reader is not None:
        return reader
    reader = User.objects.create_user(username="rlc_reader", password="bench-password-1")
    for n in range(30):
        author = User.objects.create_user(username=f"rlc_author{n}", password="bench-password-1")
        follow_create(follower=reader, followed=author)
        post_create(author=author, content=f"post number {n} by author {n}")
    return reader


def session_cookie(reader: User) -> str:
    client = Client()
    client.force_login(reader)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(port: int, env: dict[str, str], workers: int, threads: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--no-ws",
        "microblog.wsgi:application",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    sys.exit(f"the app on port {port} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wrk(port: int, cookie: str, seconds: int, connections: int) -> float:
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "-H",
        f"Cookie: {settings.SESSION_COOKIE_NAME}={cookie}",
        f"http://127.0.0.1:{port}/",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output or "Socket errors" in output:
        sys.exit(f"some requests failed:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def statement_cost(calls: int = 500) -> dict[str, float]:
    """Microseconds per check, the limiter's own statement against the same upsert committed
    synchronously (PostgreSQL: the limiter turns synchronous_commit off for its statement)."""
    from django.db import connection

    from microblog import ratelimit

    store = ratelimit.DatabaseStore()
    slot = [("bench:statement", 0, 1)]
    plain = (
        "INSERT INTO core_ratelimitcounter (key, window_start, count, expires_at) "
        "VALUES (%s, %s, 1, %s) ON CONFLICT (key, window_start) DO UPDATE "
        "SET count = core_ratelimitcounter.count + 1 RETURNING key, count"
    )

    def limiter() -> None:
        store.hit(slot)

    def synchronous() -> None:
        with connection.cursor() as cursor:
            cursor.execute(plain, list(slot[0]))
            cursor.fetchall()

    result = {}
    for name, function in (("limiter_statement_us", limiter), ("synchronous_us", synchronous)):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        result[name] = round((time.perf_counter() - start) / calls * 1e6, 1)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM core_ratelimitcounter WHERE key = %s", ["bench:statement"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--store", choices=["database", "redis"], default="database")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (apt-get install wrk)")

    reader = prepare()
    cookie = session_cookie(reader)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMIT_")}
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)
    metrics_dir = tempfile.mkdtemp(prefix="rlc-metrics-")
    base["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    on_env = {
        **base,
        "RATELIMIT_ENABLED": "1",
        "RATELIMIT_STORE": args.store,
        "RATELIMIT_REQUESTS": HUGE,
        "RATELIMIT_FEEDS": HUGE,
    }
    off_env = {**base, "RATELIMIT_ENABLED": "0"}
    ports = {"on": free_port(), "off": free_port()}
    processes = {}
    try:
        processes["on"] = start(ports["on"], on_env, args.workers, args.threads)
        processes["off"] = start(ports["off"], off_env, args.workers, args.threads)
        # Check the set-up: limits on answers with the headers, limits off without.
        for name, port in ports.items():
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/",
                headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                has = response.headers.get("X-RateLimit-Limit") is not None
                assert response.status == 200 and has == (name == "on"), (name, has)
        for port in ports.values():
            wrk(port, cookie, 3, args.connections)  # warm-up
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.rounds):
            for name in ("off", "on"):
                rates[name].append(wrk(ports[name], cookie, args.seconds, args.connections))
    finally:
        for process in processes.values():
            stop(process)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    cost = statement_cost() if args.store == "database" else {}
    result = {
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "store": args.store,
        "limits_off_req_per_s": round(off, 1),
        "limits_on_req_per_s": round(on, 1),
        "ratio": round(on / off, 3),
        "rounds_req_per_s": {name: [round(r, 1) for r in values] for name, values in rates.items()},
        "seconds_per_round": args.seconds,
        "connections": args.connections,
        "web_workers": args.workers,
        "threads": args.threads,
        "target_met": on / off >= 0.9,
        **cost,
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
