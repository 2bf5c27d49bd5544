"""Shared by the job and concurrency tests: real worker subprocesses on the test database, and the
checks that every counter and every For You feed match the rows they derive from."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import connection
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from microblog.accounts.models import User
from microblog.follows.models import Follow
from microblog.ops.counters import reconcile
from microblog.posts.models import Post
from tests.feeds import feed_ids, pull_ids

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test_<name> database)."""
    params = connection.settings_dict
    assert connection.vendor == "postgresql", "worker subprocesses need a shared server"
    user = params.get("USER") or "postgres"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


def worker_env(**extra: object) -> dict[str, str]:
    """The environment of a worker subprocess: production settings on the test database, with the
    fan-out settings of the running test (override with `extra`)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        DJANGO_SETTINGS_MODULE="microblog.settings",
        SECRET_KEY="x",
        TASKS_BACKEND="django_tasks_db.DatabaseBackend",
        FANOUT_CHUNK_SIZE=str(settings.FANOUT_CHUNK_SIZE),
        FANOUT_CELEBRITY_FOLLOWERS=str(settings.FANOUT_CELEBRITY_FOLLOWERS),
        FANOUT_INACTIVE_DAYS=str(settings.FANOUT_INACTIVE_DAYS),
        FEED_MAX_ENTRIES=str(settings.FEED_MAX_ENTRIES),
        JOB_MAX_ATTEMPTS=str(settings.JOB_MAX_ATTEMPTS),
        JOB_RETRY_BASE_SECONDS=str(settings.JOB_RETRY_BASE_SECONDS),
        LOG_LEVEL="WARNING",
    )
    env.pop("TEST_TASKS_BACKEND", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "microblog", "worker", *args]


@contextmanager
def worker_process(*args: str, **env: object) -> Iterator[subprocess.Popen[bytes]]:
    """A `microblog worker` subprocess; stopped (SIGTERM, then SIGKILL) on exit. Its output goes
    to a file (a pipe nobody reads would fill and block it); `worker_output(process)` reads it."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            worker_command("--no-scheduler", "--interval", "0.05", *args),
            env=worker_env(**env),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _logs[process.pid] = log
        try:
            yield process
        finally:
            stop(process)
            _logs.pop(process.pid, None)


_logs: dict[int, IO[bytes]] = {}


def worker_output(process: subprocess.Popen[bytes]) -> str:
    log = _logs[process.pid]
    log.seek(0)
    return log.read().decode(errors="replace")


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # graceful: finishes the current job
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_worker_batch(timeout: float = 120, **env: object) -> str:
    """Runs `microblog worker --batch` in a subprocess until the queue is empty; returns its
    output. Fails the test when it does not exit cleanly."""
    result = subprocess.run(
        worker_command("--batch"),
        env=worker_env(**env),
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    return output


def unfinished_jobs() -> int:
    return DBTaskResult.objects.filter(
        status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING]
    ).count()


def wait_until_drained(process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Waits until no job is READY or RUNNING (including retries due later)."""
    deadline = time.monotonic() + timeout
    while unfinished_jobs():
        assert process.poll() is None, f"the worker exited early:\n{worker_output(process)}"
        assert time.monotonic() < deadline, (
            f"{unfinished_jobs()} jobs still unfinished:\n{worker_output(process)}"
        )
        time.sleep(0.05)


def failed_jobs() -> list[tuple[str, str]]:
    return list(
        DBTaskResult.objects.filter(status=TaskResultStatus.FAILED).values_list(
            "task_path", "traceback"
        )
    )


def bulk_followers(author: User, count: int, prefix: str) -> None:
    """`count` active users following `author`, in three statements."""
    users, follows = User._meta.db_table, Follow._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {users} (password, is_superuser, username, email, is_staff, is_active,
                date_joined, description, followers_count, following_count, posts_count,
                last_seen_at, is_celebrity, feed_horizon, updated_at)
            SELECT '!', false, %s || g, '', false, true, now(), '', 0, 1, 0, now(), false, 0,
                now()
            FROM generate_series(1, %s) AS g
            """,
            [prefix, count],
        )
        cursor.execute(
            f"INSERT INTO {follows} (follower_id, followed_id, created_at) "
            f"SELECT id, %s, now() FROM {users} WHERE username LIKE %s",
            [author.id, f"{prefix}%"],
        )
    User.objects.filter(id=author.id).update(followers_count=count)


# --- Invariants ---------------------------------------------------------------------------


def assert_feeds_match_pull_query(users: list[User] | None = None) -> None:
    users = users if users is not None else list(User.objects.order_by("id"))
    wrong = {}
    for user in users:
        got, want = feed_ids(user), pull_ids(user)
        if got != want:
            wrong[user.username] = {
                "missing": sorted(set(want) - set(got)),
                "extra": sorted(set(got) - set(want)),
                "order_differs": set(got) == set(want),
            }
    assert not wrong, f"For You differs from the pull query for {len(wrong)} users: {wrong}"


def assert_counters_exact() -> None:
    """Every counter equals the rows it counts (checked directly, and by reconcile)."""
    wrong = []
    for user in User.objects.order_by("id"):
        actual = {
            "followers_count": Follow.objects.filter(followed_id=user.id).count(),
            "following_count": Follow.objects.filter(follower_id=user.id).count(),
            "posts_count": Post.objects.filter(author_id=user.id).count(),
        }
        for name, value in actual.items():
            if getattr(user, name) != value:
                wrong.append((user.username, name, getattr(user, name), value))
        celebrity = user.followers_count > settings.FANOUT_CELEBRITY_FOLLOWERS
        if user.is_celebrity != celebrity:
            wrong.append((user.username, "is_celebrity", user.is_celebrity, celebrity))
    for post in Post.objects.order_by("id"):
        replies = Post.objects.filter(parent_id=post.id).count()
        if post.replies_count != replies:
            wrong.append((post.id, "replies_count", post.replies_count, replies))
    assert not wrong, f"counters differ from the rows they count: {wrong}"
    assert reconcile(fix=False).drifts == []
