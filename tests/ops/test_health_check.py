"""The connection health check without a round trip (core.postgresql), on PostgreSQL."""

import select
import time

import psycopg
import pytest
from django.db import connection

from tests.conftest import is_postgres

pytestmark = pytest.mark.django_db


def backend_pid() -> int:
    connection.ensure_connection()
    return int(connection.connection.info.backend_pid)


def counting_is_usable(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    usable = connection.is_usable

    def counted() -> bool:
        calls.append(1)
        return usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    return calls


def test_a_healthy_connection_is_reused_without_a_select_1(monkeypatch):
    """What every request begins with (close_old_connections), then a query: the same
    connection, and Django's `SELECT 1` was not run."""
    if not is_postgres():
        pytest.skip("PostgreSQL only")
    pid = backend_pid()
    calls = counting_is_usable(monkeypatch)
    for _ in range(3):
        connection.close_if_unusable_or_obsolete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] == pid
    assert calls == []


def test_a_connection_the_server_ended_is_replaced_before_the_next_query(monkeypatch):
    """A backend terminated as a restart terminates it: the next request's first query runs on
    a new connection instead of failing."""
    if not is_postgres():
        pytest.skip("PostgreSQL only")
    pid = backend_pid()
    settings = connection.get_connection_params()
    admin = psycopg.connect(
        host=settings.get("host"),
        port=settings.get("port"),
        user=settings.get("user"),
        dbname=settings["dbname"],
        autocommit=True,
    )
    with admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The server's farewell reaches the socket (what the check looks for).
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + 10
    while not poller.poll(100) and time.monotonic() < deadline:
        pass
    calls = counting_is_usable(monkeypatch)
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
    assert calls == [1]
