"""`microblog worker`: runs background jobs, and enqueues the periodic maintenance jobs."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from microblog.core import scheduler


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
        stop = None
        if not options["batch"] and not options["no_scheduler"]:
            stop = scheduler.start()
        try:
            call_command(
                "db_worker",
                queue_name=options["queues"],
                interval=options["interval"],
                batch=options["batch"],
                reload=False,
                startup_delay=False,
                verbosity=options["verbosity"],
            )
        finally:
            if stop is not None:
                stop.set()
