from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet

from microblog.accounts.models import User
from microblog.core import sqlcache


def _user_by_id(user_id: int) -> QuerySet[User]:
    return User._default_manager.filter(pk=user_id)


class CaseInsensitiveModelBackend(ModelBackend):
    """Django's backend; the user lookup ignores case through `UserManager.get_by_natural_key`.

    An unknown username still runs the password hasher once (ModelBackend does this), so a failed
    log-in takes the same time whether or not the account exists.

    `get_user` (every signed-in request) is ModelBackend's, with its query compiled once
    (core.sqlcache): the same row, read fresh from the database on every request.
    """

    def get_user(self, user_id: Any) -> User | None:
        try:
            key = int(user_id)
        except (TypeError, ValueError):
            return None
        if not 0 < key < 2**63:  # what a bigint primary key can hold
            return None
        # From the primary, like the session: a password change signs the other sessions out
        # on every instance at once, whatever a replica's lag (core.replicas).
        found = sqlcache.fetch("accounts.user_by_id", _user_by_id, key, using=DEFAULT_DB_ALIAS)
        if not found:
            return None
        user = found[0]
        return user if self.user_can_authenticate(user) else None
