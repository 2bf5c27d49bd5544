"""Concurrency and crashes on real PostgreSQL: many connections writing at once while real worker
processes fan out, then every counter and every For You feed must match the rows they derive
from exactly. A service that raises (deadlock, IntegrityError) under contention fails the test.
"""

import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.db import connections
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from microblog.accounts.models import User
from microblog.core.errors import NotFound
from microblog.follows.models import Follow
from microblog.follows.services import follow_create, follow_delete
from microblog.posts.models import Post
from microblog.posts.services import PARENT_MISSING, post_create, post_delete
from microblog.timelines.models import FeedEntry
from tests.jobs.helpers import (
    assert_counters_exact,
    assert_feeds_match_pull_query,
    bulk_followers,
    failed_jobs,
    run_worker_batch,
    wait_until_drained,
    worker_process,
)

pytestmark = pytest.mark.postgres_only

THREADS = 8


def run_threads(
    count: int,
    target: Callable[[int], None],
    timeout: float = 120,
    barrier: threading.Barrier | None = None,
) -> list[str]:
    """Runs target(i) in `count` threads, each on its own connection; returns the tracebacks of
    whatever they raised (a thread that fails breaks `barrier`, so the others stop too)."""
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            target(i)
        except threading.BrokenBarrierError:
            pass  # another thread failed: its error is the one to report
        except BaseException:
            errors.append(f"thread {i}:\n{traceback.format_exc()}")
            if barrier is not None:
                barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), name=f"writer-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "writer threads did not finish"
    return errors


def reply_or_parent_gone(author: User, parent_id: int) -> None:
    try:
        post_create(author=author, content="a reply", parent_id=parent_id)
    except NotFound as error:
        if error.messages != [PARENT_MISSING]:
            raise


@pytest.fixture
def fast_jobs(settings: Any, db_job_backend: Callable[[], None]) -> None:
    """The real database job backend, small fan-out chunks, quick retries."""
    settings.FANOUT_CHUNK_SIZE = 2
    settings.JOB_RETRY_BASE_SECONDS = 0.1


