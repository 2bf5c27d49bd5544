"""Cost of the request log and metrics middleware on a real page, with the Django test client.

Runs the same For You page (a reader following 30 authors, a full page of 20 posts) through two
handlers, one with `RequestLogMiddleware` and one without, in alternating rounds so machine noise
hits both alike, and prints requests per second and microseconds per request for each.

    createdb -h 127.0.0.1 -U postgres mb_bench_overhead
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_bench_overhead \
        .venv/bin/python bench/request_overhead.py --requests 2000 --rounds 5

The request log lines go to /dev/null (formatted and written, as in production). `--micro` times
the middleware alone around a stub view that runs 4 `SELECT 1` (no page rendering, so the
difference is less drowned in noise).
"""

# ruff: noqa: E402 (Django is set up before the app modules are imported)
import argparse
import json
import logging
import os
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django

django.setup()

from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings

from microblog.accounts.models import User
from microblog.follows.services import follow_create
from microblog.posts.services import post_create

MIDDLEWARE = "microblog.ops.requestlog.RequestLogMiddleware"


def prepare() -> User:
    call_command("migrate", verbosity=0)
    reader = User.objects.filter(username="ovh_reader").first()
    if reader is not None:
        return reader
    reader = User.objects.create_user(username="ovh_reader", password="bench-password-1")
    for n in range(30):
        author = User.objects.create_user(username=f"ovh_author{n}", password="bench-password-1")
        follow_create(follower=reader, followed=author)
        post_create(author=author, content=f"post number {n} by author {n}")
    return reader


def client(reader: User, with_log: bool) -> Client:
    middleware = list(settings.MIDDLEWARE)
    if not with_log:
        middleware.remove(MIDDLEWARE)
    with override_settings(MIDDLEWARE=middleware):
        c = Client()
        c.force_login(reader)
        c.get("/")  # loads the middleware chain under these settings
    return c


def run(c: Client, requests: int) -> float:
    start = time.perf_counter()
    for _ in range(requests):
        response = c.get("/")
        assert response.status_code == 200
    return time.perf_counter() - start


def micro(rounds: int, calls: int = 5000) -> dict[str, float]:
    from django.db import connection
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve

    from microblog.ops.requestlog import RequestLogMiddleware

    match = resolve("/")

    def view(request: HttpRequest) -> HttpResponse:
        request.resolver_match = match
        with connection.cursor() as cursor:
            for _ in range(4):
                cursor.execute("SELECT 1")
                cursor.fetchone()
        return HttpResponse("x")

    wrapped = RequestLogMiddleware(view)
    request = RequestFactory().get("/")

    def per_call(handler: object) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            handler(request)  # type: ignore[operator]
        return (time.perf_counter() - start) / calls * 1e6

    per_call(view), per_call(wrapped)
    bare = statistics.median(per_call(view) for _ in range(rounds))
    logged = statistics.median(per_call(wrapped) for _ in range(rounds))
    return {
        "stub_us": round(bare, 1),
        "stub_with_middleware_us": round(logged, 1),
        "overhead_us": round(logged - bare, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--micro", action="store_true")
    args = parser.parse_args()

    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    logging.getLogger().handlers = [handler]

    if args.micro:
        json.dump(micro(args.rounds), sys.stdout, indent=2)
        print()
        return
    reader = prepare()
    clients = {"without": client(reader, False), "with": client(reader, True)}
    for c in clients.values():
        run(c, 200)  # warm-up
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.rounds):
        for name, c in clients.items():
            seconds[name].append(run(c, args.requests))
    result = {}
    for name, times in seconds.items():
        best = statistics.median(times)
        result[name] = {
            "req_per_s": round(args.requests / best, 1),
            "us_per_request": round(best / args.requests * 1e6, 1),
            "rounds_us_per_request": [round(t / args.requests * 1e6, 1) for t in times],
        }
    result["overhead_us"] = round(
        result["with"]["us_per_request"] - result["without"]["us_per_request"], 1
    )
    result["database"] = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    result["requests_per_round"] = args.requests
    result["rounds"] = args.rounds
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
