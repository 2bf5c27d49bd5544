"""A like spree on one popular post: likes per second with and without notifications, and the
rows each way writes (issue 16: a spree must not write one notification row per like in the
request that liked).

The like service is not in this branch, so each "like" here is a stand-in transaction with the
writes a like makes: an insert into a like table (`bench_like`, created and dropped here, with
the `(post_id, user_id)` key) and the counter update on the post's row (`replies_count =
replies_count`: the same hot row lock, no change). After its commit, by mode:

- `none`: nothing more (the like alone);
- `grouped`: `notifications.services.notify_liked` (what the like service will call): one
  UPDATE of the group's pending row (the first like inserts it and enqueues the fold job);
- `row_per_like`: the naive design for comparison, one notification row inserted per like.

Modes alternate in rounds, `--threads` threads each with its own connection, distinct likers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_wt16n_medium \\
        .venv/bin/python bench/notify_spree.py --likes 2000 --threads 4 --rounds 3
"""

import argparse
import json
import statistics
import threading
import time

from _common import setup_django

MODES = ("none", "grouped", "row_per_like")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--likes", type=int, default=2000, help="likes per mode and round")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    from microblog.core.ids import new_id
    from microblog.notifications.models import Notification, PendingNotification
    from microblog.notifications.services import notifications_fold, notify_liked
    from microblog.posts.models import Post

    post = Post.objects.filter(author_id=1, parent__isnull=True).order_by("-id").first()
    assert post is not None, "seed the database first (user 1 has no post)"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_like")
        cursor.execute(
            "CREATE TABLE bench_like (post_id bigint, user_id bigint, created_at timestamptz,"
            " PRIMARY KEY (post_id, user_id))"
        )
    max_user = args.likes * args.rounds * len(MODES) + 2
    likers = iter(range(2, max_user + 1))
    lock = threading.Lock()

    def next_liker() -> int | None:
        with lock:
            return next(likers, None)

    def like(user_id: int, mode: str) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_like VALUES (%s, %s, now()) ON CONFLICT DO NOTHING",
                [post.id, user_id],
            )
            cursor.execute(
                "UPDATE posts_post SET replies_count = replies_count WHERE id = %s", [post.id]
            )
        if mode == "grouped":
            notify_liked(post_id=post.id, actor_id=user_id)
        elif mode == "row_per_like":
            Notification.objects.create(
                recipient_id=post.author_id,
                kind="like",
                group_key=new_id(),  # one row per like: no grouping
                post_id=post.id,
                actor_id=user_id,
                sort_id=new_id(),
                updated_at=timezone.now(),
            )

    def run(mode: str) -> float:
        done = [0]

        def work() -> None:
            try:
                while True:
                    with lock:
                        if done[0] >= args.likes:
                            return
                        done[0] += 1
                    user_id = next_liker()
                    assert user_id is not None
                    like(user_id, mode)
            finally:
                connection.close()

        threads = [threading.Thread(target=work) for _ in range(args.threads)]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return args.likes / (time.perf_counter() - t0)

    def counts() -> dict[str, int]:
        return {
            "notifications": Notification.objects.filter(post_id=post.id).count(),
            "pending": PendingNotification.objects.filter(post_id=post.id).count(),
            "fold_jobs": DBTaskResult.objects.filter(
                task_path__endswith="fold_notifications"
            ).count(),
        }

    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    rows: dict[str, dict[str, int]] = {}
    try:
        for _ in range(args.rounds):
            for mode in MODES:
                before = counts()
                rates[mode].append(run(mode))
                after = counts()
                # The fold job's work, once per delay window whatever the number of likes.
                t0 = time.perf_counter()
                folded = notifications_fold(
                    recipient_id=post.author_id, kind="like", group_key=post.id
                )
                fold_ms = (time.perf_counter() - t0) * 1000
                rows[mode] = {
                    "notification_rows_added": after["notifications"] - before["notifications"],
                    "pending_rows_open": after["pending"],
                    "fold_jobs_enqueued": after["fold_jobs"] - before["fold_jobs"],
                    "fold_ms": round(fold_ms, 2) if folded else 0,
                }
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_like")
        Notification.objects.filter(post_id=post.id, kind="like").delete()
        PendingNotification.objects.filter(post_id=post.id).delete()
        DBTaskResult.objects.filter(task_path__endswith="fold_notifications").delete()
    result = {
        "likes_per_mode_and_round": args.likes,
        "threads": args.threads,
        "rounds": args.rounds,
        "likes_per_second_median": {m: round(statistics.median(r)) for m, r in rates.items()},
        "likes_per_second_all": {m: [round(x) for x in r] for m, r in rates.items()},
        "rows_last_round": rows,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
