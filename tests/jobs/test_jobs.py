"""The job system on the real database backend and the real worker (in-process, `--batch`):
retries with backoff, giving up, enqueue-after-commit, idempotent fan-out, the scheduler, the
dashboard's numbers, abandoned-job recovery and `microblog reconcile-counters`."""

import logging
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.models import F
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from microblog import jobs
from microblog.accounts.models import User
from microblog.core.models import ScheduledJob
from microblog.follows.services import follow_create
from microblog.jobs import queue
from microblog.moderation.services import report_create
from microblog.ops import scheduler
from microblog.posts.models import Post
from microblog.posts.services import post_create, post_delete
from microblog.timelines import fanout
from microblog.timelines.models import FanOut, FeedEntry
from tests.conftest import refreshed

# Jobs only these tests use. The worker finds a job by its import path, so they must live at
# module level ("tests.jobs.test_jobs.always_fails").
ATTEMPTS: Counter[str] = Counter()


@jobs.job(jobs.DEFAULT)
def always_fails(key: str) -> None:
    ATTEMPTS[key] += 1
    raise RuntimeError(f"boom {key} #{ATTEMPTS[key]}")


@jobs.job(jobs.DEFAULT)
def fails_then_succeeds(key: str, failures: int) -> str:
    ATTEMPTS[key] += 1
    if ATTEMPTS[key] <= failures:
        raise RuntimeError(f"transient {key}")
    return f"done {key}"


@pytest.fixture
def run_jobs(settings, db_job_backend):
    settings.JOB_RETRY_BASE_SECONDS = 10
    settings.JOB_MAX_ATTEMPTS = 4
    ATTEMPTS.clear()
    return db_job_backend


def rows(path: str):
    return DBTaskResult.objects.filter(task_path=path).order_by("enqueued_at")


def make_retries_due() -> int:
    """Time passes: every waiting retry becomes due."""
    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, run_after__gt=timezone.now()
    ).update(run_after=timezone.now() - timedelta(seconds=1))


def test_a_failing_job_is_retried_with_exponential_backoff_then_gives_up(run_jobs, caplog):
    path = "tests.jobs.test_jobs.always_fails"
    always_fails.enqueue("k")
    for attempt in range(1, 5):
        before = timezone.now()
        with caplog.at_level(logging.WARNING, logger="microblog.jobs"):
            run_jobs()
        after = timezone.now()
        assert ATTEMPTS["k"] == attempt
        done = rows(path).filter(status=TaskResultStatus.FAILED)
        assert done.count() == attempt
        failed = done.last()
        assert failed is not None
        assert failed.exception_class_path == "builtins.RuntimeError"
        assert f"RuntimeError: boom k #{attempt}" in failed.traceback
        waiting = list(rows(path).filter(status=TaskResultStatus.READY))
        if attempt < 4:
            # The next attempt is queued with attempt+1, due after 10 s * 2^(attempt-1).
            assert len(waiting) == 1
            retry = waiting[0]
            assert retry.args_kwargs == {"args": ["k"], "kwargs": {"attempt": attempt + 1}}
            delay = timedelta(seconds=10 * 2 ** (attempt - 1))
            assert before + delay <= retry.run_after <= after + delay
            assert retry.queue_name == "default"
            run_jobs()  # not due yet: the worker leaves it alone
            assert ATTEMPTS["k"] == attempt
            assert make_retries_due() == 1
        else:
            assert waiting == []
    assert "always_fails gave up after 4 attempts" in caplog.text
    attempts = [row.args_kwargs["kwargs"].get("attempt", 1) for row in rows(path)]
    assert attempts == [1, 2, 3, 4]
    assert set(rows(path).values_list("status", flat=True)) == {TaskResultStatus.FAILED}


