"""Sessions and the signed-in user: one query per request.

With Django's database sessions a signed-in request reads its session row, then the auth backend
reads the user row: two round trips and two model builds, about half of the signed-in floor
(docs/benchmarks.md, issue 15). Here the session row also carries the user's id
(`accounts.models.UserSession.user`, written from the session's own `_auth_user_id` whenever the
row is saved), so one query reads the live session joined with its user and the top bar's unread
count, compiled once per process (core.sqlcache).

Everything else is Django's, unchanged: `django.contrib.auth.get_user` still checks the session's
user id, backend, the user's `is_active` and the session's password hash against that fresh user
row; logging out deletes the row; expiry is the query's `expire_date > now`; the query goes to
the primary. So a log-out, a password change or an expiry acts at once on every process and
instance, as before. The joined row is handed to the backend's `get_user` only inside
`signed_in_user` (a context variable, reset on return), and only when its id is the session's.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from django.contrib import auth
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import SuspiciousOperation
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from microblog.accounts.models import User, UserSession
from microblog.core import sqlcache

# The user row read with the session, for the backend's get_user (accounts.backends) while
# signed_in_user runs.
_read_with_session: ContextVar[User | None] = ContextVar("read_with_session", default=None)


def _live_session(session_key: str, now: datetime) -> QuerySet[UserSession]:
    # With the unread notification count for the top bar (a subquery on the joined user row).
    from microblog.notifications.selectors import unread_count

    return (
        UserSession.objects.filter(session_key=session_key, expire_date__gt=now)
        .select_related("user")
        .annotate(unread_notifications=unread_count())
    )


def session_user_id(data: dict[str, Any]) -> int | None:
    """The signed-in user's id in a session's data, as the `user_id` column stores it."""
    try:
        user_id = int(data.get(SESSION_KEY))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return user_id if 0 < user_id < 2**63 else None


class SessionStore(DatabaseSessionStore):
    _user_row: User | None = None

    @classmethod
    def get_model_class(cls) -> type[UserSession]:
        return UserSession

    def _validate_session_key(self, key: Any) -> bool:
        # Keys are made of get_random_string()'s letters and digits; a cookie with anything else
        # (a NUL byte makes PostgreSQL raise) is no session, checked before any query.
        return isinstance(key, str) and 8 <= len(key) <= 40 and key.isascii() and key.isalnum()

    def create_model_instance(self, data: dict[str, Any]) -> UserSession:
        row = super().create_model_instance(data)
        assert isinstance(row, UserSession)
        row.user_id = session_user_id(data)
        return row

    def save(self, must_create: bool = False) -> None:
        """Django's, without the transaction it opens around the UPDATE of an existing session
        when none is open: one statement needs none (autocommit), and BEGIN and COMMIT were two
        more round trips for every request that changes its session, e.g. the flash message of
        each post, like or follow (issue 15). Creating a session, or saving inside a transaction
        (a savepoint then keeps a failure from breaking it), stays Django's."""
        using = router.db_for_write(self.model)
        if must_create or self.session_key is None or connections[using].in_atomic_block:
            return super().save(must_create)
        row = self.create_model_instance(self._get_session())  # type: ignore[attr-defined]
        try:
            # force_update: a row deleted meanwhile (logged out elsewhere) updates nothing,
            # which Django turns into UpdateError, as its own save does.
            row.save(force_update=True, using=using)
        except DatabaseError as error:
            raise UpdateError from error

    def _get_session_from_db(self) -> Any:
        self._user_row = None
        try:
            found = sqlcache.fetch(
                _live_session, str(self.session_key), timezone.now(), using=DEFAULT_DB_ALIAS
            )
        except SuspiciousOperation as error:
            logger = logging.getLogger(f"django.security.{error.__class__.__name__}")
            logger.warning(str(error))
            found = []
        if not found:
            self._session_key = None
            return None
        row = found[0]
        user = row.user
        if user is not None:
            user.unread_notifications = row.unread_notifications  # type: ignore[attr-defined]
        self._user_row = user
        return row

    def user_read_with_session(self) -> User | None:
        """Loads the session (if not yet loaded) and returns the user row its query joined."""
        self._get_session()  # type: ignore[attr-defined]
        return self._user_row


@contextmanager
def _handing_over(user: User | None) -> Iterator[None]:
    token = _read_with_session.set(user)
    try:
        yield
    finally:
        _read_with_session.reset(token)


def user_read_with_session(user_id: int) -> User | None:
    """For the backend's get_user: the row the session query joined, if it is this user's."""
    user = _read_with_session.get()
    return user if user is not None and user.pk == user_id else None


def signed_in_user(session: SessionBase, request: Any = None) -> User | AnonymousUser:
    """`django.contrib.auth.get_user` for this session, with the user row its own query read."""
    joined = session.user_read_with_session() if isinstance(session, SessionStore) else None
    with _handing_over(joined):
        holder = request if request is not None else SimpleNamespace(session=session)
        return auth.get_user(holder)  # type: ignore[arg-type]


def _request_user(request: HttpRequest) -> User | AnonymousUser:
    if not hasattr(request, "_cached_user"):
        request._cached_user = signed_in_user(request.session, request)  # type: ignore[attr-defined]
    return request._cached_user  # type: ignore[attr-defined]


class SessionUserMiddleware(AuthenticationMiddleware):
    """Django's AuthenticationMiddleware, with `request.user` read through signed_in_user."""

    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: _request_user(request))  # type: ignore[assignment]
