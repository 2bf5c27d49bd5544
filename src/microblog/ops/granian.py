"""The granian command line of the app's web processes, shared by `microblog serve` and
`microblog stream`, so both start their servers the same way."""

import sys


def granian_command(
    app: str,
    *,
    interface: str,
    host: str,
    port: int,
    workers: int,
    blocking_threads: int | None = None,
    event_streams: bool = False,
) -> list[str]:
    command = [sys.executable, "-m", "granian", "--interface", interface, "--host", host]
    command += ["--port", str(port), "--workers", str(workers), "--no-ws"]
    if blocking_threads is not None:
        command += ["--blocking-threads", str(blocking_threads)]
    if event_streams:
        # Open event streams never end by themselves: a stopping worker is killed after 5 s.
        command += ["--workers-kill-timeout", "5"]
    return [*command, app]
