"""Page reads from read replicas; writes and fresh reads from the primary.

With `REPLICA_DATABASE_URLS` (or `REPLICA_DATABASE_URL`) set, settings add one database alias
per replica (`replica1`, `replica2`, ...) and install `ReplicaRouter`. Only one kind of read
leaves the primary: the reads of a GET or HEAD request, chosen by `ReplicaReadsMiddleware`.
Everything else stays on the primary, because nothing else sets the request's replica:

- every write, and every read inside a transaction (services read what they are about to
  change, often under a row lock);
- the requests that write (POST and the other unsafe methods), and the GETs of the session that
  wrote within `READ_YOUR_WRITES_SECONDS` (a signed cookie, so any instance honours it);
- sessions and the signed-in user (`PRIMARY_ONLY`, and `sqlcache.fetch(using=...)`): a log-out
  or a password change is refused by every instance at once, lag or not;
- the rate limiter (its own cursor on `default`), jobs and the worker, the streaming process
  (LISTEN, catch-up), management commands: none of them runs under the middleware;
- live-update fetches (`?since=`: a feed's new posts, a thread's new replies), which follow an
  event about a post the replica may not have replayed yet.

A replica is used only while it is healthy: each process probes each replica at most once a
second (`REPLICA_PROBE_SECONDS`) for its replay lag, and one that lags more than
`REPLICA_MAX_LAG_SECONDS` or does not answer gets no reads until a later probe finds it fit. A
replica that fails in the middle of a request (it stopped since the last probe) makes that GET
run again on the primary: the reader sees a page, not an error.
"""

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("microblog.replicas")

# Models read from the primary even on pages: sessions (a log-out acts at once everywhere), the
# job queue and the rate limiter's counters (live state shared by every process).
PRIMARY_ONLY = frozenset(
    {
        "sessions.Session",
        "accounts.UserSession",
        "django_tasks_db.DBTaskResult",
        "core.RateLimitCounter",
        "core.ScheduledJob",
    }
)

PIN_COOKIE = "mb_primary"
PIN_SALT = "microblog.replicas.read-your-writes"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# The replica this request's page reads go to; None: the primary.
_request_replica: ContextVar[str | None] = ContextVar("request_replica", default=None)

# Replay caught up with what was received: no lag. (Not `=`: after a restart a standby replays
# its own WAL past the position streaming restarts from, and an idle one would then report the
# age of its last replayed commit as lag.)
REPLICA_LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE
         WHEN NOT pg_is_in_recovery() THEN 0
         WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
         ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
       END
"""


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith("replica")]


class ReplicaRouter:
    def db_for_read(self, model: type[Model] | None, **hints: Any) -> str | None:
        replica = _request_replica.get()
        if replica is None:
            return None  # the primary (DEFAULT_DB_ALIAS)
        if model is not None and model._meta.label in PRIMARY_ONLY:
            return DEFAULT_DB_ALIAS
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS
        return replica

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return True  # the replicas are copies of the primary

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


# --- health of the replicas, per process -------------------------------------------------------


class _Health:
    __slots__ = ("checked_at", "healthy", "lag")

    def __init__(self) -> None:
        self.checked_at = float("-inf")
        self.healthy = False
        self.lag: float | None = None


_health: dict[str, _Health] = {}
_probe_lock = threading.Lock()


def probe(alias: str) -> bool:
    """Asks the replica for its replay lag (on this thread's connection to it); True when it
    answers and lags no more than REPLICA_MAX_LAG_SECONDS."""
    state = _health.setdefault(alias, _Health())
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(REPLICA_LAG_SQL)
            row = cursor.fetchone()
        assert row is not None
        state.lag = float(row[1])
        healthy = state.lag <= settings.REPLICA_MAX_LAG_SECONDS
        if not healthy and state.healthy:
            logger.warning("replica %s lags %.1fs: reads go to the primary", alias, state.lag)
    except Exception as error:
        if state.healthy or state.checked_at == float("-inf"):
            logger.warning("replica %s unreachable (%s): reads go to the primary", alias, error)
        connections[alias].close()
        state.lag = None
        healthy = False
    if healthy and not state.healthy and state.checked_at != float("-inf"):
        logger.info("replica %s is back: it takes reads again", alias)
    state.healthy = healthy
    state.checked_at = time.monotonic()
    return healthy


def healthy_replica() -> str | None:
    """A replica fit to read from, or None. Probes a replica whose last probe is older than
    REPLICA_PROBE_SECONDS; one thread probes while the others go on with the last answer."""
    fit = []
    now = time.monotonic()
    for alias in replica_aliases():
        state = _health.get(alias)
        if state is None or now - state.checked_at >= settings.REPLICA_PROBE_SECONDS:
            if _probe_lock.acquire(blocking=False):
                try:
                    probe(alias)
                finally:
                    _probe_lock.release()
            state = _health.get(alias)
        if state is not None and state.healthy:
            fit.append(alias)
    return random.choice(fit) if fit else None


def forget_health() -> None:
    _health.clear()


# --- per request ------------------------------------------------------------------------------


def pinned_to_primary(request: HttpRequest) -> bool:
    """The session wrote within READ_YOUR_WRITES_SECONDS (its signed cookie is younger)."""
    value = request.get_signed_cookie(
        PIN_COOKIE,
        default=None,
        salt=PIN_SALT,
        max_age=timedelta(seconds=settings.READ_YOUR_WRITES_SECONDS),
    )
    return value is not None


class ReplicaReadsMiddleware:
    """Chooses, per request, where its page reads go (see the module's doc), and marks a
    session that wrote so that its next pages, on any instance, read from the primary."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        replica = None
        if (
            request.method in ("GET", "HEAD")
            and "since" not in request.GET
            and not pinned_to_primary(request)
        ):
            replica = healthy_replica()
        if replica is None:
            response = self.get_response(request)
        else:
            token = _request_replica.set(replica)
            try:
                response = self.get_response(request)
            finally:
                _request_replica.reset(token)
            if response.status_code >= 500 and not probe(replica):
                # The replica went away during the request: the same GET, on the primary.
                logger.warning(
                    "replica %s failed during %s; served from the primary", replica, request.path
                )
                response = self.get_response(request)
        if request.method not in SAFE_METHODS and settings.READ_YOUR_WRITES_SECONDS > 0:
            response.set_signed_cookie(
                PIN_COOKIE,
                "1",
                salt=PIN_SALT,
                max_age=math.ceil(settings.READ_YOUR_WRITES_SECONDS),
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
