"""Restarts lose no work (issue 12): the app stopped the ordinary ways while a fan-out runs, then
started again, and every active follower has the post exactly once.

- `microblog serve` stopped with Ctrl-C (SIGINT to its whole process group, as a terminal does),
  with SIGTERM to every process of the app at once (as systemd and Docker do), and with SIGTERM to
  its job worker alone: the interrupted fan-out goes back to the queue (never "failed"), resumes
  after its last committed chunk on the next start, and `/health` never says "ok" while a fan-out
  is abandoned;
- a job interrupted by SystemExit, KeyboardInterrupt or the worker's own grace timer is queued
  again, not recorded as failed;
- the safety net: a pending fan-out whose job row was deleted is found and completed.

The app runs as processes with production settings on the test database (the fault tests'
helpers); PostgreSQL only, like them.
"""

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from microblog import jobs
from microblog.accounts.models import User
from microblog.follows.models import Follow
from microblog.posts.models import Post
from microblog.posts.services import post_create
from microblog.timelines.models import FanOut, FeedEntry
from tests.feeds import feed_ids
from tests.jobs.helpers import bulk_followers, database_url, worker_command, worker_env
from tests.ops.test_faults import Process, WebUser, app_env, running, wait_for
from tests.stream.helpers import MICROBLOG, free_port

FOLLOWERS = 40_000
CHUNK = 100  # 400 chunks: a fan-out of a few seconds, long enough to be cut
GRACE = 5  # JOB_STOP_GRACE_SECONDS for the app under test

FAN_OUT = "microblog.jobs.fan_out_post"


# --- Jobs interrupted in the worker (in-process, both databases) ------------------------------

RUNS: dict[str, int] = {}


@jobs.job(jobs.DEFAULT)
def interrupted_once(key: str, how: str) -> str:
    """Raises `how` on its first run (as a stop does, inside the job), succeeds on the next."""
    RUNS[key] = RUNS.get(key, 0) + 1
    if RUNS[key] == 1 and how == "SystemExit":
        raise SystemExit(1)
    if RUNS[key] == 1 and how == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if RUNS[key] == 1 and how == "JobInterrupted":
        raise jobs.JobInterrupted("stopping")
    return f"done {key}"


@pytest.mark.parametrize("how", ["SystemExit", "KeyboardInterrupt", "JobInterrupted"])
def test_a_job_interrupted_by_a_stop_is_queued_again_not_failed(db_job_backend, how):
    RUNS.clear()
    interrupted_once.enqueue("k", how)
    db_job_backend()  # the worker stops: a stop reached it
    job = DBTaskResult.objects.get()
    assert job.status == TaskResultStatus.READY  # back in the queue, not FAILED
    assert len(job.worker_ids) == 1
    assert not jobs.failed_without_retry().exists()

    db_job_backend()  # the next start
    job.refresh_from_db()
    assert job.status == TaskResultStatus.SUCCESSFUL
    assert job.return_value == "done k"
    assert len(job.worker_ids) == 2  # the interrupted run, then the one that finished
    assert not DBTaskResult.objects.filter(status=TaskResultStatus.FAILED).exists()


@jobs.job(jobs.DEFAULT)
def sleeps(seconds: float) -> None:
    """A job that never stops by itself before `seconds` (no checkpoint)."""
    time.sleep(seconds)


@pytest.mark.postgres_only
def test_a_job_running_past_the_grace_period_is_interrupted_and_queued_again(
    db_job_backend, tmp_path
):
    """Any number of stop signals: the worker waits JOB_STOP_GRACE_SECONDS, then interrupts the
    job and puts it back in the queue."""
    sleeps.enqueue(120)
    env = worker_env(JOB_STOP_GRACE_SECONDS="2")
    command = worker_command("--no-scheduler", "--interval", "0.05")
    with running(command, env, tmp_path / "worker.log") as worker:
        job = DBTaskResult.objects.get()
        wait_for(
            lambda: DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).exists(),
            "the worker runs the job",
            timeout=30,
        )
        stop_sent = time.monotonic()
        for _ in range(3):  # a terminal's Ctrl-C, a supervisor's SIGTERM, an impatient user
            os.kill(worker.pid, signal.SIGTERM)
            time.sleep(0.2)
        worker.popen.wait(15)
        stopped = time.monotonic() - stop_sent
    assert 2 <= stopped < 10, stopped
    job.refresh_from_db()
    assert job.status == TaskResultStatus.READY
    assert "interrupted (JobInterrupted" in (tmp_path / "worker.log").read_text()