def test_a_job_that_fails_transiently_succeeds_on_a_retry(run_jobs):
    fails_then_succeeds.enqueue("t", failures=2)
    for _ in range(3):
        run_jobs()
        make_retries_due()
    run_jobs()
    statuses = list(
        rows("tests.jobs.test_jobs.fails_then_succeeds").values_list("status", flat=True)
    )
    assert statuses == [TaskResultStatus.FAILED, TaskResultStatus.FAILED, "SUCCESSFUL"]
    last = rows("tests.jobs.test_jobs.fails_then_succeeds").last()
    assert last is not None
    assert last.return_value == "done t"
    assert last.args_kwargs["kwargs"] == {"failures": 2, "attempt": 3}


def test_dashboard_numbers_follow_the_job_table(run_jobs, make_user, client_for):
    always_fails.enqueue("d")
    run_jobs()  # attempt 1 fails; attempt 2 waits 10 s
    stats = queue.queue_stats()
    assert stats["by_state"] == {"FAILED": 1, "READY": 1}
    assert stats["failed"] == 1
    assert stats["queue_depth"] == 1
    assert stats["depth_by_queue"] == {"default": 1}
    assert stats["oldest_queued_age_s"] == 0.0  # the only queued job is not due yet

    # A fan-out job due for a minute: counted in its queue and in the age of the oldest.
    DBTaskResult.objects.create(
        args_kwargs={"args": [1], "kwargs": {}},
        priority=50,
        task_path="microblog.jobs.fan_out_post",
        queue_name="fanout",
        backend_name="default",
        run_after=timezone.now() - timedelta(minutes=1),
    )
    DBTaskResult.objects.filter(queue_name="fanout").update(
        enqueued_at=timezone.now() - timedelta(minutes=1)
    )
    stats = queue.queue_stats()
    assert stats["depth_by_queue"] == {"default": 1, "fanout": 1}
    assert stats["queue_depth"] == 2
    assert 59 <= stats["oldest_queued_age_s"] <= 120

    page = client_for(make_user("ops", is_staff=True)).get("/staff/jobs").content.decode()
    assert "tests.jobs.test_jobs.always_fails" in page
    assert "RuntimeError: boom d #1" in page
    assert "2</strong> queued" in page
    assert "1</strong> failed" in page


def jobs_seen_by_another_connection() -> int:
    """What a worker would see: the job rows, read from another thread's connection."""
    seen: list[int] = []

    def count() -> None:
        try:
            seen.append(DBTaskResult.objects.count())
        finally:
            connections.close_all()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join(10)
    return seen[0]


def test_a_writes_job_commits_and_rolls_back_with_the_write(run_jobs, alice):
    """The fan-out job (and the fan-out's progress row) are written in the post's own
    transaction: a rolled-back post leaves no job, a committed one always has its job, and no
    worker sees the job before the commit."""

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        post_create(author=alice, content="rolled back")
        assert DBTaskResult.objects.count() == 1  # in the post's transaction
        raise Abort
    assert not Post.objects.exists()
    assert not DBTaskResult.objects.exists()
    assert not FanOut.objects.exists()

    with transaction.atomic():
        post = post_create(author=alice, content="kept")
        assert DBTaskResult.objects.count() == 1
        if connection.vendor == "postgresql":  # SQLite's in-memory test database is one connection
            assert jobs_seen_by_another_connection() == 0  # not before the commit
    if connection.vendor == "postgresql":
        assert jobs_seen_by_another_connection() == 1
    job = DBTaskResult.objects.get()
    assert job.task_path == "microblog.jobs.fan_out_post"
    assert job.args_kwargs == {"args": [post.id], "kwargs": {}}
    assert job.queue_name == "fanout"
    assert job.priority == jobs.PRIORITY[jobs.FANOUT]
    assert FanOut.objects.get().post_id == post.id
    run_jobs()
    assert FanOut.objects.get().finished_at is not None


