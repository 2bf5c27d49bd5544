"""The scaled layout under load, one run (issue 14, "Measured"): `make cluster`'s processes
(microblog.cluster: HAProxy, 3 web instances, stream, worker, PgBouncer, PostgreSQL primary +
streaming replica) on a copy of a seeded database, measured from /proc per tier.

    createdb -h 127.0.0.1 -U postgres mb_seed14
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_seed14 .venv/bin/microblog migrate
    DATABASE_URL=... .venv/bin/microblog seed --preset seed --random-seed 1
    .venv/bin/python bench/cluster_bench.py \\
        --from-database postgres://postgres@127.0.0.1:5432/mb_seed14 --out cluster_seed

Scenarios, in this order, each a bounded wrk run (1 thread, --connections, --seconds) after a
2-second warm-up, every response checked (status 200 and content, bench/wrk/_common.lua):

- For You signed in through the balancer with 3, 2 and 1 web instances enabled (the others
  disabled on HAProxy's admin socket), and directly to one instance; --rounds times, the order
  reversed every other round;
- the profile of user 1 (1,027,000 followers at the seed preset) and the 200-reply thread,
  through the balancer, 3 instances;
- posting with fan-out: --posters signed-in seeded users post through the balancer's forms
  (each answer must be the 302 of a published post) for --seconds, with --streams For You
  streams open through the balancer; then until the job queue is empty (fan-out done);
- For You again with the web instances restarted without REPLICA_DATABASE_URLS: every read
  on the primary.

Per scenario: req/s, p50/p99, errors (bad statuses, failed checks, socket errors: must be 0),
CPU seconds of each tier (HAProxy, web instances, PgBouncer, primary and replica: every process
of each PostgreSQL server, stream, worker, the load generator), WAL bytes written by the
primary, feed rows inserted and deleted, peak server connections. Cost per request = tier CPU /
requests. Traffic goes to 127.0.0.1 only; the cluster is stopped at the end (--keep leaves it).
"""

import argparse
import http.cookiejar
import json
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from _common import RESULTS
from run_bench import CLK_TCK, ROOT, busy_seconds, cpu_ticks, descendants, run_wrk

from microblog.cluster import WEB_INSTANCES, Cluster

PASSWORD = "seeded-password-1"  # microblog seed's password for every seeded user


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def signed_in(base: str, username: str) -> tuple[urllib.request.OpenerDirector, str, str]:
    """An opener with the user's session, the form's CSRF token and the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    page = opener.open(base + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD}
    ).encode()
    try:
        opener.open(base + "/login", data=data, timeout=10)
    except urllib.error.HTTPError as answer:
        if answer.code != 302:
            raise SystemExit(f"could not sign in as {username}: {answer.code}") from None
    home = opener.open(base + "/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home).group(1)
    session = next(c.value for c in jar if c.name == "sessionid")
    return opener, token, session


# --- the tiers -----------------------------------------------------------------------------


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git": git,
        "command": " ".join(sys.argv),
    }


def postmaster(cluster: Cluster, server: str) -> int:
    return int((cluster.pg_dir(server) / "postmaster.pid").read_text().split()[0])


def tier_pids(cluster: Cluster) -> dict[str, list[int]]:
    tiers: dict[str, list[int]] = {"balancer": [], "web": [], "pooler": []}
    tiers["balancer"] = [cluster.pids["lb"], *descendants(cluster.pids["lb"])]
    for name in WEB_INSTANCES:
        tiers["web"] += [cluster.pids[name], *descendants(cluster.pids[name])]
    tiers["pooler"] = [cluster.pids["pgbouncer"]]
    for server in ("primary", "replica"):
        pid = postmaster(cluster, server)
        tiers[server] = [pid, *descendants(pid)]
    for name in ("stream", "worker"):
        tiers[name] = [cluster.pids[name], *descendants(cluster.pids[name])]
    return tiers


class Meter:
    """CPU seconds per tier between start() and stop(); processes that appear in between (new
    PostgreSQL backends) count from zero."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def start(self) -> None:
        self.before = {t: cpu_ticks(p) for t, p in tier_pids(self.cluster).items()}
        self.machine_before = busy_seconds()
        self.self_before = resource.getrusage(resource.RUSAGE_SELF)
        self.wal_before = self.cluster.psql("primary", "SELECT pg_current_wal_lsn()")
        self.feed_before = feed_rows(self.cluster)
        self.t0 = time.monotonic()

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        cpu = {}
        for tier, pids in tier_pids(self.cluster).items():
            after = cpu_ticks(pids)
            before = self.before.get(tier, {})
            cpu[tier] = sum(t - before.get(pid, 0) for pid, t in after.items()) / CLK_TCK
        me = resource.getrusage(resource.RUSAGE_SELF)
        cpu["bench_process"] = (me.ru_utime - self.self_before.ru_utime) + (
            me.ru_stime - self.self_before.ru_stime
        )
        wal = int(
            self.cluster.psql(
                "primary", f"SELECT pg_current_wal_lsn() - '{self.wal_before}'::pg_lsn"
            ).split(".")[0]
        )
        inserted, deleted = (
            a - b for a, b in zip(feed_rows(self.cluster), self.feed_before, strict=True)
        )
        return {
            "wall_s": round(wall, 2),
            "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
            "machine_busy_cores": round((busy_seconds() - self.machine_before) / wall, 2),
            "wal_bytes": wal,
            "feed_rows_inserted": inserted,
            "feed_rows_deleted": deleted,
        }