# --- The app stopped mid fan-out, then started again -----------------------------------------


@dataclass
class HealthWatch:
    """Polls /health (and, around each answer, the database) from a thread, recording every
    answer "ok" given while the star's fan-out was abandoned: unfinished, with no job queued or
    running for it."""

    url: str
    post_id: int
    complete: int
    ok_while_abandoned: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def abandoned(self, conn: psycopg.Connection) -> bool:
        pending = conn.execute(
            "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE task_path = %s "
            "AND status IN ('READY', 'RUNNING') AND args_kwargs -> 'args' -> 0 = to_jsonb(%s)",
            [FAN_OUT, self.post_id],
        ).fetchone()
        entries = conn.execute(
            "SELECT count(*) FROM timelines_feedentry WHERE post_id = %s", [self.post_id]
        ).fetchone()
        assert pending is not None and entries is not None
        return pending[0] == 0 and entries[0] < self.complete

    def run(self, base: str) -> None:
        probe = WebUser(base, "probe")
        with psycopg.connect(self.url, autocommit=True) as conn:
            for _ in range(100_000):
                if self.stopping.wait(0.1):
                    return
                before = self.abandoned(conn)
                try:
                    answer = probe.get("/health")
                except OSError:
                    continue  # the app is down
                status = answer.body.split('"status": "', 1)[-1].split('"', 1)[0]
                self.answers.append(status)
                if before and self.abandoned(conn) and status == "ok":
                    self.ok_while_abandoned.append(answer.body)

    @contextmanager
    def watching(self, base: str) -> Iterator["HealthWatch"]:
        thread = threading.Thread(target=self.run, args=(base,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            thread.join(15)


def app_processes(leader: int) -> list[int]:
    """The process `leader` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [leader]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def job_worker_of(leader: int) -> int:
    for pid in app_processes(leader):
        if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            return pid
    raise AssertionError("no job worker under microblog serve")


def stop_ctrl_c(app: Process) -> None:
    os.killpg(app.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C


def stop_like_systemd(app: Process) -> None:
    for pid in app_processes(app.pid):  # KillMode=control-group: every process at once
        os.kill(pid, signal.SIGTERM)


def stop_the_worker_alone(app: Process) -> None:
    os.kill(job_worker_of(app.pid), signal.SIGTERM)


def entries(post_id: int) -> int:
    return FeedEntry.objects.filter(post_id=post_id).count()


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    "stop", [stop_ctrl_c, stop_like_systemd, stop_the_worker_alone], ids=lambda f: f.__name__
)
def test_a_fan_out_cut_by_a_stop_completes_exactly_once_after_a_restart(db, tmp_path, stop):
    url = database_url()
    port = free_port()
    env = app_env(
        url,
        FANOUT_CHUNK_SIZE=str(CHUNK),
        FANOUT_CELEBRITY_FOLLOWERS="1000000",
        JOB_STOP_GRACE_SECONDS=str(GRACE),
    )
    serve = [*MICROBLOG, "serve", "--stream", "off", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    complete = FOLLOWERS + 1  # every fan once, and the author's own entry

    first = Process(serve, env, tmp_path / "serve1.log", group=True)
    try:
        first.wait_for_up(port)
        star = WebUser(base, "star").sign_up()
        bulk_followers(User.objects.get(username="star"), FOLLOWERS, "fan")
        assert star.post("To every fan, once").status == 302
        post = Post.objects.get(content="To every fan, once")
        watch = HealthWatch(url, post.id, complete)
        with watch.watching(base):
            wait_for(
                lambda: 1 < entries(post.id) < complete,
                "the fan-out has begun",
                timeout=60,
                interval=0.002,
            )
            stop(first)
            stop_sent = time.monotonic()
            first.popen.wait(GRACE + 15)
            stopped_in = time.monotonic() - stop_sent
            at_stop = entries(post.id)
            assert 1 < at_stop < complete, f"not cut mid-way: {at_stop}"
            job = DBTaskResult.objects.get(task_path=FAN_OUT)
            # Back in the queue, not failed; its progress is the chunks that committed.
            assert job.status == TaskResultStatus.READY, (job.status, job.traceback)
            progress = FanOut.objects.get(post_id=post.id)
            assert progress.finished_at is None and progress.done_through > 0
            fans = Follow.objects.filter(followed__username="star")
            assert (
                FeedEntry.objects.filter(post_id=post.id, user_id__lte=progress.done_through)
                .exclude(user__username="star")
                .count()
                == at_stop - 1
                == fans.filter(follower_id__lte=progress.done_through).count()
            )

            restarted = time.monotonic()
            with running(serve, env, tmp_path / "serve2.log", port=port, group=True):
                wait_for(
                    lambda: (
                        entries(post.id) == complete
                        and DBTaskResult.objects.filter(task_path=FAN_OUT).get().status
                        == TaskResultStatus.SUCCESSFUL
                    ),
                    "the fan-out completes after the restart",
                    timeout=120,
                )
                completed_in = time.monotonic() - restarted
                time.sleep(0.5)  # a few more /health answers after the completion
    finally:
        first.stop()

    first_log = (tmp_path / "serve1.log").read_text(errors="replace")
    assert "queued again" in first_log, first_log[-3000:]
    assert "SystemExit" not in first_log
    # Every active follower has the post exactly once (the primary key forbids a second copy;
    # none is missing), as the fans see it on For You.
    assert entries(post.id) == complete
    missing = fans.exclude(
        follower_id__in=FeedEntry.objects.filter(post_id=post.id).values("user_id")
    )
    assert not missing.exists()
    ids = list(fans.order_by("follower_id").values_list("follower_id", flat=True))
    for fan in User.objects.filter(id__in=[ids[0], ids[len(ids) // 2], ids[-1]]):
        assert feed_ids(fan).count(post.id) == 1
    # The job's history: one row, run by the stopped worker then by the restarted one.
    job = DBTaskResult.objects.get(task_path=FAN_OUT)
    assert job.status == TaskResultStatus.SUCCESSFUL
    assert len(job.worker_ids) == 2 and job.worker_ids[0] != job.worker_ids[1]
    assert job.return_value == complete - at_stop  # resumed: the done chunks were not redone
    assert not DBTaskResult.objects.filter(status=TaskResultStatus.FAILED).exists()
    assert FanOut.objects.get(post_id=post.id).finished_at is not None
    assert watch.ok_while_abandoned == [], watch.ok_while_abandoned[:1]
    assert "ok" in watch.answers
    print(
        f"RESTART {stop.__name__}: stopped {stopped_in:.1f}s after the signal with "
        f"{at_stop - 1} of {FOLLOWERS} entries written; completed {completed_in:.1f}s after the "
        f"restart; {len(watch.answers)} /health answers"
    )


# --- The safety net ---------------------------------------------------------------------------


@pytest.mark.postgres_only
def test_a_pending_fan_out_whose_job_row_was_deleted_is_completed_by_the_safety_net(
    db_job_backend, settings, client, tmp_path
):
    settings.FANOUT_CHUNK_SIZE = 500
    star = User.objects.create_user(username="star", password=None, last_seen_at=timezone.now())
    bulk_followers(star, 3_000, "fan")
    post = post_create(author=star, content="Nearly lost")
    # An operator (or a bug) deletes the job row: nothing would ever run this fan-out.
    assert DBTaskResult.objects.filter(task_path=FAN_OUT).delete()[0] == 1
    assert entries(post.id) == 1

    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["checks"]["jobs"]["fan_outs_abandoned"] == 1
    metrics = client.get("/metrics").content.decode()
    assert 'microblog_jobs_abandoned{kind="fan_out"} 1.0' in metrics

    env = worker_env(FANOUTS_RESUME_INTERVAL="1", SCHEDULER_POLL_SECONDS="0.2")
    command = worker_command("--interval", "0.05")  # with its scheduler
    with running(command, env, tmp_path / "worker.log"):
        wait_for(
            lambda: (
                entries(post.id) == 3_001
                and FanOut.objects.get(post_id=post.id).finished_at is not None
            ),
            "the safety net completes the fan-out",
            timeout=60,
        )
    assert "had no job left to run it: enqueued again" in (tmp_path / "worker.log").read_text()
    job = DBTaskResult.objects.get(task_path=FAN_OUT)
    assert job.status == TaskResultStatus.SUCCESSFUL
    assert DBTaskResult.objects.get(task_path="microblog.jobs.fanouts_resume").return_value == 1
    assert client.get("/health").json()["checks"]["jobs"]["fan_outs_abandoned"] == 0
    call_command("worker", batch=True, verbosity=0)  # nothing left for it
    assert entries(post.id) == 3_001