def test_fan_out_job_is_idempotent(settings, run_jobs, make_user):
    settings.FANOUT_CHUNK_SIZE = 3
    author = make_user("author")
    fans = [make_user(f"fan{i}") for i in range(10)]
    for fan in fans:
        follow_create(follower=fan, followed=author)
    post = post_create(author=author, content="once")
    run_jobs()

    def entries() -> list[tuple[int, int, int]]:
        return list(
            FeedEntry.objects.order_by("user_id", "post_id").values_list(
                "user_id", "post_id", "author_id"
            )
        )

    first = entries()
    assert {user for user, p, _ in first if p == post.id} == {author.id, *(f.id for f in fans)}

    jobs.fan_out_post.enqueue(post.id)  # a retry, or a second run after a crash
    run_jobs()
    assert entries() == first
    assert fanout.fan_out_post(post.id) == 0
    assert entries() == first
    assert set(rows("microblog.jobs.fan_out_post").values_list("status", flat=True)) == {
        "SUCCESSFUL"
    }
    assert list(rows("microblog.jobs.fan_out_post").values_list("return_value", flat=True)) == [
        10,
        0,
    ]


def test_fan_out_of_a_deleted_post_does_nothing(run_jobs, alice, bob):
    follow_create(follower=bob, followed=alice)
    post = post_create(author=alice, content="gone before the worker ran")
    post_delete(post=post, actor=alice)
    run_jobs()
    assert not FeedEntry.objects.exists()
    assert rows("microblog.jobs.fan_out_post").get().status == "SUCCESSFUL"


def test_scheduler_enqueues_each_due_job_once(settings, run_jobs):
    settings.MAINTENANCE_INTERVALS = {"feeds_trim": 600, "jobs_prune": 3600, "counters_check": 30}
    assert scheduler.enqueue_due_jobs() == []  # first sight: scheduled, not due yet
    assert ScheduledJob.objects.count() == 3
    assert not DBTaskResult.objects.exists()

    ScheduledJob.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
    assert sorted(scheduler.enqueue_due_jobs()) == ["counters_check", "feeds_trim", "jobs_prune"]
    assert scheduler.enqueue_due_jobs() == []  # called again: nothing is due any more
    paths = Counter(DBTaskResult.objects.values_list("task_path", flat=True))
    assert paths == {
        "microblog.jobs.feeds_trim": 1,
        "microblog.jobs.jobs_prune": 1,
        "microblog.jobs.counters_check": 1,
    }
    assert set(DBTaskResult.objects.values_list("queue_name", flat=True)) == {"maintenance"}
    now = timezone.now()
    for job in ScheduledJob.objects.all():
        interval = settings.MAINTENANCE_INTERVALS[job.name]
        assert now + timedelta(seconds=interval - 5) < job.next_run_at
        assert job.next_run_at <= now + timedelta(seconds=interval)
    run_jobs()
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}


@pytest.mark.postgres_only
def test_scheduler_called_by_many_workers_at_once_enqueues_once(settings, run_jobs):
    settings.MAINTENANCE_INTERVALS = {"feeds_trim": 600, "jobs_prune": 3600, "counters_check": 30}
    scheduler.enqueue_due_jobs()
    ScheduledJob.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
    barrier = threading.Barrier(6, timeout=30)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            barrier.wait()
            results.append(scheduler.enqueue_due_jobs())
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tick) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(name for names in results for name in names) == [
        "counters_check",
        "feeds_trim",
        "jobs_prune",
    ]
    assert DBTaskResult.objects.count() == 3


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    return child.pid


def running_job(worker_id: str, started_minutes_ago: float = 0) -> DBTaskResult:
    started = timezone.now() - timedelta(minutes=started_minutes_ago)
    return DBTaskResult.objects.create(
        status=TaskResultStatus.RUNNING,
        args_kwargs={"args": [], "kwargs": {}},
        priority=-50,
        task_path="microblog.jobs.jobs_prune",
        queue_name="maintenance",
        backend_name="default",
        run_after=started,
        started_at=started,
        worker_ids=[worker_id],
    )


