"""Grows a seeded bench database to more top-level posts per author, for bench/feed_query.py:
the pull query's cost grows with the followed authors' posts, the stored feed's does not.

Adds top-level posts (authors drawn uniformly from all users) until the database holds
`--per-user` top-level posts per user on average, created at random times over the last `--days`
days, with ids in the layout of microblog.core.ids (milliseconds since EPOCH_MS, then 22 low
bits), loaded with COPY. Then rebuilds every active reader's stored feed and horizon in bulk, with
the seeder's set-based statements (the fan-out rules, as `microblog seed` builds them), and fixes
users' post counts, so the data still satisfies the fan-out invariant.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_tune_medium \\
        .venv/bin/python bench/add_posts.py --per-user 20
"""

import argparse
import random
import sys
import time

from _common import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--random-seed", type=int, default=2)
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction

    from microblog.core.ids import EPOCH_MS, LOW_BITS
    from microblog.posts.models import Post
    from microblog.seeding import seeder

    def step(label: str, seconds: float) -> None:
        print(f"  {label}: {seconds:.1f}s", flush=True)

    users = seeder.User.objects.count()
    top = Post.objects.filter(parent__isnull=True).count()
    wanted = users * args.per_user - top
    if wanted <= 0:
        sys.exit(f"Already {top:,} top-level posts for {users:,} users; nothing to add.")
    print(f"Adding {wanted:,} top-level posts to {top:,} ({users:,} users)", flush=True)
    rng = random.Random(args.random_seed)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - args.days * seeder.DAY_MS
    posts, feed, users_table = seeder.POSTS, seeder.FEED, seeder.USERS
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL synchronous_commit = off")
        schema = seeder.PostgresSchema([posts, feed], keep_primary={posts})
        t0 = time.monotonic()
        schema.drop()
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {feed}")
        step("drop indexes, empty the feeds", time.monotonic() - t0)

        t0 = time.monotonic()
        times = sorted(rng.randrange(start_ms, now_ms - 60_000) for _ in range(wanted))

        def rows():
            for ms in times:
                # Random low bits, as ids.new_id; a rare clash with an existing id is skipped.
                post_id = ((ms - EPOCH_MS) << LOW_BITS) | rng.getrandbits(LOW_BITS - 1)
                yield (
                    post_id,
                    rng.randint(1, users),
                    seeder._post_text(rng),
                    seeder._ts(ms),
                )

        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE new_posts (id bigint, author_id bigint, content text, "
                "created_at timestamptz) ON COMMIT DROP"
            )
        seeder.Loader().rows("new_posts", ["id", "author_id", "content", "created_at"], rows())
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {posts} (id, author_id, content, parent_id, replies_count, created_at)
                SELECT id, author_id, content, NULL, 0, created_at FROM new_posts
                ON CONFLICT DO NOTHING
                """
            )
            added = cursor.rowcount
            cursor.execute(
                f"""
                UPDATE {users_table} u SET posts_count = c.n
                FROM (SELECT author_id, COUNT(*) AS n FROM {posts} GROUP BY author_id) c
                WHERE u.id = c.author_id AND u.posts_count <> c.n
                """
            )
            cursor.execute(f"UPDATE {users_table} SET feed_horizon = 0 WHERE feed_horizon <> 0")
        step(f"load {added:,} posts", time.monotonic() - t0)
        t0 = time.monotonic()
        schema.restore([posts], step)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {posts}")
            cursor.execute(f"ANALYZE {users_table}")
        seeder._build_feeds(now_ms, step)
        schema.restore([feed], step)
        seeder._set_horizons(step)
    with connection.cursor() as cursor:
        for table in (users_table, posts, feed):
            t0 = time.monotonic()
            cursor.execute(f"VACUUM ANALYZE {table}")
            step(f"vacuum analyze {table}", time.monotonic() - t0)
    top = Post.objects.filter(parent__isnull=True).count()
    print(f"Now {top:,} top-level posts ({top / users:.1f} per user)", flush=True)


if __name__ == "__main__":
    main()
