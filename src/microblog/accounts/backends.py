from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet
from django.http import HttpRequest

from microblog.accounts.models import User, username_is_valid
from microblog.accounts.sessions import user_read_with_session
from microblog.core import sqlcache


def _user_by_id(user_id: int) -> QuerySet[User]:
    # With the unread notification count for the top bar (a subquery, not a query of its own).
    from microblog.notifications.selectors import unread_count

    return User._default_manager.filter(pk=user_id).annotate(unread_notifications=unread_count())


class CaseInsensitiveModelBackend(ModelBackend):
    """Django's backend; the user lookup ignores case through `UserManager.get_by_natural_key`.

    An unknown username still runs the password hasher once (ModelBackend does this), so a failed
    log-in takes the same time whether or not the account exists.

    A name that no account can have (usernames are ASCII letters, digits and underscores) is
    refused before the lookup, still with one hasher run: the database's case-insensitive match
    folds some non-ASCII letters ("al\u0131ce", with a dotless i, matches "alice" on PostgreSQL),
    which would let it past the per-username log-in limit, and a NUL byte makes PostgreSQL
    raise. `authenticate()` callers get this too, not only the app's log-in form.

    `get_user` (every signed-in request) is ModelBackend's: the user row the session's query read
    with it (accounts.sessions), or else its own query compiled once (core.sqlcache); either way
    the row is read fresh from the primary on every request.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if username is None:
            username = kwargs.get(User.USERNAME_FIELD)
        if isinstance(username, str) and not username_is_valid(username):
            if password is not None:
                User().set_password(password)  # the same work as an unknown name
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id: Any) -> User | None:
        try:
            key = int(user_id)
        except (TypeError, ValueError):
            return None
        if not 0 < key < 2**63:  # what a bigint primary key can hold
            return None
        # From the primary, like the session: a password change signs the other sessions out
        # on every instance at once, whatever a replica's lag (core.replicas).
        # Read with the session in one query when the session store could (accounts.sessions).
        user = user_read_with_session(key)
        if user is None:
            found = sqlcache.fetch(_user_by_id, key, using=DEFAULT_DB_ALIAS)
            if not found:
                return None
            user = found[0]
        return user if self.user_can_authenticate(user) else None
