"""Django's PostgreSQL backend, with a health check that costs no round trip when nothing happened.

`CONN_HEALTH_CHECKS` runs `SELECT 1` before the first query of every request (and of every job
and stream call, after `close_old_connections`) on a reused connection, so that a connection
the server closed in the meantime (a restart, a terminated backend, an idle timeout) is replaced
instead of failing the request. That is a round trip on every request (~90 us wall and ~30 us of
CPU here, docs/benchmarks.md, issue 15). A server that closes a connection writes to it first
(an error message, then end of file), so its socket becomes readable, while an idle healthy
connection has nothing to read. This check asks the kernel (a poll with no timeout) and runs
Django's `SELECT 1` only when the socket has something to read, reports a hang-up or an error,
or psycopg already knows the connection is closed or broken. A connection lost without a word
(a network partition) is missed by both checks alike: `SELECT 1` would fail or hang as the first
query does.
"""

import select
from typing import Any

import psycopg
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper


def quiet(connection: Any) -> bool:
    """Whether a psycopg connection is open and nothing from the server waits on its socket."""
    if connection.closed or connection.broken:
        return False
    try:
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        return False


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled  # type: ignore[attr-defined]
            and not self.health_check_done  # type: ignore[has-type]
            and not self.pool
            and quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
