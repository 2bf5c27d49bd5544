"""Fan-out throughput: feed rows written per second by timelines.fanout.fan_out_post for one new
post of an author with 10,000 and with 100,000 active followers, per FANOUT_CHUNK_SIZE.

    createdb -h 127.0.0.1 -U postgres microblog_bench_fanout
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/microblog_bench_fanout \
        .venv/bin/microblog migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/microblog_bench_fanout \
        .venv/bin/python bench/fanout_throughput.py --repeats 5 --chunk-sizes 1000,5000,20000
"""

import argparse
import json
import statistics
import time

from _common import RESULTS, command_line, machine, setup_django

TARGET_ROWS_PER_S = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-sizes", default="1000,5000,20000")
    parser.add_argument("--max-seconds", type=float, default=600, help="Stop starting new runs.")
    args = parser.parse_args()
    setup_django()

    from _fanout_data import ensure_dataset
    from django.conf import settings
    from django.utils import timezone

    from microblog.core.ids import new_id
    from microblog.posts.models import Post
    from microblog.timelines import fanout
    from microblog.timelines.models import FeedEntry

    settings.FANOUT_CELEBRITY_FOLLOWERS = 10**9  # both authors are fanned out
    authors = ensure_dataset()
    deadline = time.monotonic() + args.max_seconds
    results = []
    for chunk in [int(c) for c in args.chunk_sizes.split(",")]:
        settings.FANOUT_CHUNK_SIZE = chunk
        for name in ("author10k", "author100k"):
            author = authors[name]
            timings: list[float] = []
            rows = 0
            for i in range(args.repeats):
                if time.monotonic() > deadline:
                    break
                now = timezone.now()
                post = Post.objects.create(
                    id=new_id(int(now.timestamp() * 1000)),
                    author=author,
                    content=f"bench post {i} (chunk {chunk})",
                    created_at=now,
                )
                started = time.perf_counter()
                rows = fanout.fan_out_post(post.id)
                timings.append(time.perf_counter() - started)
                expected = author.followers_count
                assert rows == expected, (rows, expected)
                assert FeedEntry.objects.filter(post_id=post.id).count() == expected
            if not timings:
                continue
            median = statistics.median(timings)
            result = {
                "author": name,
                "followers": author.followers_count,
                "chunk_size": chunk,
                "runs": len(timings),
                "seconds": [round(t, 4) for t in timings],
                "median_s": round(median, 4),
                "rows_per_s_median": round(rows / median),
                "rows_per_s_best": round(rows / min(timings)),
            }
            results.append(result)
            print(
                f"chunk {chunk:>6,}  {name:<11} {rows:>7,} rows  median {median * 1000:8.1f} ms "
                f"=> {rows / median:>10,.0f} rows/s (best {rows / min(timings):,.0f})",
                flush=True,
            )
    out = {
        "benchmark": "fanout_throughput",
        "command": command_line(),
        "machine": machine(),
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fanout_throughput.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'fanout_throughput.json'}")


if __name__ == "__main__":
    main()
