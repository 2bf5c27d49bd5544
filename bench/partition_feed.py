"""Feed storage partitioned by reader (docs/scaling.md, step 3), measured on a seeded database:
`timelines_feedentry` as it is against the same rows in a table declared
`PARTITION BY HASH (user_id)` with --partitions partitions, in one run, swapping the two tables
by name between rounds (A B A B), so each figure is a ratio within the run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_seed14 \\
        .venv/bin/python bench/partition_feed.py --partitions 32 --out partition_seed

For each table: the For You statement (timelines.selectors._feed_ids_sql, page 1) under
EXPLAIN (ANALYZE, BUFFERS) for --readers random active readers (execution time, buffers, and
whether the plan still reads one index range of one partition), once more as a prepared
statement forced to its generic plan (pruning at executor start); and fan-out of a new
top-level post by each of --authors random non-celebrity authors with 1,000+ followers
(timelines.fanout.fan_out_post, the worker's own code), rows per second; each test post and its
entries are removed afterwards; then VACUUM (ANALYZE) of the table, timed. Leaves the database
with the unpartitioned table in place and the partitioned copy beside it as
`timelines_feedentry_hash` (drop the database after).
"""

import argparse
import json
import random
import re
import statistics
import time

from _common import RESULTS, command_line, machine, setup_django

