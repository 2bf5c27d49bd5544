"""Where a For You page 1 request spends its time: cProfile over a loop of Django test-client
requests (the whole stack: middleware, session, auth, selector, Jinja2), in production settings.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_load_medium \\
        .venv/bin/python bench/profile_for_you.py --requests 500 --users 50
"""

import argparse
import cProfile
import io
import os
import pstats
import time

from _common import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--path", default="/")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("RATELIMIT_ENABLED", "0")  # 500 pages of one reader would hit "feeds"
    os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
    os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
    setup_django()
    from django.test import Client

    from microblog.accounts.models import User

    users = list(User.objects.filter(following_count__gt=0).order_by("?")[: args.users])
    clients = []
    for user in users:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        clients.append(client)
    for client in clients:  # warm-up: caches, prepared statements, Jinja2 templates
        assert client.get(args.path).status_code == 200
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for n in range(args.requests):
        response = clients[n % len(clients)].get(args.path)
        assert response.status_code == 200
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(
        f"{args.requests} requests of {args.path} in {elapsed:.2f} s under cProfile: "
        f"{elapsed / args.requests * 1000:.2f} ms each (profiling roughly doubles it)"
    )
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(args.top)
    out.write("\n--- by own time ---\n")
    stats.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
