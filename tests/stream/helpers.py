"""Helpers for the streaming tests: a database a subprocess can reach, a writer process
(tests/stream/driver.py), the app started as a subprocess, and a small Server-Sent Events client."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
MICROBLOG = [sys.executable, "-m", "microblog"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_SSL_REDIRECT": "0",
        "RATELIMIT_ENABLED": "0",
        "LOG_LEVEL": "WARNING",
        "STREAM_HEARTBEAT_SECONDS": "1",
        "STREAM_POLL_SECONDS": "0.2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


@contextmanager
def database_url(tmp_path: Path) -> Iterator[str]:
    """A URL of the test database that other processes can open: the PostgreSQL test database
    itself, or (SQLite's test database lives in this process's memory) a migrated file."""
    if connection.vendor == "postgresql":
        s = connection.settings_dict
        auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
        yield f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
        return
    url = f"sqlite:///{tmp_path / 'stream.sqlite3'}"
    subprocess.run(
        [*MICROBLOG, "migrate", "--noinput", "-v", "0"],
        env=subprocess_env(url),
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    yield url


class Driver:
    """Writes through the services in a process of its own (tests/stream/driver.py)."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.stream.driver"],
            env=subprocess_env(url),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the stream driver exited"
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer
        return answer

    def user(self, name: str, staff: bool = False) -> tuple[int, str]:
        answer = self.call(op="user", name=name, staff=staff)
        return answer["id"], answer["session"]

    def post(self, author: int, content: str = "hello", parent: int | None = None) -> int:
        return int(self.call(op="post", author=author, content=content, parent=parent)["id"])

    def follow(self, follower: int, followed: int) -> None:
        self.call(op="follow", follower=follower, followed=followed)

    def unfollow(self, follower: int, followed: int) -> None:
        self.call(op="unfollow", follower=follower, followed=followed)

    def unmute(self, reader: int, other: int) -> None:
        self.call(op="unmute", reader=reader, other=other)

    def log_out(self, session: str) -> None:
        """Logs the session out through the log-out view."""
        assert self.call(op="logout", session=session)["status"] == 302

    def change_password(self, user: int, new: str = "a-new-password-for-tests") -> None:
        """Changes the password through the service, which ends the user's sessions."""
        self.call(op="password", user=user, new=new)

    def hide(self, staff: int, post: int) -> None:
        """Staff hide the post (moderation.services.review)."""
        self.call(op="hide", staff=staff, post=post)

    def delete(self, post: int) -> None:
        self.call(op="delete", post=post)

    def mute(self, reader: int, other: int) -> None:
        self.call(op="mute", reader=reader, other=other)

    def block(self, reader: int, other: int) -> None:
        self.call(op="block", reader=reader, other=other)

    def token(self, user: int | None, scope: str = "read write follow") -> tuple[str, int]:
        """An OAuth access token of `user` (None: an app token) with `scope`, of an app of its
        own: (the token, the app's id)."""
        answer = self.call(op="token", user=user, scope=scope)["token"]
        return answer["raw"], answer["app"]

    def revoke(self, user: int, app: int) -> None:
        """The user revokes the app in Settings (api.services.authorization_revoke)."""
        assert self.call(op="revoke", user=user, app=app)["ended"] >= 1

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def app_process(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Starts `microblog <command>` on `port`, waits for /up, and stops it (by its PID)."""
    process = subprocess.Popen([*MICROBLOG, *command], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"microblog {command[0]} exited"
            try:
                with urllib.request.urlopen(base + "/up", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"microblog {command[0]} did not answer /up"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class EventStream:
    """A Server-Sent Events client for tests: `next()` returns the next event as a dict of its
    fields (comments skipped), or None when none came within the timeout or the stream ended.

    Opening it is the readiness signal: the server answers 200 only once the stream is
    registered and the process listens for events, so whatever is written after the constructor
    returns reaches it (no sleep needed)."""

    def __init__(
        self,
        port: int,
        query: str,
        session: str | None,
        last_event_id: str | None = None,
        *,
        path: str = "/events/",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Accept": "text/event-stream", **(headers or {})}
        if session:
            headers["Cookie"] = f"sessionid={session}"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", f"{path}?{query}" if query else path, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status

    def next(self, timeout: float = 5.0) -> dict[str, str] | None:
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        sock = self.connection.sock
        assert sock is not None
        for _ in range(10_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            sock.settimeout(remaining)
            try:
                raw = self.response.readline()
            except TimeoutError:
                return None
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if line == "":
                if "data" in fields:
                    return fields
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.lstrip(" ")
        return None

    def ended(self, timeout: float = 5.0) -> bool:
        """Whether the server ends the stream within the timeout (events before the end are
        passed over)."""
        deadline = time.monotonic() + timeout
        sock = self.connection.sock
        assert sock is not None
        for _ in range(100_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            try:
                if not self.response.readline():
                    return True
            except TimeoutError:
                return False
        return False

    def next_post(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next `post` event (other events, such as reply counts, are passed over)."""
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            event = self.next(max(0.0, deadline - time.monotonic()))
            if event is None:
                return None
            if event.get("event") != "post":
                continue
            data: dict[str, Any] = json.loads(event["data"])
            data["event_id"] = event["id"]
            return data
        return None

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def status_of(port: int, query: str, session: str | None) -> int:
    """The status a request for the stream gets (the connection is closed at once)."""
    events = EventStream(port, query, session)
    events.close()
    return events.status
