"""Likes and reposts (issue 16): For You with reposts against For You without them, and the
latency of liking, measured in one run as ratios.

Configurations, each `label=tree:database_url` (a source tree for PYTHONPATH and a seeded
database), are measured in alternating rounds, each round in a fresh process: it signs in
`--readers` active readers (sessions made directly), warms up, then requests For You for each
reader `--requests` times in total through the WSGI application (no HTTP server) and reports
the wall time per page and the process CPU per page. The readers are the same in every
configuration: the lowest ids of active readers whose For You (in the first database) shows at
least one post there only through a repost.

    .venv/bin/python bench/interactions_cost.py --rounds 4 --requests 400 \\
      --config base=/tmp/wt16l_base/src:postgres://postgres@127.0.0.1:5432/mb_wt16l_medium0 \\
      --config none=src:postgres://postgres@127.0.0.1:5432/mb_wt16l_medium0 \\
      --config reposts=src:postgres://postgres@127.0.0.1:5432/mb_wt16l_medium

`--likes N` (with `--config` naming one configuration): N likes, then N unlikes, of random
posts by random readers, through the htmx POST (the page's button), one after another; reports
p50, p95, p99 and max.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CSRF = "benchcsrftoken0123456789abcdefgh"


def setup_django() -> None:
    os.environ.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-" + "x" * 50,
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0",
            "RATELIMIT_ENABLED": "0",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "microblog.settings",
        }
    )
    import django

    django.setup()


def wsgi_caller():  # type: ignore[no-untyped-def]
    import io

    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()

    def call(path: str, cookie: str, body: bytes = b"", htmx: bool = False) -> tuple[str, bytes]:
        env = {
            "REQUEST_METHOD": "POST" if body else "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8400",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8400",
            "HTTP_COOKIE": cookie,
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        if body:
            env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
            env["CONTENT_LENGTH"] = str(len(body))
            env["HTTP_X_CSRFTOKEN"] = CSRF
        if htmx:
            env["HTTP_HX_REQUEST"] = "true"
        status: list[str] = []
        chunks = app(env, lambda s, h, e=None: status.append(s))
        try:
            content = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return status[0], content

    return call


def sign_in(user_ids: list[int]) -> list[str]:
    from django.test import Client

    from microblog.accounts.models import User

    cookies = []
    for user in User.objects.filter(id__in=user_ids).order_by("id"):
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF}")
    return cookies


def pick_readers(count: int) -> list[int]:
    """Active readers whose first For You page shows a post only through a repost."""
    from django.db import connection

    from microblog.accounts.models import User
    from microblog.timelines import fanout, selectors

    chosen: list[int] = []
    for user in User.objects.filter(last_seen_at__gte=fanout.active_cutoff()).order_by("id")[:3000]:
        page = selectors.for_you(user)
        followed = set(user.following_set.values_list("followed_id", flat=True)) | {user.id}
        if any(post.author_id not in followed for post in page.items):
            chosen.append(user.id)
            if len(chosen) == count:
                break
    connection.close()
    return chosen


def worker(args: argparse.Namespace) -> None:
    setup_django()
    call = wsgi_caller()
    readers = json.loads(args.readers_json)
    cookies = sign_in(readers)
    if args.likes:
        likes(call, cookies, args.likes)
        return
    for cookie in cookies:  # warm up: compiled queries, templates, the database's cache
        for _ in range(3):
            assert call("/", cookie)[0].startswith("200")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for n in range(args.requests):
        status, _ = call("/", cookies[n % len(cookies)])
        assert status.startswith("200"), status
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(
        json.dumps({"wall_ms": 1000 * wall / args.requests, "cpu_ms": 1000 * cpu / args.requests})
    )


def likes(call, cookies: list[str], count: int) -> None:  # type: ignore[no-untyped-def]
    import random

    from microblog.posts.models import Post

    rng = random.Random(1)
    newest = list(
        Post.objects.filter(is_deleted=False, is_hidden=False)
        .order_by("-id")
        .values_list("id", flat=True)[:20000]
    )
    pairs = [(rng.choice(cookies), rng.choice(newest)) for _ in range(count)]
    for verb in ("like", "unlike"):
        times = []
        for cookie, post_id in pairs:
            t0 = time.perf_counter()
            status, body = call(f"/posts/{post_id}/{verb}", cookie, b"x=1", htmx=True)
            times.append(1000 * (time.perf_counter() - t0))
            assert status.startswith("200"), (status, body[:200])
        times.sort()
        q = statistics.quantiles(times, n=100)
        print(
            json.dumps(
                {
                    "verb": verb,
                    "n": len(times),
                    "p50_ms": round(q[49], 2),
                    "p95_ms": round(q[94], 2),
                    "p99_ms": round(q[98], 2),
                    "max_ms": round(times[-1], 2),
                }
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--likes", type=int, default=0)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--pick", action="store_true")
    parser.add_argument("--readers-json", default="[]")
    args = parser.parse_args()
    if args.pick:
        setup_django()
        print(json.dumps(pick_readers(args.readers)))
        return
    if args.worker:
        worker(args)
        return
    configs = []
    for item in args.config:
        label, _, rest = item.partition("=")
        tree, _, url = rest.partition(":")
        configs.append((label, str(Path(tree).resolve()), url))

    def run(tree: str, url: str, *extra: str) -> str:
        env = {**os.environ, "PYTHONPATH": tree, "DATABASE_URL": url}
        return subprocess.run(
            [sys.executable, __file__, "--config", "x", *extra],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    # Readers chosen once, in the last configuration's database (the one with reposts).
    readers = run(configs[-1][1], configs[-1][2], "--pick", "--readers", str(args.readers)).strip()
    print(f"readers: {readers}", file=sys.stderr)
    if args.likes:
        label, tree, url = configs[-1]
        print(
            run(tree, url, "--worker", "--likes", str(args.likes), "--readers-json", readers),
            end="",
        )
        return
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in configs}
    for round_number in range(args.rounds):
        for label, tree, url in configs:
            out = run(
                tree, url, "--worker", "--requests", str(args.requests), "--readers-json", readers
            )
            out = out.strip().splitlines()[-1]  # the last line (slow-query log lines before it)
            results[label].append(json.loads(out))
            print(f"round {round_number + 1} {label}: {out.strip()}", file=sys.stderr)
    base = configs[0][0]
    base_wall = statistics.median(r["wall_ms"] for r in results[base])
    base_cpu = statistics.median(r["cpu_ms"] for r in results[base])
    for label, runs in results.items():
        wall = statistics.median(r["wall_ms"] for r in runs)
        cpu = statistics.median(r["cpu_ms"] for r in runs)
        print(
            f"{label:10} wall {wall:6.2f} ms/page (x{wall / base_wall:.3f})   "
            f"cpu {cpu:6.2f} ms/page (x{cpu / base_cpu:.3f})   rounds {len(runs)}"
        )


if __name__ == "__main__":
    main()