def feed_rows(cluster: Cluster) -> tuple[int, int]:
    cluster.psql("primary", "SELECT pg_stat_force_next_flush()")
    row = cluster.psql(
        "primary",
        "SELECT n_tup_ins, n_tup_del FROM pg_stat_user_tables "
        "WHERE relname = 'timelines_feedentry'",
    )
    ins, dele = row.split("|")
    return int(ins), int(dele)


def client_connections(cluster: Cluster, server: str) -> int:
    return int(
        cluster.psql(
            server,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
    )


class ConnectionPeak(threading.Thread):
    """Samples the client connections of both servers every second while a scenario runs."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.done = cluster, threading.Event()
        self.peak = {"primary": 0, "replica": 0}

    def run(self) -> None:
        while not self.done.wait(1):
            for server in self.peak:
                self.peak[server] = max(self.peak[server], client_connections(self.cluster, server))


def set_web_instances(cluster: Cluster, count: int) -> None:
    """Enables the first `count` web instances on the balancer and disables the rest."""
    for n, name in enumerate(WEB_INSTANCES):
        command = f"{'enable' if n < count else 'disable'} server web/{name}\n"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(cluster.root / "haproxy.sock"))
            sock.sendall(command.encode())
            sock.recv(4096)
    enabled = {f"web/{name}" for name in WEB_INSTANCES[:count]}
    cluster.wait_for_balancer(enabled, "UP", 10)


# --- scenarios -------------------------------------------------------------------------------


def read_scenario(cluster, base, path, expect, cookies_file, seconds, connections) -> dict:
    wrk_env = {"WRK_COOKIES": str(cookies_file), "WRK_PATH": path, "WRK_EXPECT": expect}
    run_wrk(base, "for_you.lua", 2, connections, wrk_env)  # warm-up, not measured
    meter, peak = Meter(cluster), ConnectionPeak(cluster)
    meter.start()
    peak.start()
    command, gen_cpu, out = run_wrk(base, "for_you.lua", seconds, connections, wrk_env)
    peak.done.set()
    peak.join()
    figures = meter.stop()
    figures["cpu_s"]["load_generator"] = round(gen_cpu, 3)
    errors = out["bad_responses"] + out["socket_errors"] + out["non_2xx_3xx"]
    return {
        "command": " ".join(f"{k}={v}" for k, v in wrk_env.items()) + " " + " ".join(command),
        "requests": out["requests"],
        "rps": round(out["rps"], 1),
        "p50_ms": round(out["p50_ms"], 2),
        "p99_ms": round(out["p99_ms"], 2),
        "errors": errors,
        "peak_client_connections": peak.peak,
        **figures,
    }


def open_streams(base: str, sessions: list[str], stop: threading.Event) -> list[threading.Thread]:
    """For You event streams through the balancer, read until `stop`."""
    host, port = base.removeprefix("http://").split(":")
    threads = []

    def hold(session: str) -> None:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                (
                    f"GET /events/?feed=for_you HTTP/1.1\r\nHost: localhost\r\n"
                    f"Cookie: sessionid={session}\r\nAccept: text/event-stream\r\n\r\n"
                ).encode()
            )
            sock.settimeout(0.5)
            first = b""
            while not stop.is_set():
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                first = first or chunk
            if not first.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"stream refused: {first[:80]!r}")

    for session in sessions:
        thread = threading.Thread(target=hold, args=(session,), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def post_scenario(cluster, base, posters, stream_sessions, seconds, max_posts) -> dict:
    stop_streams = threading.Event()
    streams = open_streams(base, stream_sessions, stop_streams)
    time.sleep(1)
    results = {"ok": 0, "errors": 0, "latencies": []}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def post_loop(n: int, opener, token: str) -> None:
        for i in range(max_posts):
            if time.monotonic() >= deadline:
                return
            data = urllib.parse.urlencode(
                {"csrfmiddlewaretoken": token, "content": f"bench post {i} of poster {n}"}
            ).encode()
            t0 = time.monotonic()
            try:
                opener.open(base + "/posts", data=data, timeout=10)
                status = 200  # a 200 is the form again: not published
            except urllib.error.HTTPError as answer:
                status = answer.code
            except OSError:
                status = 0
            with lock:
                results["latencies"].append(time.monotonic() - t0)
                results["ok" if status == 302 else "errors"] += 1

    newest_before = int(cluster.psql("primary", "SELECT max(id) FROM posts_post"))
    meter = Meter(cluster)
    meter.start()
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=post_loop, args=(n, opener, token))
        for n, (opener, token, _s) in enumerate(posters)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posting_s = time.monotonic() - t0
    pending = wait_for_empty_queue(cluster, 300)  # every fan-out job has run
    drained_s = time.monotonic() - t0
    time.sleep(3)  # idle backends (the worker's) report their table counters within seconds
    figures = meter.stop()
    fanned_rows = int(
        cluster.psql(
            "primary", f"SELECT count(*) FROM timelines_feedentry WHERE post_id > {newest_before}"
        )
    )
    stop_streams.set()
    for thread in streams:
        thread.join(timeout=5)
    latencies = sorted(results["latencies"])
    count = len(latencies)
    return {
        "posters": len(posters),
        "open_streams": len(stream_sessions),
        "posts": results["ok"],
        "errors": results["errors"],
        "posting_s": round(posting_s, 2),
        "posts_per_s": round(results["ok"] / posting_s, 1),
        "p50_ms": round(latencies[count // 2] * 1000, 1) if count else None,
        "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1000, 1) if count else None,
        "fan_out_done_after_s": round(drained_s, 2),
        "queue_empty": pending == 0,
        "feed_rows_of_new_posts": fanned_rows,
        **figures,
    }


def wait_for_empty_queue(cluster: Cluster, timeout: float) -> int:
    """Until no job is ready or running (bounded); returns how many still are."""
    deadline = time.monotonic() + timeout
    while True:
        pending = int(
            cluster.psql(
                "primary",
                "SELECT count(*) FROM django_tasks_database_dbtaskresult "
                "WHERE status IN ('READY', 'RUNNING')",
            )
        )
        if pending == 0 or time.monotonic() >= deadline:
            return pending
        time.sleep(0.5)


def restart_web_without_replica(cluster: Cluster) -> None:
    for name in WEB_INSTANCES:
        cluster.stop_process(name)
    for name in WEB_INSTANCES:
        env = cluster.app_env(name)
        env.pop("REPLICA_DATABASE_URLS", None)
        cluster.spawn(name, cluster.app_command(name), env)
    cluster.wait_until_up(WEB_INSTANCES)


def per_request(run: dict, requests: int) -> dict:
    return {tier: round(cpu * 1000 / requests, 3) for tier, cpu in run["cpu_s"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from-database", required=True)
    parser.add_argument("--dir", type=Path, default=ROOT / "data" / "cluster-bench")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--posters", type=int, default=4)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--max-posts", type=int, default=2000, help="per poster")
    parser.add_argument("--out", default="cluster_seed")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()

    os.environ.update(
        {
            "RATELIMIT_ENABLED": "0",
            "LOG_LEVEL": "WARNING",
            "READ_YOUR_WRITES_SECONDS": "5",
            # The periodic trim of every active feed takes minutes at the seed preset (872,684
            # active readers, docs/benchmarks.md) and the one worker runs it between fan-outs:
            # not during the measurements (see also the schedule's next run, below).
            "FEEDS_TRIM_INTERVAL": "86400",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    cluster = Cluster(args.dir, from_database=args.from_database)
    t0 = time.monotonic()
    cluster.start()
    started_s = time.monotonic() - t0
    print(f"cluster up in {started_s:.0f} s at {cluster.url}", flush=True)
    # Processes left by an earlier run (--keep) may have other settings: this run's, fresh
    # (cold caches and connections, as after a deploy), and an empty queue.
    for name in (*WEB_INSTANCES, "worker"):
        cluster.stop_process(name)
        cluster.start_app_process(name)
    cluster.wait_until_up(WEB_INSTANCES)
    cluster.psql(
        "primary",
        "UPDATE core_scheduledjob SET next_run_at = now() + interval '1 day' "
        "WHERE name = 'feeds_trim'",
    )
    wait_for_empty_queue(cluster, 900)
    base = cluster.url.rstrip("/")
    result: dict = {"machine": machine(), "cluster_start_s": round(started_s, 1), "runs": {}}
    try:
        fixture_path = args.dir / "fixture.json"
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "load_setup.py"), "--out", str(fixture_path)],
            env={**os.environ, "DATABASE_URL": cluster.pg_url("primary"), "DEBUG": "1"},
            check=True,
            timeout=600,
        )
        fixture = json.loads(fixture_path.read_text())
        result["dataset"] = fixture["dataset"]
        result["sizes"] = {
            "database": cluster.psql(
                "primary", "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ),
            "feed_entries": cluster.psql("primary", "SELECT count(*) FROM timelines_feedentry"),
        }
        readers = fixture["readers"]
        n_cookies = max(args.connections * 2, 16)
        sessions = [signed_in(base, name)[2] for name in readers[:n_cookies]]
        cookies_file = args.dir / "cookies.txt"
        cookies_file.write_text("".join(f"sessionid={s}\n" for s in sessions))
        # Reads must reach the replica: the sign-ins' read-your-writes window passes.
        time.sleep(6)
        result["load_before"] = os.getloadavg()
        direct = f"http://127.0.0.1:{cluster.ports['web1']}"
        for_you = ("/", 'class="post')
        order = [("lb_3", 3), ("lb_2", 2), ("lb_1", 1), ("direct_1", 0)]
        for round_no in range(args.rounds):
            for label, count in order if round_no % 2 == 0 else list(reversed(order)):
                set_web_instances(cluster, count or 3)
                url = direct if count == 0 else base
                run = read_scenario(
                    cluster, url, *for_you, cookies_file, args.seconds, args.connections
                )
                run["load_avg"] = os.getloadavg()
                result["runs"].setdefault(f"for_you_{label}", []).append(run)
                print(label, round_no, run["rps"], run["p99_ms"], run["errors"], flush=True)
        set_web_instances(cluster, 3)
        pages = {
            "profile_celebrity": (
                f"/@{fixture['celebrity']}",
                f"{fixture['celebrity_followers']:,}",
            ),
            "thread_200_replies": (
                f"/posts/{fixture['thread_id']}",
                "Load-test thread: 200 replies",
            ),
        }
        for label, (path, expect) in pages.items():
            run = read_scenario(
                cluster, base, path, expect, cookies_file, args.seconds, args.connections
            )
            run["load_avg"] = os.getloadavg()
            result["runs"][label] = [run]
            print(label, run["rps"], run["p99_ms"], run["errors"], flush=True)
        posters = [signed_in(base, name) for name in readers[n_cookies : n_cookies + args.posters]]
        stream_sessions = [
            signed_in(base, n)[2] for n in readers[n_cookies + args.posters :][: args.streams]
        ]
        run = post_scenario(cluster, base, posters, stream_sessions, args.seconds, args.max_posts)
        run["load_avg"] = os.getloadavg()
        result["runs"]["post_fan_out"] = [run]
        print(
            "post",
            run["posts_per_s"],
            run["p99_ms"],
            run["errors"],
            run["feed_rows_inserted"],
            flush=True,
        )
        time.sleep(6)  # the posters' read-your-writes windows pass
        restart_web_without_replica(cluster)
        run = read_scenario(cluster, base, *for_you, cookies_file, args.seconds, args.connections)
        run["load_avg"] = os.getloadavg()
        result["runs"]["for_you_lb_3_no_replica"] = [run]
        print("no replica", run["rps"], run["p99_ms"], run["errors"], flush=True)
        # Cost per request (ms of CPU per tier), from the runs.
        result["cost_ms_per_request"] = {
            label: [per_request(r, r["requests"] if "requests" in r else r["posts"]) for r in runs]
            for label, runs in result["runs"].items()
        }
    finally:
        out = RESULTS / f"{args.out}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        if not args.keep:
            cluster.stop()


if __name__ == "__main__":
    main()
