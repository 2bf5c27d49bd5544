"""Python CPU per page, measured in-process through the WSGI handler (no HTTP server, no load
generator), for one or more source trees in alternating rounds, so a change is measured as a
ratio against its baseline in the same run on the same (shared, noisy) machine.

Each round starts one fresh process per tree (PYTHONPATH=<tree>), which signs in a few seeded
readers (sessions made directly, no password hashing), warms up every page, then calls the WSGI
application for each page `--requests` times in a row and reports the CPU time of the process
(time.process_time: this process only; PostgreSQL's time is not in it) and the wall time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_perf_seed .venv/bin/python \\
        bench/page_cpu.py --fixture /tmp/load_fixture.json \\
        --trees /tmp/base/src,src --pages for_you,profile,thread --requests 300 --rounds 4

One tree under cProfile (top 40 functions of each page on stderr):

    PYTHONPATH=src DATABASE_URL=... .venv/bin/python bench/page_cpu.py --worker --profile 40 \\
        --fixture /tmp/load_fixture.json --pages for_you

**Posting** (issue 15 item 4): `post` is the compose form POSTed as the rotating readers (a
top-level post, 302), `post_reply` a reply by them to one post (the newest top-level post of the
fixture's last reader, never the 200-reply thread, whose size other pages measure),
`post_celebrity` a top-level post as the fixture's celebrity (1M followers: not fanned out, merged
at read time), `post_tagged` a top-level post with a hashtag and a mention of another reader (its
tag, mention and notification rows). The request is what is measured: the fan-out job it enqueues
runs later in `microblog worker` (not started here: the jobs wait in the queue for the next
worker). These pages write to the database (every round adds `--requests` posts per page).

Every page's query count is recorded too (`queries`: one request after the warm-up, counted with
an execute wrapper, outside the timed loop).

The fixture is the one bench/load_setup.py writes (readers, the celebrity, the 200-reply thread).
Production settings: DEBUG=0, rate limits off, request log at WARNING (as `make bench`).

**The floor** (`floor`, `floor_signed_out`; always measured, whatever --pages says): what Django
itself costs here. A minimal view added by this script (not by the tree, so every tree is
measured against the same floor) at `/__floor`, behind the tree's own settings and middleware
stack (so signed in it pays the session and user reads, as every page does), reads one post row
through the ORM and renders a small Jinja2 template through the same template engine. Every page
is reported in CPU microseconds per request and as a ratio to the floor of the same process, so
the ratio does not move with the machine's load as much as the absolute figure. `floor_bare` is
the same view through a handler with no middleware at all: Django's own request handling, one
ORM read and the template; the difference to `floor_signed_out` is what the middleware stack
costs every request.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAGES = (
    "floor",
    "floor_signed_out",
    "floor_bare",
    "up",
    "for_you",
    "for_you_p2",
    "following",
    "profile",
    "thread",
    "all",
    "post",
    "post_reply",
    "post_celebrity",
    "post_tagged",
    "signed_out",
    "profile_signed_out",
    "thread_signed_out",
    "tag",
    "tag_signed_out",
    "search",
    "search_signed_out",
    "search_rare",
    "notifications",
    "notifications_celebrity",
    "api_home",
)
CSRF = "benchcsrftoken0123456789abcdefgh"  # 32 characters: an unmasked CSRF secret
FLOOR_PAGES = ("floor", "floor_signed_out", "floor_bare")
FLOOR_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><main><article id="post-{{ post.id }}"><p>{{ post.content }}</p>
<time datetime="{{ post.created_at.isoformat() }}">{{ post.created_at }}</time></article>
{% if request.user is defined and request.user.is_authenticated -%}
<p>Signed in as {{ request.user.username }}</p>{% endif %}
</main></body></html>
"""


def floor_of(page: str) -> str:
    """The floor a page is compared with: signed out against signed out."""
    return "floor_signed_out" if page.endswith(("signed_out", "_bare")) else "floor"


