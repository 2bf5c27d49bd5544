"""For You (stored fan-out feed, timelines.selectors.for_you) against the pull query
(selectors.for_you_pull), side by side in one run, for random active users of a database
seeded with `microblog seed --preset medium` (100k users, 5M follows): page 1 and a deeper page
(page 5, by cursor). Times whole selector calls (id query plus loading the 20 posts and authors,
Python included) and, separately, the database time of the statements each call runs (measured
around every execute, rows fetched included), alternating which runs first. Also writes
EXPLAIN (ANALYZE, BUFFERS) of every query both make for one user with a median follow count.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/microblog_bench_medium \
        .venv/bin/python bench/feed_query.py --users 300
"""

import argparse
import json
import random
import time

from _common import RESULTS, command_line, machine, setup_django, summary

TARGET_RATIO = 10.0
DEEP_PAGE = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--random-seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--out-name", default="feed_query", help="Result files' base name.")
    parser.add_argument(
        "--warmup-users", type=int, default=None, help="Users warmed up first (default: all)."
    )
    args = parser.parse_args()
    setup_django()

    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from microblog.accounts.models import User
    from microblog.follows.models import Follow
    from microblog.posts.models import Post
    from microblog.timelines import fanout, selectors

    cutoff = fanout.active_cutoff()
    active = list(
        User.objects.filter(last_seen_at__gte=cutoff).order_by("id").values_list("id", flat=True)
    )
    rng = random.Random(args.random_seed)
    users = list(User.objects.in_bulk(rng.sample(active, min(args.users, len(active)))).values())
    rng.shuffle(users)
    size = settings.PAGE_SIZE
    deep_items = size * (DEEP_PAGE - 1)

    def deep_cursor(user: User) -> int | None:
        ids = list(
            selectors.for_you_pull_query(user)
            .order_by("-id")
            .values_list("id", flat=True)[: deep_items + 1]
        )
        return ids[deep_items - 1] if len(ids) > deep_items else None

    db_ms = [0.0]

    def db_timer(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            db_ms[0] += (time.perf_counter() - started) * 1000

    def timed(fn, *a) -> tuple[float, float, list[int]]:
        db_ms[0] = 0.0
        with connection.execute_wrapper(db_timer):
            started = time.perf_counter()
            page = fn(*a)
            total = (time.perf_counter() - started) * 1000
        return total, db_ms[0], [p.id for p in page.items]

    # Warm-up: both queries, both pages, for every sampled user, so neither side pays for a
    # cold start: pages in cache, and with server-side binding (settings, DB_SERVER_SIDE_BINDING)
    # every statement prepared and past the 5 custom plans PostgreSQL makes before it settles
    # on a generic one, as on a long-lived connection of a busy server.
    for user in users[: args.warmup_users]:
        for cursor in (None, deep_cursor(user)):
            selectors.for_you(user, cursor)
            selectors.for_you_pull(user, cursor)
    keys = [f"{page}_{side}" for page in ("p1", "deep") for side in ("push", "pull")]
    times: dict[str, list[float]] = {k: [] for k in keys + [f"{k}_db" for k in keys]}
    deadline = time.monotonic() + args.max_seconds
    mismatches = 0
    for i, user in enumerate(users):
        if time.monotonic() > deadline:
            break
        for label, cursor in (("p1", None), ("deep", deep_cursor(user))):
            if label == "deep" and cursor is None:
                continue  # fewer than DEEP_PAGE pages
            pair = [(f"{label}_push", selectors.for_you), (f"{label}_pull", selectors.for_you_pull)]
            if i % 2:
                pair.reverse()
            seen = {}
            for key, fn in pair:
                ms, db, ids = timed(fn, user, cursor)
                times[key].append(ms)
                times[f"{key}_db"].append(db)
                seen[key] = ids
            mismatches += seen[f"{label}_push"] != seen[f"{label}_pull"]
    stats = {k: summary(v) for k, v in times.items() if v}
    for key, s in stats.items():
        print(
            f"{key:<13} n={s['n']:>4}  p50 {s['p50']:7.2f} ms  p95 {s['p95']:7.2f} ms  "
            f"p99 {s['p99']:7.2f} ms  max {s['max']:7.2f} ms"
        )
    ratios = {}
    for label in ("p1", "deep", "p1_db", "deep_db"):
        page, _, db = label.partition("_")
        push, pull = f"{page}_push{_}{db}", f"{page}_pull{_}{db}"
        if push in stats:
            ratios[label] = {
                q: round(stats[pull][q] / stats[push][q], 1) for q in ("p50", "p95", "p99")
            }
            print(f"{label}: pull / For You = {ratios[label]}")
    print(f"pages that differed between For You and the pull query: {mismatches}")

    # EXPLAIN of every query of one user with a median follow count (page 1 and the deep page).
    by_follows = sorted(users, key=lambda u: u.following_count)
    sample = next(
        (u for u in by_follows[len(by_follows) // 2 :] if deep_cursor(u) is not None), users[0]
    )
    explain = [
        f"User #{sample.id}: follows {sample.following_count}, of them "
        f"{Follow.objects.filter(follower_id=sample.id, followed__is_celebrity=True).count()} "
        f"celebrities; feed horizon {sample.feed_horizon}. Data: {User.objects.count():,} users, "
        f"{Follow.objects.count():,} follows, {Post.objects.count():,} posts.\n"
    ]
    for label, cursor in (("page 1", None), (f"page {DEEP_PAGE}", deep_cursor(sample))):
        for name, fn in (("For You", selectors.for_you), ("pull", selectors.for_you_pull)):
            with CaptureQueriesContext(connection) as captured:
                fn(sample, cursor)
            for n, query in enumerate(captured.captured_queries, 1):
                with connection.cursor() as db:
                    db.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                    plan = "\n".join(row[0] for row in db.fetchall())
                explain.append(
                    f"### {name}, {label}, query {n} of {len(captured.captured_queries)}\n\n"
                    f"```sql\n{query['sql']}\n```\n\n```\n{plan}\n```\n"
                )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out_name}_explain.md").write_text("\n".join(explain))
    out = {
        "benchmark": "feed_query",
        "command": command_line(),
        "machine": machine(),
        "dataset": {
            "users": User.objects.count(),
            "follows": Follow.objects.count(),
            "posts": Post.objects.count(),
        },
        "db_options": {
            k: v
            for k, v in connection.settings_dict["OPTIONS"].items()
            if k in ("server_side_binding", "prepare_threshold")
        },
        "warmup_users": len(users[: args.warmup_users]),
        "deep_page": DEEP_PAGE,
        "ms": {k: {q: round(v, 2) for q, v in s.items()} for k, s in stats.items()},
        "ratio_pull_over_for_you": ratios,
        "mismatched_pages": mismatches,
        "target_ratio": TARGET_RATIO,
    }
    (RESULTS / f"{args.out_name}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
