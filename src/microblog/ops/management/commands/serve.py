"""`microblog serve`: the whole app in one command (web server and job worker) until Ctrl-C.

Stopping (Ctrl-C, SIGTERM): each child gets one SIGTERM, however many signals arrive; a job
worker has JOB_STOP_GRACE_SECONDS to put its current job back in the queue (a fan-out does so at
its next chunk), and only a child still running a few seconds after that is killed (a job killed
so is still queued again, by the next worker to start). docs/operations.md, "Stopping and
restarting".
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from microblog.ops.granian import granian_command

# After the workers' grace period: time for a worker to requeue its job and exit.
STOP_MARGIN_SECONDS = 5.0


class Command(BaseCommand):
    help = "Serve the app with granian and run a job worker beside it, until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "1"))
        )
        parser.add_argument("--threads", type=int, default=int(os.environ.get("WEB_THREADS", "8")))
        parser.add_argument(
            "--job-workers", type=int, default=int(os.environ.get("JOB_WORKERS", "1"))
        )
        parser.add_argument(
            "--stream",
            choices=["same-port", "off"],
            default=os.environ.get("SERVE_STREAM", "same-port"),
            help="same-port: pages and live updates (/events/) from one ASGI app on --port; "
            "off: pages only, under native WSGI (run `microblog stream` for /events/)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        # docs/architecture.md, "Real-time": one port for pages and /events/ (the laptop
        # default), or the pages under native WSGI, which costs less CPU per page.
        same_port = options["stream"] == "same-port"
        commands = [
            granian_command(
                "microblog.stream.combined:application"
                if same_port
                else "microblog.wsgi:application",
                interface="asgi" if same_port else "wsgi",
                host=options["host"],
                port=options["port"],
                workers=options["web_workers"],
                # Under ASGI the combined app runs pages in its own pool of --threads threads
                # (STREAM_WSGI_THREADS below).
                blocking_threads=None if same_port else options["threads"],
                event_streams=same_port,
            )
        ]
        commands += [[python, "-m", "microblog", "worker"]] * options["job_workers"]
        metrics_dir, made_dir = self.metrics_dir()
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "STREAM_WSGI_THREADS": str(options["threads"]),
        }
        try:
            children = [subprocess.Popen(command, env=env) for command in commands]  # noqa: S603
            self.supervise(children, options)
        finally:
            if made_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        self.stdout.write("Stopped.")

    def metrics_dir(self) -> tuple[Path, bool]:
        """The directory where every child writes its Prometheus samples (multiprocess mode).
        An operator's PROMETHEUS_MULTIPROC_DIR is emptied of old samples and kept; otherwise a
        fresh temporary one is made, and removed on exit."""
        given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if given:
            path = Path(given)
            path.mkdir(parents=True, exist_ok=True)
            for stale in path.glob("*.db"):
                stale.unlink()
            return path, False
        return Path(tempfile.mkdtemp(prefix="microblog-metrics-")), True

    def supervise(self, children: list[subprocess.Popen[bytes]], options: dict[str, Any]) -> None:
        self.stdout.write(
            f"Microblog is running on http://{options['host']}:{options['port']}/ "
            "(web + job worker). Press Ctrl-C to stop."
        )

        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            if stopping:
                self.stderr.write(
                    f"Still stopping: the job workers have up to {self.grace():.0f}s to put "
                    "their current job back in the queue."
                )
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                if any(child.poll() is not None for child in children):
                    self.stderr.write("A process of the app exited; stopping the others.")
                    break
                time.sleep(0.5)
        finally:
            # One stop request per child (a Ctrl-C in a terminal has already reached them
            # all: a second signal changes nothing for a worker), then the grace period.
            for child in children:
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + self.grace()
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()

    @staticmethod
    def grace() -> float:
        return float(settings.JOB_STOP_GRACE_SECONDS) + STOP_MARGIN_SECONDS