def test_jobs_of_dead_workers_are_queued_again_and_run(settings, run_jobs):
    settings.JOB_RUNNING_TIMEOUT_SECONDS = 3600
    host = socket.gethostname()[:40]
    dead = running_job(f"{host}:{dead_pid()}:abc")
    alive = running_job(f"{host}:{os.getppid()}:abc")
    elsewhere = running_job("other-host:123:abc", started_minutes_ago=5)
    stuck_elsewhere = running_job("other-host:456:abc", started_minutes_ago=61)
    mine = queue.worker_id()
    own = running_job(mine)
    earlier_self = running_job(f"{host}:{os.getpid()}:zzz")

    assert queue.requeue_abandoned_jobs(mine) == 3
    status = dict(DBTaskResult.objects.values_list("id", "status"))
    assert status[dead.id] == status[stuck_elsewhere.id] == status[earlier_self.id] == "READY"
    assert status[alive.id] == status[elsewhere.id] == status[own.id] == "RUNNING"
    assert queue.requeue_abandoned_jobs(mine) == 0

    run_jobs()  # the worker runs what was recovered
    for job in (dead, stuck_elsewhere, earlier_self):
        job.refresh_from_db()
        assert job.status == "SUCCESSFUL"
        assert len(job.worker_ids) == 2


def test_a_worker_recovers_abandoned_jobs_when_it_starts(run_jobs, alice, bob):
    follow_create(follower=bob, followed=alice)
    post = post_create(author=alice, content="its worker died")
    DBTaskResult.objects.filter(task_path="microblog.jobs.fan_out_post").update(
        status=TaskResultStatus.RUNNING,
        started_at=timezone.now(),
        worker_ids=[f"{socket.gethostname()[:40]}:{dead_pid()}:abc"],
    )
    run_jobs()
    assert FeedEntry.objects.filter(user=bob, post=post).exists()
    assert rows("microblog.jobs.fan_out_post").get().status == "SUCCESSFUL"


def test_reconcile_counters_reports_and_fixes_drift(settings, make_user):
    settings.FANOUT_CELEBRITY_FOLLOWERS = 1
    alice, bob, carol = (make_user(name) for name in ("alice", "bob", "carol"))
    follow_create(follower=bob, followed=alice)
    follow_create(follower=carol, followed=alice)  # alice: 2 followers, a celebrity
    follow_create(follower=alice, followed=bob)
    post = post_create(author=alice, content="hi")
    reply = post_create(author=bob, content="reply", parent_id=post.id)
    report_create(reporter=carol, post_id=reply.id, reason="spam")

    def run(*args: str) -> str:
        out = StringIO()
        call_command("reconcile-counters", *args, stdout=out)
        return out.getvalue()

    assert run() == "No drift: every counter matches the rows it counts.\n"

    User.objects.filter(id=alice.id).update(followers_count=F("followers_count") + 5)
    User.objects.filter(id=bob.id).update(following_count=7, posts_count=0)
    User.objects.filter(id=carol.id).update(is_celebrity=True)
    Post.objects.filter(id=post.id).update(replies_count=3, open_reports=2)
    Post.objects.filter(id=reply.id).update(open_reports=0)

    dry = run("--dry-run")
    assert "would fix" in dry
    assert refreshed(bob).following_count == 7  # a dry run changes nothing

    output = run()
    assert f"user.followers_count of #{alice.id}: stored 7, actual 2" in output
    assert f"user.following_count of #{bob.id}: stored 7, actual 1" in output
    assert f"user.posts_count of #{bob.id}: stored 0, actual 1" in output
    assert f"post.replies_count of #{post.id}: stored 3, actual 1" in output
    assert f"user.is_celebrity of #{carol.id}: stored 1, actual 0" in output
    assert f"post.open_reports of #{post.id}: stored 2, actual 0" in output
    assert f"post.open_reports of #{reply.id}: stored 0, actual 1" in output
    assert "Drift found in 7 counters" in output
    assert "; fixed." in output
    assert dry.replace("would fix", "fixed") == output

    alice, bob, carol = refreshed(alice), refreshed(bob), refreshed(carol)
    assert (alice.followers_count, alice.following_count, alice.posts_count) == (2, 1, 1)
    assert (bob.followers_count, bob.following_count, bob.posts_count) == (1, 1, 1)
    assert alice.is_celebrity and not carol.is_celebrity
    assert Post.objects.get(id=post.id).replies_count == 1
    assert Post.objects.get(id=reply.id).open_reports == 1
    assert run() == "No drift: every counter matches the rows it counts.\n"