FEED = "timelines_feedentry"
OTHER = "timelines_feedentry_hash"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partitions", type=int, default=32)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--authors", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--random-seed", type=int, default=1)
    parser.add_argument("--out", default="partition_seed")
    args = parser.parse_args()
    setup_django()

    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from microblog.accounts.models import User
    from microblog.core.ids import new_id
    from microblog.core.pagination import MAX_ID
    from microblog.posts.models import Post
    from microblog.timelines import fanout
    from microblog.timelines.models import FanOut
    from microblog.timelines.selectors import _feed_ids_sql

    rng = random.Random(args.random_seed)
    cutoff = fanout.active_cutoff()
    active = list(User.objects.filter(last_seen_at__gte=cutoff).values_list("id", "feed_horizon"))
    readers = rng.sample(active, min(args.readers, len(active)))
    authors = list(
        User.objects.filter(
            is_celebrity=False,
            followers_count__gte=1000,
            followers_count__lt=settings.FANOUT_CELEBRITY_FOLLOWERS,
        ).values_list("id", flat=True)
    )
    authors = rng.sample(authors, min(args.authors, len(authors)))

    def sql(statement: str, params: list | None = None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(statement, params or [])
            return cursor.fetchall() if cursor.description else []

    def build_partitioned() -> float:
        started = time.monotonic()
        exists = sql("SELECT to_regclass(%s)", [OTHER])[0][0]
        if exists:
            return 0.0
        with transaction.atomic():
            sql(
                f"CREATE TABLE {OTHER} (LIKE {FEED} INCLUDING DEFAULTS) PARTITION BY HASH (user_id)"
            )
            for n in range(args.partitions):
                sql(
                    f"CREATE TABLE {OTHER}_{n} PARTITION OF {OTHER} "
                    f"FOR VALUES WITH (MODULUS {args.partitions}, REMAINDER {n})"
                )
            sql(f"INSERT INTO {OTHER} SELECT * FROM {FEED}")
            sql(f"ALTER TABLE {OTHER} ADD PRIMARY KEY (user_id, post_id)")
            sql(f"CREATE INDEX {OTHER}_post_id ON {OTHER} (post_id)")
        sql(f"VACUUM (ANALYZE) {OTHER}")
        return time.monotonic() - started

    def swap() -> None:
        with transaction.atomic():
            sql(f"ALTER TABLE {FEED} RENAME TO timelines_feedentry_swap")
            sql(f"ALTER TABLE {OTHER} RENAME TO {FEED}")
            sql(f"ALTER TABLE timelines_feedentry_swap RENAME TO {OTHER}")

    def partitioned_now() -> bool:
        return bool(sql(f"SELECT relkind = 'p' FROM pg_class WHERE relname = '{FEED}'")[0][0])

    def explain(statement: str, params: list) -> dict:
        plan = sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params)[0][0][0]
        return plan

    def scans(node: dict) -> list[str]:
        found = []
        if "Relation Name" in node and node["Relation Name"].startswith(FEED):
            found.append(f"{node['Node Type']} on {node['Relation Name']}")
        for child in node.get("Plans", []):
            found += scans(child)
        return found

    def measure_reads() -> dict:
        times, planning, buffers, shapes = [], [], [], {}
        for user_id, horizon in readers:
            statement, params = _feed_ids_sql(user_id, MAX_ID, horizon, settings.PAGE_SIZE + 1)
            explain(statement, params)  # cached pages, as a page view after the first
            plan = explain(statement, params)
            times.append(plan["Execution Time"])
            planning.append(plan["Planning Time"])
            top = plan["Plan"]
            buffers.append(top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0))
            shape = "; ".join(sorted(set(scans(top))))
            shapes[shape] = shapes.get(shape, 0) + 1
        # A median reader's plan as text, and as a generic prepared plan.
        user_id, horizon = readers[len(readers) // 2]
        statement, params = _feed_ids_sql(user_id, MAX_ID, horizon, settings.PAGE_SIZE + 1)
        text = "\n".join(r[0] for r in sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params))
        numbered = iter(range(1, len(params) + 1))
        prepared = re.sub(r"%s", lambda _m: f"${next(numbered)}", statement)
        sql("DEALLOCATE ALL")
        sql(f"PREPARE feed_page AS {prepared}")
        sql("SET plan_cache_mode = force_generic_plan")
        literal = ", ".join(str(int(p)) for p in params)
        generic = "\n".join(
            r[0] for r in sql(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE feed_page({literal})")
        )
        generic_ms = []
        for _ in range(20):
            t0 = time.perf_counter()
            sql(f"EXECUTE feed_page({literal})")
            generic_ms.append((time.perf_counter() - t0) * 1000)
        sql("RESET plan_cache_mode")
        sql("DEALLOCATE feed_page")
        return {
            "readers": len(times),
            "execution_ms_p50": round(statistics.median(times), 3),
            "execution_ms_p95": round(sorted(times)[int(len(times) * 0.95)], 3),
            "planning_ms_p50": round(statistics.median(planning), 3),
            "buffers_p50": statistics.median(buffers),
            "plan_shapes": shapes,
            "median_reader_plan": text,
            "median_reader_generic_plan": generic,
            "median_reader_generic_round_trip_ms_p50": round(statistics.median(generic_ms), 3),
        }

    def measure_fan_out() -> dict:
        rows, seconds, per_post = 0, 0.0, []
        for author_id in authors:
            with transaction.atomic():
                post = Post.objects.create(
                    id=new_id(),
                    author_id=author_id,
                    content="partition bench post",
                    created_at=timezone.now(),
                )
                FanOut.objects.create(post_id=post.id)
            t0 = time.perf_counter()
            inserted = fanout.fan_out_post(post.id)
            elapsed = time.perf_counter() - t0
            rows += inserted
            seconds += elapsed
            per_post.append((inserted, round(elapsed * 1000, 1)))
            with transaction.atomic():
                fanout.remove_post(post.id)
                FanOut.objects.filter(post_id=post.id).delete()
                Post.objects.filter(id=post.id).delete()
        return {
            "posts": len(authors),
            "rows": rows,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds) if seconds else None,
            "per_post_rows_ms": per_post,
        }

    result: dict = {
        "command": command_line(),
        "machine": machine(),
        "partitions": args.partitions,
        "feed_entries": sql(f"SELECT count(*) FROM {FEED}")[0][0],
        "feed_size": sql(f"SELECT pg_size_pretty(pg_total_relation_size('{FEED}'))")[0][0],
        "authors_followers": list(
            User.objects.filter(id__in=authors).values_list("followers_count", flat=True)
        ),
        "rounds": [],
    }
    if partitioned_now():
        swap()  # an interrupted earlier run
    result["build_partitioned_s"] = round(build_partitioned(), 1)
    print(f"partitioned copy built in {result['build_partitioned_s']} s", flush=True)
    try:
        for round_no in range(args.rounds):
            for _ in range(2):
                label = "partitioned" if partitioned_now() else "unpartitioned"
                figures = {"table": label, "round": round_no, "reads": measure_reads()}
                figures["fan_out"] = measure_fan_out()
                # The fan-outs above left as many dead rows as they wrote: autovacuum's work.
                t0 = time.monotonic()
                sql(f"VACUUM (ANALYZE) {FEED}")
                figures["vacuum_analyze_s"] = round(time.monotonic() - t0, 2)
                result["rounds"].append(figures)
                print(
                    label,
                    figures["reads"]["execution_ms_p50"],
                    figures["reads"]["plan_shapes"],
                    figures["fan_out"]["rows_per_s"],
                    flush=True,
                )
                swap()
    finally:
        if partitioned_now():
            swap()
        out = RESULTS / f"{args.out}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
