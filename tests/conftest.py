"""Shared fixtures. Tests run on the database DATABASE_URL names (SQLite when unset)."""

import os
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from microblog.accounts.models import User
from microblog.posts.models import Post
from microblog.posts.services import post_create

# The cluster's tests start a whole cluster (HAProxy, PostgreSQL primary + replica, PgBouncer):
# `make cluster-test` runs them, `make test` does not.
collect_ignore = [] if os.environ.get("MICROBLOG_CLUSTER_TESTS") == "1" else ["cluster"]

PASSWORD = "correct-horse-battery-staple"
_names = count(1)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    # Every database test is transactional: writes really commit, so jobs and events sent with
    # transaction.on_commit fire as they do in production (a test wrapped in a transaction would
    # silently drop them).
    for item in items:
        marker = item.get_closest_marker("django_db")
        fixtures = getattr(item, "fixturenames", ())
        if marker is not None or "db" in fixtures:
            kwargs = dict(marker.kwargs) if marker is not None else {}
            kwargs["transaction"] = True
            item.add_marker(pytest.mark.django_db(**kwargs), append=False)

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" in engine:
        return
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but DATABASE_URL is not a PostgreSQL URL")
    skip = pytest.mark.skip(
        reason="PostgreSQL-only: DATABASE_URL is not PostgreSQL "
        "(set DATABASE_URL=postgres://user@host:5432/microblog to run it)"
    )
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    postgres = [r for r in skipped if "PostgreSQL-only" in str(r.longrepr)]
    browser = [r for r in skipped if "Chromium" in str(r.longrepr)]
    if postgres:
        terminalreporter.write_line(
            f"NOTE: {len(postgres)} PostgreSQL-only tests were skipped: DATABASE_URL does not "
            "point at PostgreSQL. Run `DATABASE_URL=postgres://postgres@127.0.0.1:5432/microblog "
            "make test` to run them.",
            yellow=True,
        )
    if browser:
        terminalreporter.write_line(
            f"NOTE: {len(browser)} browser tests were skipped: /usr/bin/chromium is missing "
            "(install it with `apt-get install -y chromium`).",
            yellow=True,
        )


@pytest.fixture
def db(transactional_db: None) -> None:
    """Every test that asks for the database gets real commits (see above)."""


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str | None = None, password: str = PASSWORD, **extra: Any) -> User:
        name = username or f"user{next(_names)}"
        extra.setdefault("last_seen_at", timezone.now())
        return User.objects.create_user(username=name, password=password, **extra)

    return make


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def make_post(db: None) -> Callable[..., Post]:
    def make(author: User, content: str = "hello", parent: Post | None = None) -> Post:
        return post_create(author=author, content=content, parent_id=parent.id if parent else None)

    return make


@pytest.fixture
def client_for() -> Iterator[Callable[[User], Client]]:
    """A test client signed in as the given user (CSRF not enforced; CSRF tests build their own)."""
    clients: list[Client] = []

    def make(user: User) -> Client:
        client = Client(enforce_csrf_checks=False)
        client.force_login(user)
        clients.append(client)
        return client

    yield make


def refreshed(user: User) -> User:
    user.refresh_from_db()
    return user


def _reset_task_backends() -> None:
    from asgiref.local import Local
    from django.tasks import task_backends

    task_backends.__dict__.pop("settings", None)
    task_backends._connections = Local(task_backends.thread_critical)


@pytest.fixture
def db_job_backend(settings: Any, db: None) -> Iterator[Callable[[], None]]:
    """The production job backend (django-tasks-db); yields `run_jobs`, which runs the real
    worker until the queue is empty."""
    from django.core.management import call_command

    settings.TASKS = {
        "default": {
            "BACKEND": "django_tasks_db.DatabaseBackend",
            "QUEUES": ["fanout", "default", "maintenance"],
        }
    }
    _reset_task_backends()

    def run_jobs() -> None:
        call_command("worker", batch=True, verbosity=0)

    yield run_jobs
    _reset_task_backends()
