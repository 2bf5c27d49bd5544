"""`microblog stream`: the Server-Sent Events process (microblog.stream.app) under granian's ASGI
interface. Production runs it beside the web processes, with the load balancer sending `/events/`
to it; `microblog serve` serves `/events/` itself on the pages' port."""

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from microblog.ops.granian import granian_command


class Command(BaseCommand):
    help = "Serve live updates (Server-Sent Events at /events/) until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("STREAM_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("STREAM_PORT", "8001")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("STREAM_WORKERS", "1")),
            help="processes; each holds one LISTEN connection and its own connection cap",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        command = granian_command(
            "microblog.stream.asgi:application",
            interface="asgi",
            host=options["host"],
            port=options["port"],
            workers=options["workers"],
            event_streams=True,
        )
        sys.stdout.flush()
        os.execv(sys.executable, command)  # noqa: S606 (our own interpreter, fixed arguments)
