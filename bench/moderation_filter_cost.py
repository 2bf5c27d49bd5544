"""What moderation's read filters cost For You: the feed-ids statement as it is
(timelines.selectors._feed_ids_sql, with the NOT EXISTS checks for hidden posts, mutes and
blocks) against the same statement without them (the statement before moderation, kept here as
the baseline), for the same random active users, alternating which runs first, in one run.

Two states of the data: as seeded (nothing hidden, no mutes: the common case), then with moderation
in use: 1% of recent top-level posts hidden and every sampled reader muting 5 accounts they follow.
The second state is undone at the end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_bench_medium \
        .venv/bin/python bench/moderation_filter_cost.py --users 300
"""

import argparse
import json
import random
import time

from _common import RESULTS, command_line, machine, setup_django, summary

BASELINE = """
    WITH stored AS (
        SELECT post_id FROM {FEED}
        WHERE user_id = %s AND post_id < %s AND post_id >= %s
        ORDER BY post_id DESC LIMIT {limit}
    ),
    floor AS MATERIALIZED (
        SELECT CASE WHEN COUNT(*) = {limit} THEN MIN(post_id) ELSE %s END AS lo FROM stored
    )
    SELECT post_id FROM stored
    UNION
    SELECT cp.id FROM floor, {FOLLOWS} f
    JOIN {USERS} c ON c.id = f.followed_id
    CROSS JOIN LATERAL (
        SELECT p.id FROM {POSTS} p
        WHERE p.author_id = f.followed_id AND p.parent_id IS NULL
          AND p.id < %s AND p.id >= floor.lo
        ORDER BY p.id DESC LIMIT {limit}
    ) AS cp
    WHERE f.follower_id = %s AND c.is_celebrity
    ORDER BY 1 DESC LIMIT {limit}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--random-seed", type=int, default=1)
    args = parser.parse_args()
    setup_django()

    from django.conf import settings
    from django.db import connection, transaction

    from microblog.accounts.models import User
    from microblog.core.pagination import MAX_ID
    from microblog.follows.models import Follow
    from microblog.moderation.models import Mute
    from microblog.posts.models import Post
    from microblog.timelines import fanout, selectors

    limit = settings.PAGE_SIZE + 1
    tables = {"FEED": fanout.FEED, "FOLLOWS": fanout.FOLLOWS, "USERS": fanout.USERS}
    baseline = BASELINE.format(limit=limit, POSTS=fanout.POSTS, **tables)
    active = list(
        User.objects.filter(last_seen_at__gte=fanout.active_cutoff(), following_count__gt=5)
        .order_by("id")
        .values_list("id", flat=True)
    )
    rng = random.Random(args.random_seed)
    users = list(User.objects.in_bulk(rng.sample(active, min(args.users, len(active)))).values())

    def run(sql: str, params: list[int]) -> tuple[float, list[int]]:
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(sql, params)
            rows = [row[0] for row in cursor.fetchall()]
            return (time.perf_counter() - started) * 1000, rows

    def measure(state: str) -> dict[str, object]:
        times: dict[str, list[float]] = {"filtered": [], "baseline": []}
        dropped = 0
        for repeat in range(args.repeats + 1):  # the first pass warms caches and plans
            for i, user in enumerate(users):
                filtered_sql, params = selectors._feed_ids_sql(
                    user.id, MAX_ID, user.feed_horizon, limit
                )
                base_params = [
                    user.id,
                    MAX_ID,
                    user.feed_horizon,
                    user.feed_horizon,
                    MAX_ID,
                    user.id,
                ]
                pair = [("filtered", filtered_sql, params), ("baseline", baseline, base_params)]
                if i % 2:
                    pair.reverse()
                ids = {}
                for name, sql, p in pair:
                    ms, ids[name] = run(sql, p)
                    if repeat:
                        times[name].append(ms)
                if repeat == 1:
                    dropped += len(set(ids["baseline"]) - set(ids["filtered"]))
        stats = {k: summary(v) for k, v in times.items()}
        for name, s in stats.items():
            print(
                f"{state:>10} {name:<9} p50 {s['p50']:.3f} p95 {s['p95']:.3f} p99 {s['p99']:.3f} ms"
            )
        ratio = {
            q: round(stats["filtered"][q] / stats["baseline"][q], 2) for q in ("p50", "p95", "p99")
        }
        print(
            f"{state:>10} filtered / baseline = {ratio}; entries filtered out on page 1: {dropped}"
        )
        return {"ms": stats, "ratio_filtered_over_baseline": ratio, "entries_filtered": dropped}

    results = {"as_seeded": measure("as seeded")}

    # Moderation in use: hide 1% of recent top-level posts, each reader mutes 5 followed accounts.
    recent = list(
        Post.objects.filter(parent__isnull=True)
        .order_by("-id")
        .values_list("id", flat=True)[:50_000]
    )
    hidden = rng.sample(recent, len(recent) // 100)
    with transaction.atomic():
        Post.objects.filter(id__in=hidden).update(is_hidden=True)
        mutes = []
        for user in users:
            followed = list(
                Follow.objects.filter(follower_id=user.id).values_list("followed_id", flat=True)[
                    :50
                ]
            )
            mutes += [
                Mute(muter_id=user.id, muted_id=m)
                for m in rng.sample(followed, min(5, len(followed)))
            ]
        Mute.objects.bulk_create(mutes, ignore_conflicts=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE posts_post; ANALYZE moderation_mute")
    try:
        results["in_use"] = measure("in use")
    finally:
        with transaction.atomic():
            Post.objects.filter(id__in=hidden).update(is_hidden=False)
            Mute.objects.filter(muter_id__in=[u.id for u in users]).delete()

    out = {
        "benchmark": "moderation_filter_cost",
        "command": command_line(),
        "machine": machine(),
        "dataset": {
            "users": User.objects.count(),
            "follows": Follow.objects.count(),
            "posts": Post.objects.count(),
        },
        "sampled_users": len(users),
        "repeats": args.repeats,
        "in_use_state": {"hidden_posts": len(hidden), "mutes": len(mutes)},
        **results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "moderation_filter_cost.json").write_text(
        json.dumps(out, indent=2, default=str) + "\n"
    )


if __name__ == "__main__":
    main()
