"""What a page's post cards cost through each level of the fragment cache (core.fragments):
rendered (no cache), from this process's LRU, from Redis (a fresh process: one MGET for the
page), and from the database (Django's database cache backend, `get_many` of the page's keys:
what a database shared level would cost without Redis). CPU time of this process per page of
`--cards` cards, median of `--rounds` rounds of `--pages` pages each.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_wt15_medium \\
        REDIS_URL=redis://127.0.0.1:6379/1 .venv/bin/python bench/fragment_cost.py \\
        --out bench/results/fragment_cost.json
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _common import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=20)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 50)
    setup_django()
    from django.conf import settings
    from django.core.cache.backends.db import DatabaseCache
    from django.core.management import call_command

    from microblog.core.fragments import FragmentCache, LocalLRU, RedisStore
    from microblog.posts import cards
    from microblog.posts.models import Post
    from microblog.posts.selectors import with_card_authors

    posts = list(
        with_card_authors(Post.objects.filter(parent__isnull=True, is_deleted=False)).order_by(
            "-id"
        )[: args.cards]
    )
    views = [cards.card_view(p) for p in posts]

    def make(local: bool, shared: object = None) -> FragmentCache:
        return FragmentCache(
            name="post_card",
            render=cards.render_fragment,
            encode=cards.encode_parts,
            decode=cards.decode_parts,
            size=cards.parts_size,
            version=cards._template_version,
            local=LocalLRU(1 << 24) if local else None,
            shared=shared,  # type: ignore[arg-type]
        )

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        fn()  # warm
        t0 = time.process_time()
        for _ in range(args.pages):
            fn()
        return (time.process_time() - t0) / args.pages * 1e6

    results: dict[str, list[float]] = {}
    rendered = make(local=False)
    local = make(local=True)
    redis_url = os.environ.get("REDIS_URL") or settings.REDIS_URL
    table = "bench_fragment_cache"
    call_command("createcachetable", table, verbosity=0)
    db_cache = DatabaseCache(table, {})
    db_keys = [rendered.shared_key(v) for v in views]
    db_cache.set_many(
        {k: cards.encode_parts(rendered.render(v)) for k, v in zip(db_keys, views, strict=True)}
    )
    for _ in range(args.rounds):
        results.setdefault("rendered (no cache)", []).append(
            timed(lambda: rendered.get_many(views))
        )
        results.setdefault("local LRU hit", []).append(timed(lambda: local.get_many(views)))
        if redis_url:
            store = RedisStore(redis_url, prefix="bench-frag:", ttl_seconds=600, retry_seconds=1)
            shared_only = make(local=False, shared=store)
            shared_only.get_many(views)  # written once
            results.setdefault("Redis hit (MGET, no local level)", []).append(
                timed(lambda cache=shared_only: cache.get_many(views))
            )
        results.setdefault("database cache get_many (Django's DB backend)", []).append(
            timed(lambda: db_cache.get_many(db_keys))
        )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {table}")
    summary = {
        name: {
            "cpu_us_per_page": round(statistics.median(v), 1),
            "rounds": [round(x, 1) for x in v],
        }
        for name, v in results.items()
    }
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cards_per_page": args.cards,
        "pages_per_round": args.pages,
        "load_average": os.getloadavg()[0],
        "results": summary,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