def test_concurrent_writers_keep_counters_and_feeds_exact(settings, fast_jobs, make_user):
    # A low celebrity threshold, so follows and unfollows also flip authors between fanned-out
    # and merged-at-read-time; a small feed cap, so backfills overflow and raise horizons.
    settings.FANOUT_CELEBRITY_FOLLOWERS = 3
    settings.FEED_MAX_ENTRIES = 30
    settings.PAGE_SIZE = 7
    users = [make_user(f"c{i}") for i in range(10)]
    for user in users[:5]:
        post_create(author=user, content="first")
    ids = [user.id for user in users]
    hot = ids[:4]  # most follows hit these, so the same pairs collide
    stats = {"ops": 0}
    lock = threading.Lock()

    def random_writer(i: int) -> None:
        rng = random.Random(i)
        me = {user.id: user for user in User.objects.filter(id__in=ids)}
        deadline = time.monotonic() + 4
        for _ in range(150):
            if time.monotonic() > deadline:
                break
            author = me[rng.choice(ids)]
            op = rng.choices(["post", "reply", "delete", "follow", "unfollow"], [3, 2, 2, 4, 3])[0]
            if op in ("follow", "unfollow"):
                pool = hot if rng.random() < 0.7 else ids
                a, b = rng.sample(pool, 2)
                service = follow_create if op == "follow" else follow_delete
                service(follower=me[a], followed=me[b])
            elif op == "post":
                post_create(author=author, content=f"post by {i}")
            else:
                post = Post.objects.filter(author_id__in=hot).order_by("?").first()
                if post is None:
                    continue
                if op == "reply":
                    reply_or_parent_gone(author, post.id)
                else:
                    post_delete(post=post, actor=me[post.author_id])
            with lock:
                stats["ops"] += 1

    # Then rounds in lockstep: A->B and B->A (twice each) at the same instant, while A and B post
    # and delete posts, so backfills race deletions; then the same four unfollow at once.
    rounds = 16
    barrier = threading.Barrier(THREADS, timeout=60)
    pairs = [(ids[0], ids[1]), (ids[1], ids[2]), (ids[2], ids[0]), (ids[3], ids[4])]

    def lockstep_writer(i: int) -> None:
        rng = random.Random(100 + i)
        me = {user.id: user for user in User.objects.filter(id__in=ids)}
        for r in range(rounds):
            a, b = pairs[(r // 2) % len(pairs)]
            follower, followed = (a, b) if i % 4 < 2 else (b, a)
            following = r % 2 == 0
            barrier.wait()
            if i < 4:
                service = follow_create if following else follow_delete
                service(follower=me[follower], followed=me[followed])
            elif i < 6:
                post_create(author=me[follower], content=f"round {r}")
            else:
                post = Post.objects.filter(author_id=followed).order_by("?").first()
                if post is not None and rng.random() < 0.5:
                    post_delete(post=post, actor=me[followed])
                elif post is not None:
                    reply_or_parent_gone(me[follower], post.id)
            barrier.wait()
            if i == 0:
                both = Follow.objects.filter(follower_id__in=[a, b], followed_id__in=[a, b]).count()
                assert both == (2 if following else 0), f"round {r}: {both} follows of {a, b}"

    def writer(i: int) -> None:
        random_writer(i)
        lockstep_writer(i)

    with worker_process() as first, worker_process() as second:
        errors = run_threads(THREADS, writer, barrier=barrier)
        assert not errors, "\n".join(errors)
        wait_until_drained(first)
        assert second.poll() is None

    assert stats["ops"] >= THREADS * 10, stats
    assert failed_jobs() == []
    assert_counters_exact()
    assert_feeds_match_pull_query()


def test_fan_out_racing_unfollows_leaves_no_stale_entries(settings, fast_jobs, make_user):
    settings.FANOUT_CHUNK_SIZE = 10  # 300 chunks: long enough to race
    author = make_user("author")
    bulk_followers(author, 3000, "fan")
    fans = list(User.objects.filter(username__startswith="fan").order_by("id"))
    leaving = random.Random(1).sample(fans, 800)
    post = post_create(author=author, content="to everyone")
    seen = FeedEntry.objects.filter(post_id=post.id)
    unfollows_started: list[datetime] = []

    def unfollower(i: int) -> None:
        me = User.objects.get(id=author.id)
        wait_until = time.monotonic() + 60
        while not seen.exclude(user_id=author.id).exists():  # the fan-out has begun
            assert time.monotonic() < wait_until, "fan-out never started"
            time.sleep(0.005)
        unfollows_started.append(timezone.now())
        for fan in leaving[i::4]:
            assert follow_delete(follower=fan, followed=me)

    with worker_process() as worker:
        errors = run_threads(4, unfollower)
        assert not errors, "\n".join(errors)
        wait_until_drained(worker)

    job = DBTaskResult.objects.get(task_path="microblog.jobs.fan_out_post")
    assert job.status == TaskResultStatus.SUCCESSFUL
    # The race really happened: the job was still running when the unfollows began.
    assert job.finished_at is not None
    assert min(unfollows_started) < job.finished_at, "the fan-out ended before the unfollows"

    gone = {fan.id for fan in leaving}
    expected = {fan.id for fan in fans if fan.id not in gone} | {author.id}
    assert set(seen.values_list("user_id", flat=True)) == expected
    assert_counters_exact()
    rng = random.Random(2)
    assert_feeds_match_pull_query([author, *rng.sample(leaving, 100), *rng.sample(fans, 100)])


def test_worker_killed_mid_fan_out_is_recovered_by_the_next_worker(settings, fast_jobs, make_user):
    settings.FANOUT_CHUNK_SIZE = 1000
    settings.FANOUT_CELEBRITY_FOLLOWERS = 1_000_000
    followers = 60_000
    author = make_user("star")
    bulk_followers(author, followers, "f")
    post = post_create(author=author, content="to sixty thousand")
    entries = FeedEntry.objects.filter(post_id=post.id)
    assert entries.count() == 1  # the author's own entry, in the post's transaction

    with worker_process() as worker:
        deadline = time.monotonic() + 60
        while entries.count() <= 1:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the fan-out never started"
            time.sleep(0.002)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    partial = entries.count()
    assert 1 < partial < followers + 1, f"{partial} entries: the fan-out was not cut mid-way"
    job = DBTaskResult.objects.get(task_path="microblog.jobs.fan_out_post")
    assert job.status == TaskResultStatus.RUNNING  # left behind by the dead worker

    output = run_worker_batch(LOG_LEVEL="WARNING")
    assert "abandoned" in output

    job.refresh_from_db()
    assert job.status == TaskResultStatus.SUCCESSFUL
    assert len(job.worker_ids) == 2 and job.worker_ids[0] != job.worker_ids[1]
    assert entries.count() == followers + 1  # every follower once, the author once
    assert (
        entries.exclude(user_id=author.id).count()
        == Follow.objects.filter(followed_id=author.id).count()
    )
    assert_feeds_match_pull_query([author, *User.objects.filter(username__startswith="f")[:50]])
