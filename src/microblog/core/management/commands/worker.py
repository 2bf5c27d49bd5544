"""`microblog worker`: runs background jobs, and enqueues the periodic maintenance jobs.

A worker outlives its database: when the database stops answering (a restart, a failover) the
worker waits for it, with a bounded backoff, then puts the job it was running back in the queue
and carries on. It does not exit, so `microblog serve`, which stops the whole app when a child
exits, keeps serving through a database outage (docs/operations.md, "Database down").
"""

import contextlib
import logging
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, connections

from microblog.core import maintenance, scheduler
from microblog.core.errors import DATABASE_UNAVAILABLE

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
        worker_id = maintenance.worker_id()
        if not options["batch"]:
            wait_for_database()
        # Jobs left RUNNING by a worker that died mid-job would otherwise never run again.
        maintenance.requeue_abandoned_jobs(worker_id)
        stop = None
        if not options["batch"] and not options["no_scheduler"]:
            stop = scheduler.start(worker_id=worker_id)
        try:
            while True:  # once, plus once per database outage survived
                try:
                    call_command(
                        "db_worker",
                        queue_name=options["queues"],
                        interval=options["interval"],
                        batch=options["batch"],
                        reload=False,
                        startup_delay=False,
                        worker_id=worker_id,
                        verbosity=options["verbosity"],
                    )
                    return
                except DATABASE_UNAVAILABLE:
                    if options["batch"]:
                        raise
                    logger.warning("worker: lost the database", exc_info=True)
                    wait_for_database()
                    # The job this worker was running when the database went away stayed
                    # RUNNING under its id: nothing runs it now, so it is queued again.
                    requeued = maintenance.requeue_jobs_of(worker_id)
                    if requeued:
                        logger.warning("worker: %d interrupted job(s) queued again", requeued)
        finally:
            if stop is not None:
                stop.set()
