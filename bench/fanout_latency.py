"""Fan-out latency: from a post's commit to its presence in every one of its author's 10,000
followers' feeds, with ONE real `microblog worker` process on the database job backend.

The script starts the worker itself (`microblog worker --no-scheduler`, so periodic maintenance
does not run in the middle), publishes posts through posts.services.post_create one at a time,
and polls the post's feed-entry count until all followers (and the author) hold it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/microblog_bench_fanout \
        .venv/bin/python bench/fanout_latency.py --posts 20
"""

import argparse
import json
import os
import subprocess
import sys
import time

from _common import RESULTS, ROOT, command_line, machine, setup_django, summary

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30, help="Per post, seconds.")
    parser.add_argument("--poll", type=float, default=0.005, help="Seconds between polls.")
    args = parser.parse_args()
    setup_django()

    from _fanout_data import ensure_dataset
    from django.conf import settings
    from django.db import connection, transaction

    from microblog.posts.services import post_create
    from microblog.timelines.models import FeedEntry

    backend = settings.TASKS["default"]["BACKEND"]
    assert backend == "django_tasks_db.DatabaseBackend", backend
    author = ensure_dataset()["author10k"]
    expected = author.followers_count + 1  # every follower is active, plus the author's own
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    worker = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "microblog"), "worker", "--no-scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
    )
    latencies: list[float] = []
    try:
        time.sleep(2.0)  # let the worker start and drain anything queued before
        for i in range(args.posts):
            committed: list[float] = []
            with transaction.atomic():
                # Registered first, so it runs right at the commit, before the job is enqueued.
                transaction.on_commit(lambda c=committed: c.append(time.perf_counter()))
                post = post_create(author=author, content=f"latency probe {i}")
            deadline = committed[0] + args.timeout
            count = 0
            while time.perf_counter() < deadline:
                count = FeedEntry.objects.filter(post_id=post.id).count()
                if count >= expected:
                    break
                time.sleep(args.poll)
            if count < expected:
                raise SystemExit(f"post {i}: only {count}/{expected} feeds after {args.timeout}s")
            latency = time.perf_counter() - committed[0]
            latencies.append(latency)
            print(f"post {i:>2}: {count:,} feeds in {latency * 1000:7.1f} ms", flush=True)
            time.sleep(0.3)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
        connection.close()
    stats = summary([x * 1000 for x in latencies])
    print(
        f"{len(latencies)} posts, {expected - 1:,} followers: p50 {stats['p50']:.0f} ms, "
        f"p95 {stats['p95']:.0f} ms, max {stats['max']:.0f} ms (target < {TARGET_S * 1000:.0f})"
    )
    out = {
        "benchmark": "fanout_latency",
        "command": command_line(),
        "machine": machine(),
        "followers": expected - 1,
        "fanout_chunk_size": settings.FANOUT_CHUNK_SIZE,
        "latency_ms": {k: round(v, 1) for k, v in stats.items()},
        "all_ms": [round(x * 1000, 1) for x in latencies],
        "target_ms": TARGET_S * 1000,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fanout_latency.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
