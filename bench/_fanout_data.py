"""The fan-out benchmarks' data set: 100,000 active readers, an author followed by the first
10,000 of them and an author followed by all of them, and a backlog of older feed entries so
the feed's indexes are not empty. Built once with COPY; later runs reuse it."""

import time
from datetime import UTC, datetime, timedelta

from django.contrib.auth.hashers import make_password
from django.db import connection, transaction

from microblog.accounts.models import User
from microblog.core.ids import new_id
from microblog.posts.models import Post
from microblog.seeding.seeder import USER_COLUMNS, Loader

READERS = 100_000
BACKLOG_POSTS = 30


def ensure_dataset(readers: int = READERS) -> dict[str, User]:
    authors = {u.username: u for u in User.objects.filter(username__in=["author10k", "author100k"])}
    if len(authors) == 2 and authors["author100k"].followers_count == readers:
        return authors
    if User.objects.exists():
        raise SystemExit("The bench database holds other data; use an empty one.")
    started = time.monotonic()
    now = datetime.now(UTC)
    password = make_password("bench-password-1")
    loader = Loader()
    with transaction.atomic():
        # ids: readers 1..readers, then the authors and the backlog author.
        ids = {"author10k": readers + 1, "author100k": readers + 2, "backlog": readers + 3}

        def user(uid: int, name: str, followers: int, following: int, posts: int) -> tuple:
            return (
                uid,
                password,
                None,
                False,
                name,
                "",
                False,
                True,
                now - timedelta(days=100),
                "",
                followers,
                following,
                posts,
                now,
                False,
                0,
                now,
            )

        rows = [user(i, f"reader{i}", 0, 2 if i <= 10_000 else 1, 0) for i in range(1, readers + 1)]
        rows.append(user(ids["author10k"], "author10k", 10_000, 0, 0))
        rows.append(user(ids["author100k"], "author100k", readers, 0, 0))
        rows.append(user(ids["backlog"], "backlog", 0, 0, BACKLOG_POSTS))
        loader.rows(User._meta.db_table, USER_COLUMNS, rows)
        follows = [(i, ids["author100k"], now) for i in range(1, readers + 1)]
        follows += [(i, ids["author10k"], now) for i in range(1, 10_001)]
        loader.rows("follows_follow", ["follower_id", "followed_id", "created_at"], follows)
        backlog_ms = int((now - timedelta(days=10)).timestamp() * 1000)
        posts = [
            Post(
                id=new_id(backlog_ms + i * 60_000),
                author_id=ids["backlog"],
                content=f"Older post {i}",
                created_at=now - timedelta(days=10),
            )
            for i in range(BACKLOG_POSTS)
        ]
        Post.objects.bulk_create(posts)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO timelines_feedentry (user_id, post_id, author_id) "
                "SELECT u.id, p.id, p.author_id FROM accounts_user u CROSS JOIN posts_post p "
                "WHERE u.id <= %s AND p.author_id = %s ORDER BY u.id, p.id",
                [readers, ids["backlog"]],
            )
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('accounts_user', 'id'), %s)",
                [ids["backlog"]],
            )
    with connection.cursor() as cursor:
        for table in ("accounts_user", "follows_follow", "posts_post", "timelines_feedentry"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"built the bench data set in {time.monotonic() - started:.1f}s")
    return {u.username: u for u in User.objects.filter(username__in=["author10k", "author100k"])}
