"""`microblog worker`: runs background jobs, and enqueues the periodic maintenance jobs.

A worker loses no job to a stop. Asked to stop (SIGTERM, SIGINT, SIGQUIT: one or many, from a
terminal, a supervisor or a process manager), it takes no new job and lets the current one run
for JOB_STOP_GRACE_SECONDS; a job that can stop safely sooner does (a fan-out, after its current
chunk). A job still running then is interrupted. Either way the job goes back to the queue, to
resume on the next start (docs/operations.md, "Stopping and restarting").

A worker outlives its database: when the database stops answering (a restart, a failover) the
worker waits for it, with a bounded backoff, then puts the job it was running back in the queue
and carries on. It does not exit, so `microblog serve`, which stops the whole app when a child
exits, keeps serving through a database outage (docs/operations.md, "Database down").
"""

import contextlib
import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, connections
from django_tasks_db.compat import TaskContext, task_finished, task_started
from django_tasks_db.management.commands import db_worker
from django_tasks_db.models import DBTaskResult

from microblog import jobs
from microblog.core.errors import DATABASE_UNAVAILABLE
from microblog.jobs import queue
from microblog.ops import scheduler

logger = logging.getLogger("microblog.jobs")


def close_connections() -> None:
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(*DATABASE_UNAVAILABLE):  # already broken: dropped either way
            conn.close()


def wait_for_database(first_delay: float = 0.5, max_delay: float = 5.0) -> None:
    """Returns once the database answers a `SELECT 1`; until then tries again with a backoff
    of `first_delay` doubling up to `max_delay` seconds. SIGTERM still stops the process."""
    delay = first_delay
    waited_since = time.monotonic()
    attempt = 0
    while True:  # as long as the database is away; each try is bounded by its connect timeout
        attempt += 1
        close_connections()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            if attempt > 1:
                logger.warning(
                    "worker: database reachable again after %.1fs", time.monotonic() - waited_since
                )
            return
        except DATABASE_UNAVAILABLE as error:
            if attempt == 1 or attempt % 10 == 0:
                logger.warning("worker: database unreachable (%s); waiting for it", error)
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)


class Worker(db_worker.Worker):
    """django-tasks-db's worker loop (0.13, pinned in pyproject.toml) with a stop that loses no
    job. The engine's own stop finishes the current job on the first signal, but on a second one
    (Ctrl-C reaches the whole process group, then `microblog serve` forwards its own stop) it
    raises SystemExit inside the job and records it as failed for good, and nothing retries it.
    Here later signals change nothing, the grace period is bounded, and an interrupted job is put
    back in the queue instead of being marked failed."""

    in_job = False  # True while the job's own code runs (the only place to interrupt it)

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        name = signal.strsignal(signum)
        if not self.running:
            logger.warning("worker: %s again; already stopping", name)
            return
        self.running = False
        jobs.stop_requested.set()
        if not self.running_task:
            sys.exit(0)  # between jobs (e.g. asleep): nothing to lose
        grace = settings.JOB_STOP_GRACE_SECONDS
        logger.warning(
            "worker: %s; stopping after the current job, which goes back to the queue if it "
            "still runs in %.0fs",
            name,
            grace,
        )
        signal.signal(signal.SIGALRM, self.interrupt_job)
        signal.setitimer(signal.ITIMER_REAL, max(grace, 0.001))

    def interrupt_job(self, signum: int, frame: FrameType | None) -> None:
        if self.in_job:
            raise jobs.JobInterrupted(
                f"still running {settings.JOB_STOP_GRACE_SECONDS}s after the stop request"
            )

    def run_task(self, db_task_result: DBTaskResult) -> None:
        """The engine's `run_task`, except that an interruption puts the job back in the queue
        (its progress is kept: every job is idempotent, a fan-out resumes after its last chunk)."""
        try:
            self.running_task = True
            task = db_task_result.task
            task_result = db_task_result.task_result
            task_started.send(sender=task.get_backend(), task_result=task_result)
            try:
                self.in_job = True
                if task.takes_context:
                    value = task.call(
                        TaskContext(task_result=task_result),
                        *task_result.args,
                        **task_result.kwargs,
                    )
                else:
                    value = task.call(*task_result.args, **task_result.kwargs)
            finally:
                self.in_job = False
            db_task_result.set_successful(value)
            task_finished.send(sender=task.get_backend(), task_result=db_task_result.task_result)
        except jobs.INTERRUPTIONS as interruption:
            self.running = False  # a SystemExit or Ctrl-C that bypassed `shutdown`: stop too
            self.requeue(db_task_result, interruption)
        except BaseException as error:
            db_task_result.set_failed(error)
            with contextlib.suppress(Exception):
                task_finished.send(
                    sender=type(db_task_result.task.get_backend()),
                    task_result=db_task_result.task_result,
                )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.running_task = False
            self._run_tasks += 1

    def requeue(self, db_task_result: DBTaskResult, interruption: BaseException) -> None:
        # The interruption may have landed mid-query: start from fresh connections.
        close_connections()
        try:
            requeued = queue.requeue_job(db_task_result.id)
        except DATABASE_UNAVAILABLE:
            # Left RUNNING under this worker's id: the next worker to start requeues it.
            logger.warning("worker: could not requeue job %s now", db_task_result.id)
            return
        if requeued:
            logger.warning(
                "worker: job %s (%s) interrupted (%s: %s); queued again",
                db_task_result.id,
                db_task_result.task_path,
                type(interruption).__name__,
                interruption,
            )


class Command(BaseCommand):
    help = "Run a background job worker. Several can run at once, on one machine or many."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            default="fanout,default,maintenance",
            help="Comma-separated queues to take jobs from (default: all).",
        )
        parser.add_argument("--interval", type=float, default=0.1)
        parser.add_argument("--batch", action="store_true", help="Run what is queued, then exit.")
        parser.add_argument(
            "--no-scheduler", action="store_true", help="Do not enqueue periodic maintenance."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker_id = queue.worker_id()
        if not options["batch"]:
            wait_for_database()
        # Jobs left RUNNING by a worker that died mid-job would otherwise never run again.
        queue.requeue_abandoned_jobs(worker_id)
        stop = None
        if not options["batch"] and not options["no_scheduler"]:
            stop = scheduler.start(settings.SCHEDULER_POLL_SECONDS, worker_id=worker_id)
        db_worker.Command().configure_logging(options["verbosity"])
        jobs.stop_requested.clear()
        worker = Worker(
            queue_names=options["queues"].split(","),
            interval=options["interval"],
            batch=options["batch"],
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=worker_id,
            excluded_queue_names=[],
        )
        handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        worker.configure_signals()
        try:
            while worker.running:  # once, plus once per database outage survived
                try:
                    worker.run()
                    return
                except DATABASE_UNAVAILABLE:
                    if options["batch"]:
                        raise
                    logger.warning("worker: lost the database", exc_info=True)
                    wait_for_database()
                    # The job this worker was running when the database went away stayed
                    # RUNNING under its id: nothing runs it now, so it is queued again.
                    requeued = queue.requeue_jobs_of(worker_id)
                    if requeued:
                        logger.warning("worker: %d interrupted job(s) queued again", requeued)
        finally:
            for sig, handler in handlers.items():  # as they were (in-process runs, the tests)
                signal.signal(sig, handler)
            if stop is not None:
                stop.set()
