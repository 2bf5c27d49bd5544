"""`microblog worker`: runs background jobs, and enqueues the periodic maintenance jobs."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from microblog.core import maintenance, scheduler


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
        # Jobs left RUNNING by a worker that died mid-job would otherwise never run again.
        maintenance.requeue_abandoned_jobs(worker_id)
        stop = None
        if not options["batch"] and not options["no_scheduler"]:
            stop = scheduler.start(worker_id=worker_id)
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
        finally:
            if stop is not None:
                stop.set()
