"""The session store: Django's database sessions, with the lookup compiled to SQL once.

Same table, same rows, same behaviour as `django.contrib.sessions.backends.db` (logging out,
rotating the key and changing the password act on the database at once, for every process);
only the read of the session row skips building and compiling the query on every request
(core.sqlcache), which was a measurable part of every signed-in page.
"""

import logging
from datetime import datetime
from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.core.exceptions import SuspiciousOperation
from django.db.models import QuerySet
from django.utils import timezone

from microblog.core import sqlcache


def _live_session(session_key: str, now: datetime) -> QuerySet[Session]:
    return Session.objects.filter(session_key=session_key, expire_date__gt=now)


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key: Any) -> bool:
        # Keys are made of get_random_string()'s letters and digits; a cookie with anything else
        # (a NUL byte makes PostgreSQL raise) is no session, checked before any query.
        return isinstance(key, str) and 8 <= len(key) <= 40 and key.isascii() and key.isalnum()

    def _get_session_from_db(self) -> Any:
        try:
            found = sqlcache.fetch(_live_session, str(self.session_key), timezone.now())
        except SuspiciousOperation as error:
            logger = logging.getLogger(f"django.security.{error.__class__.__name__}")
            logger.warning(str(error))
            found = []
        if not found:
            self._session_key = None
            return None
        return found[0]
