"""`microblog worker`: runs background jobs (django-tasks-db's worker on all our queues)."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run a background job worker. Several can run at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", default="fanout,default,maintenance")
        parser.add_argument("--interval", type=float, default=0.2)
        parser.add_argument("--batch", action="store_true", help="Run what is queued, then exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command(
            "db_worker",
            queue_name=options["queues"],
            interval=options["interval"],
            batch=options["batch"],
            reload=False,
            verbosity=options["verbosity"],
        )
