"""CPU per signed-in home page with rate limits on and off, in one process, in alternating
blocks: what the limiter's check costs the app, without a load generator's noise.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_bench_ratelimit
    REDIS_URL=redis://127.0.0.1:6379/13 PYTHONPATH=src .venv/bin/python bench/ratelimit_cpu.py \\
        --store redis --blocks 6

The limits are raised so that nothing is refused; every request still runs its check (the
"requests" and "feeds" rules of one reader from one address). Needs a migrated database with a
user who follows someone (bench/ratelimit_cost.py leaves one).
"""

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["redis", "database"], default="database")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
    os.environ.update(
        SECRET_KEY="bench-only-" + "x" * 40,
        DEBUG="0",
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        LOG_LEVEL="WARNING",
        RATELIMIT_STORE=args.store,
        RATELIMIT_REQUESTS="1000000/5m",
        RATELIMIT_FEEDS="1000000/1m",
    )
    import django

    django.setup()
    from django.test import Client, override_settings

    from microblog.accounts.models import User

    user = User.objects.filter(following_count__gt=0).order_by("id").first()
    assert user is not None, "no user who follows anyone: run bench/ratelimit_cost.py first"
    client = Client()
    client.force_login(user)
    for block in range(args.blocks):
        enabled = block % 2 == 1
        with override_settings(RATELIMIT_ENABLED=enabled):
            for _ in range(50):  # warm-up of this block's path
                client.get("/")
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.requests):
                response = client.get("/")
                assert response.status_code == 200, response.status_code
            cpu = (time.process_time() - cpu) / args.requests * 1e6
            wall = (time.perf_counter() - wall) / args.requests * 1e6
        state = "on " if enabled else "off"
        print(f"{args.store} limits {state}: {cpu:6.0f} us CPU, {wall:6.0f} us wall per request")


if __name__ == "__main__":
    main()