def install_floor(post_id: int) -> None:
    """Adds `/__floor` in front of the tree's URLconf: one row read, one small Jinja2 template."""
    import types

    from django.conf import settings
    from django.http import HttpRequest, HttpResponse
    from django.template import engines
    from django.urls import clear_url_caches, include, path

    from microblog.posts.models import Post

    template = next(e for e in engines.all() if e.__class__.__name__ == "Jinja2").from_string(
        FLOOR_TEMPLATE
    )

    def floor(request: HttpRequest) -> HttpResponse:
        post = Post.objects.get(pk=post_id)
        return HttpResponse(template.render({"title": "Floor", "post": post}, request))

    module = types.ModuleType("page_cpu_floor_urls")
    root = __import__(settings.ROOT_URLCONF, fromlist=["urlpatterns"])
    module.urlpatterns = [path("__floor", floor), path("", include(settings.ROOT_URLCONF))]  # type: ignore[attr-defined]
    for handler in ("handler400", "handler403", "handler404", "handler500"):
        if hasattr(root, handler):
            setattr(module, handler, getattr(root, handler))
    sys.modules[module.__name__] = module
    settings.ROOT_URLCONF = module.__name__
    clear_url_caches()


def worker(args: argparse.Namespace) -> None:
    import atexit
    import shutil
    import tempfile

    # As under `microblog serve`: metrics in multiprocess mode (files in this directory).
    metrics_dir = tempfile.mkdtemp(prefix="page-cpu-metrics-")
    atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-" + "x" * 50,
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0",
            "RATELIMIT_ENABLED": "0",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "DJANGO_SETTINGS_MODULE": "microblog.settings",
        }
    )
    import django

    django.setup()
    import io
    import re

    from django.core.wsgi import get_wsgi_application
    from django.test import Client

    from microblog.accounts.models import User

    fixture = json.loads(Path(args.fixture).read_text())
    install_floor(int(fixture["thread_id"]))
    app = get_wsgi_application()
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    stack, settings.MIDDLEWARE = settings.MIDDLEWARE, []
    bare_app = WSGIHandler()  # reads MIDDLEWARE once, here
    settings.MIDDLEWARE = stack
    names = fixture["readers"][: args.users]
    cookies = []
    readers = list(User.objects.filter(username__in=names))
    for user in readers:
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF}")

    # The client API's home timeline (microblog.api): the same readers, by bearer token.
    tokens: dict[str, str] = {}
    if "api_home" in args.pages:
        import secrets
        from datetime import timedelta

        from django.utils import timezone
        from oauth2_provider.models import AccessToken

        from microblog.api.services import app_register

        client_app, _ = app_register(
            name="page_cpu", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scopes="read"
        )
        for cookie, user in zip(cookies, readers, strict=True):
            tokens[cookie] = secrets.token_urlsafe(32)
            AccessToken.objects.create(
                user=user,
                application=client_app,
                token=tokens[cookie],
                scope="read",
                expires=timezone.now() + timedelta(days=1),
            )

    def environ(path: str, cookie: str | None, body: bytes = b"") -> dict:
        path, _, query = path.partition("?")
        env = {
            "REQUEST_METHOD": "POST" if body else "GET",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8400",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8400",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        if cookie and path.startswith("/api/"):
            env["HTTP_AUTHORIZATION"] = f"Bearer {tokens[cookie]}"
        elif cookie:
            env["HTTP_COOKIE"] = cookie
        if body:
            env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
            env["CONTENT_LENGTH"] = str(len(body))
        return env

    def call(
        path: str, cookie: str | None, body: bytes = b"", handler: Any = None
    ) -> tuple[str, bytes]:
        status: list[str] = []
        chunks = (handler or app)(
            environ(path, cookie, body), lambda s, h, e=None: status.append(s)
        )
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        return status[0], content

    # Page 2 of each reader's For You, through the "Load more" cursor of page 1.
    cursor_re = re.compile(rb'class="load-more[^"]*" href="\?cursor=(\d+)"')
    page2 = {}
    for cookie in cookies:
        _, content = call("/", cookie)
        match = cursor_re.search(content)
        page2[cookie] = "/?cursor=" + match.group(1).decode() if match else "/"
    post_n = [0]
    # A reply's parent: the newest top-level post of the fixture's last reader (made here when
    # there is none), so replies never grow the 200-reply thread other pages measure.
    reply_parent = None
    if "post_reply" in args.pages:
        from microblog.posts.models import Post
        from microblog.posts.services import post_create

        parent_author = User.objects.get(username=fixture["readers"][-1])
        reply_parent = (
            Post.objects.filter(author=parent_author, parent_id=None, is_deleted=False)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        ) or post_create(author=parent_author, content="page_cpu: replies go here").id
    # The celebrity (user 1) has the most notifications (replies to their posts).
    celebrity_client = Client()
    celebrity_client.force_login(User.objects.get(username=fixture["celebrity"]))
    celebrity_cookie = f"sessionid={celebrity_client.cookies['sessionid'].value}; csrftoken={CSRF}"

    def request(page: str, n: int) -> tuple[str, bytes]:
        cookie = cookies[n % len(cookies)]
        if page == "floor":
            return call("/__floor", cookie)
        if page == "floor_signed_out":
            return call("/__floor", None)
        if page == "floor_bare":
            return call("/__floor", None, handler=bare_app)
        if page == "up":
            return call("/up", cookie)
        if page == "for_you":
            return call("/", cookie)
        if page == "api_home":
            return call("/api/v1/timelines/home", cookie)
        if page == "for_you_p2":
            return call(page2[cookie], cookie)
        if page == "following":
            return call("/following", cookie)
        if page == "profile":
            return call("/@" + fixture["celebrity"], cookie)
        if page == "thread":
            return call("/posts/" + fixture["thread_id"], cookie)
        if page == "all":
            return call("/all", cookie)
        if page == "signed_out":
            return call("/all", None)
        if page == "profile_signed_out":
            return call("/@" + fixture["celebrity"], None)
        if page == "thread_signed_out":
            return call("/posts/" + fixture["thread_id"], None)
        # Issue 16: a popular tag's page and searches (a common word; a rare one). The fixture
        # may name them ("tag", "search_word", "rare_word"); defaults suit the seeded texts.
        if page == "tag":
            return call("/tags/" + fixture.get("tag", "tech"), cookie)
        if page == "tag_signed_out":
            return call("/tags/" + fixture.get("tag", "tech"), None)
        if page == "search":
            return call("/search?q=" + fixture.get("search_word", "coffee"), cookie)
        if page == "search_signed_out":
            return call("/search?q=" + fixture.get("search_word", "coffee"), None)
        if page == "search_rare":
            return call("/search?q=" + fixture.get("rare_word", "straßenbahn7"), cookie)
        if page == "notifications":
            return call("/notifications", cookie)
        if page == "notifications_celebrity":
            return call("/notifications", celebrity_cookie)
        if page.startswith("post"):
            post_n[0] += 1
            body = f"csrfmiddlewaretoken={CSRF}&content=page_cpu+{time.time_ns()}+{post_n[0]}"
            if page == "post_reply":
                body += f"&parent_id={reply_parent}"
            elif page == "post_celebrity":
                cookie = celebrity_cookie
            elif page == "post_tagged":
                mention = fixture["readers"][(n + 1) % len(fixture["readers"])]
                body += f"+%23benchtag+%40{mention}"
            return call("/posts", cookie, body.encode())
        raise SystemExit(f"unknown page {page}")

    for page in args.pages:  # warm-up: templates, prepared statements, caches
        for n in range(max(len(cookies), 20)):
            status, _ = request(page, n)
            if not status.startswith("302" if page.startswith("post") else "200"):
                raise SystemExit(f"{page}: {status}")
    # One more request per page with its queries counted (outside the timed loop).
    from django.db import connection

    counted = [0]

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counted[0] += 1
        return execute(sql, params, many, context)

    queries = {}
    for page in args.pages:
        counted[0] = 0
        with connection.execute_wrapper(count):
            request(page, 0)
        queries[page] = counted[0]
    results = {}
    for page in args.pages:
        if args.profile:
            import cProfile
            import pstats

            # CPU time, not wall time: waits on PostgreSQL and for the cores are left out.
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n in range(args.requests):
            request(page, n)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        if args.profile:
            profiler.disable()
            if args.profile_dump:  # for pstats' callers and callees: `python -m pstats FILE`
                profiler.dump_stats(f"{args.profile_dump}.{page}.pstats")
            stats = pstats.Stats(profiler, stream=sys.stderr)
            print(f"--- {page}: cumulative ---", file=sys.stderr)
            stats.sort_stats("cumulative").print_stats(args.profile)
            print(f"--- {page}: own time ---", file=sys.stderr)
            stats.sort_stats("tottime").print_stats(args.profile)
        results[page] = {
            "cpu_us": (cpu1 - cpu0) / args.requests * 1e6,
            "wall_us": (wall1 - wall0) / args.requests * 1e6,
            "queries": queries[page],
        }
    print("PAGE_CPU " + json.dumps(results), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fixture", default="/tmp/load_fixture.json")
    parser.add_argument("--trees", default=str(HERE.parent / "src"))
    parser.add_argument("--pages", default="for_you,profile,thread")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="with --worker: cProfile each page and print its N top functions to stderr",
    )
    parser.add_argument(
        "--profile-dump",
        default="",
        help="with --profile: also write each page's stats to PREFIX.<page>.pstats",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.pages = [p for p in args.pages.split(",") if p]
    # The floor is measured in every run, first, so every page has its ratio to it.
    args.pages = [*FLOOR_PAGES, *(p for p in args.pages if p not in FLOOR_PAGES)]
    for page in args.pages:
        if page not in PAGES:
            sys.exit(f"unknown page {page}; known: {', '.join(PAGES)}")
    if args.worker:
        worker(args)
        return
    trees = [str(Path(t).resolve()) for t in args.trees.split(",")]
    samples: dict[str, dict[str, list[dict]]] = {t: {p: [] for p in args.pages} for t in trees}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = [os.getloadavg()[0]]
    for round_no in range(args.rounds):
        order = trees if round_no % 2 == 0 else list(reversed(trees))
        for tree in order:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    "--fixture",
                    args.fixture,
                    "--pages",
                    ",".join(args.pages),
                    "--requests",
                    str(args.requests),
                    "--users",
                    str(args.users),
                ],
                env={**os.environ, "PYTHONPATH": tree},
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            line = next((x for x in out.stdout.splitlines() if x.startswith("PAGE_CPU ")), None)
            if line is None:
                sys.exit(f"{tree}: no result\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
            for page, figures in json.loads(line.removeprefix("PAGE_CPU ")).items():
                samples[tree][page].append(figures)
            loads.append(os.getloadavg()[0])
            print(
                f"round {round_no + 1} {tree}: "
                + ", ".join(f"{p} {samples[tree][p][-1]['cpu_us']:.0f} us" for p in args.pages),
                flush=True,
            )
    base = trees[0]
    report: dict = {
        "date": started,
        "requests": args.requests,
        "rounds": args.rounds,
        "load_average": [min(loads), max(loads)],
        "trees": {},
    }
    print(
        f"\nCPU per request (us): median of {args.rounds} rounds, ratio to the first tree "
        f"(and the fastest round), and to the floor of the same process (median of the rounds' "
        f"ratios); load average {min(loads):.2f}-{max(loads):.2f}"
    )
    print("| page | " + " | ".join(trees) + " |")
    print("|---|" + "---|" * len(trees))
    for page in args.pages:
        cells = []
        base_cpu = statistics.median(s["cpu_us"] for s in samples[base][page])
        base_low = min(s["cpu_us"] for s in samples[base][page])
        floor_page = floor_of(page)
        for tree in trees:
            cpu = statistics.median(s["cpu_us"] for s in samples[tree][page])
            low = min(s["cpu_us"] for s in samples[tree][page])
            wall = statistics.median(s["wall_us"] for s in samples[tree][page])
            floor_ratios = [
                s["cpu_us"] / f["cpu_us"]
                for s, f in zip(samples[tree][page], samples[tree][floor_page], strict=True)
            ]
            floor_ratio = statistics.median(floor_ratios)
            report["trees"].setdefault(tree, {})[page] = {
                "cpu_us": round(cpu),
                "cpu_us_min": round(low),
                "wall_us": round(wall),
                "cpu_ratio": round(cpu / base_cpu, 3),
                "cpu_ratio_min": round(low / base_low, 3),
                "floor": floor_page,
                "floor_ratio": round(floor_ratio, 2),
                "rounds_cpu_us": [round(s["cpu_us"]) for s in samples[tree][page]],
                "rounds_floor_ratio": [round(r, 2) for r in floor_ratios],
                "queries": samples[tree][page][-1].get("queries"),
            }
            cells.append(
                f"{cpu:,.0f} x{cpu / base_cpu:.2f} (min {low:,.0f} x{low / base_low:.2f}) "
                f"= {floor_ratio:.1f}x floor, {samples[tree][page][-1].get('queries')} q"
            )
        print(f"| {page} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
