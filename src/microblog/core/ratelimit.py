"""The rate limiter: fixed-window counters on a store every app process shares.

A rule is a name and a rate ("300/5m"), set in `settings.RATELIMIT_RULES` (each overridable by an
environment variable, see settings.py). A check counts a subject (an IP address, a user, a
username) against a rule in the current window, whose start is `now // period * period`:

- on the database (the default), with one atomic statement for every rule a request touches:
  `INSERT ... VALUES (...), (...) ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1
  RETURNING key, count` (SQLite 3.35+ and PostgreSQL), so several app processes, threads or
  machines count together without a lock or a read-modify-write race. Expired windows are
  deleted by the `ratelimit_prune` maintenance job;
- on Redis when `REDIS_URL` is set (or `RATELIMIT_STORE=redis`): `INCR` and, on a window's first
  count, `EXPIRE`, in one Lua script (one round trip, atomic). Redis being unreachable lets
  requests through (logged): a limiter must not take the site down with it.

Where the rules apply:

- `RateLimitMiddleware`: every request against "requests" (per IP), and by route (URL pattern
  name): posts and replies ("posts", per user), follow and unfollow ("follows", per user), feed
  pages ("feeds", per user, per IP when signed out);
- views, through `enforce`, `peek` and `hit`: sign-ups (accounts.views.signup), failed log-ins
  (accounts.views.login_view: checked before the password, counted on failure only), and
  reports (`enforce(request, "reports")` in the moderation view).

A refused request raises (or returns) `Throttled`, which the middleware answers with 429,
`Retry-After` and the `X-RateLimit-*` headers, as an HTML page or JSON by `Accept`. Every other
response carries the `X-RateLimit-*` headers of the tightest limit the request touched (the one
with the fewest requests left). `X-RateLimit-Reset` is the Unix time at which that window ends.

`RATELIMIT_ENABLED=0` turns every limit off.
"""

import contextlib
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse

from microblog.core import metrics

logger = logging.getLogger("microblog.ratelimit")

PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# URL pattern name -> (rule, methods, subject kind) applied by the middleware.
ROUTE_RULES: dict[str, tuple[str, frozenset[str], str]] = {
    "post_create": ("posts", frozenset({"POST"}), "user"),
    "follow": ("follows", frozenset({"POST"}), "user"),
    "unfollow": ("follows", frozenset({"POST"}), "user"),
    "home": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "following": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "all": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "profile": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
}

MESSAGES = {
    "login_failures": "Too many failed log-ins. Wait {wait} and try again.",
    "signups": "Too many accounts were created from your network. Wait {wait} and try again.",
    "posts": "You are posting too fast. Wait {wait} and try again.",
    "follows": "You are following and unfollowing too fast. Wait {wait} and try again.",
    "reports": "You have sent many reports. Wait {wait} and try again.",
}
DEFAULT_MESSAGE = "Too many requests. Wait {wait} and try again."


def clock() -> float:
    """Unix time; the tests replace it to stay inside one window."""
    return time.time()


# --- Rules and decisions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    limit: int
    period: int  # seconds


@dataclass(frozen=True, slots=True)
class Decision:
    rule: Rule
    count: int  # counted in this window (this request included, when it was counted)
    reset_at: int  # Unix time at which the window ends
    blocked: bool

    @property
    def remaining(self) -> int:
        return max(0, self.rule.limit - self.count)

    def retry_after(self, now: float | None = None) -> int:
        return max(1, self.reset_at - int(clock() if now is None else now))


class Throttled(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__(f"rate limit {decision.rule.name} exceeded")
        self.decision = decision


def parse_rate(name: str, text: str) -> Rule:
    """Parses "10/1m" into Rule(name, 10, 60). The period is a number with an optional unit
    (s, m, h, d); "300/300" means 300 seconds."""
    try:
        count_text, slash, period_text = text.strip().partition("/")
        if not slash:
            raise ValueError(text)
        period_text = period_text.strip().lower()
        unit = PERIOD_UNITS.get(period_text[-1:], 0)
        amount = period_text[:-1] if unit else period_text
        rule = Rule(name, int(count_text), int(amount or 1) * (unit or 1))
    except ValueError:
        rule = Rule(name, 0, 0)
    if rule.limit < 1 or rule.period < 1:
        raise ValueError(
            f"rate limit {name}={text!r} is not COUNT/PERIOD with a period in s, m, h or d "
            "(e.g. 10/1m)"
        )
    return rule


@lru_cache(maxsize=8)
def _rules(spec: tuple[tuple[str, str], ...]) -> dict[str, Rule]:
    return {name: parse_rate(name, text) for name, text in spec}


def rules() -> dict[str, Rule]:
    return _rules(tuple(settings.RATELIMIT_RULES.items()))


def enabled() -> bool:
    return bool(settings.RATELIMIT_ENABLED)


# --- Subjects ------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy (TRUSTED_PROXIES,
    CIDRs), in which case the right-most address of X-Forwarded-For that is not a trusted proxy
    (the left part of the header is whatever the client sent, so it is never believed)."""
    cached: str | None = getattr(request, "_ratelimit_ip", None)
    if cached is not None:
        return cached
    peer = request.META.get("REMOTE_ADDR", "") or ""
    address = peer
    proxies = settings.TRUSTED_PROXIES
    if proxies:
        networks = _networks(tuple(proxies))
        if _trusted(peer, networks):
            for item in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
                candidate = item.strip()
                try:
                    candidate = str(ipaddress.ip_address(candidate))
                except ValueError:
                    break  # not written by a proxy of ours: keep the last trusted hop's peer
                address = candidate
                if not _trusted(candidate, networks):
                    break
    request._ratelimit_ip = address  # type: ignore[attr-defined]
    return address


def ip_subject(request: HttpRequest) -> str:
    """Returns "ip:<address>"; an IPv6 client is counted by its /64, which one subscriber
    usually has whole (counting single addresses would let it rotate through 2**64 of them)."""
    address = client_ip(request)
    if ":" in address:
        with contextlib.suppress(ValueError):
            address = str(ipaddress.ip_network(f"{address}/64", strict=False))
    return f"ip:{address}"


def user_subject(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return f"u:{user.pk}"


def username_subject(username: str) -> str:
    name = username.strip().lower()
    if len(name) > 64:  # longer than any username: keep the key short
        name = hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
    return f"name:{name}"


def _subject(request: HttpRequest, kind: str) -> str | None:
    if kind == "ip":
        return ip_subject(request)
    if kind == "user":
        return user_subject(request)
    return user_subject(request) or ip_subject(request)  # user_or_ip


# --- Stores --------------------------------------------------------------------------------

# (key, window_start, expires_at), one per rule checked
Slot = tuple[str, int, int]


class Store(Protocol):
    """Counts by key; None when the store cannot be reached (the request goes unchecked)."""

    def hit(self, slots: Sequence[Slot]) -> dict[str, int] | None: ...

    def peek(self, slots: Sequence[Slot]) -> dict[str, int] | None: ...


class DatabaseStore:
    """Counters in core_ratelimitcounter (core.models.RateLimitCounter), on the default
    database, in autocommit: a count stays counted whatever the request does next."""

    table = "core_ratelimitcounter"

    def hit(self, slots: Sequence[Slot]) -> dict[str, int] | None:
        qn = connection.ops.quote_name
        columns = f"{qn('key')}, {qn('window_start')}, {qn('count')}, {qn('expires_at')}"
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            # The same upsert, committed without waiting for the WAL flush (synchronous_commit
            # off for this statement's own transaction only, hence never inside an atomic block,
            # whose other writes must stay durable): a crash may forget the last fraction of a
            # second of counts, which a limiter can afford, and the check costs ~0.1 ms instead
            # of a disk flush (~2 ms here; docs/benchmarks.md).
            values = ", ".join(["(%s::varchar, %s::bigint, %s::bigint)"] * len(slots))
            source = (
                f"SELECT v.k, v.w, 1, v.e FROM (VALUES {values}) AS v (k, w, e) "
                "CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS s"
            )
        else:
            source = "VALUES " + ", ".join(["(%s, %s, 1, %s)"] * len(slots))
        sql = (
            f"INSERT INTO {qn(self.table)} ({columns}) {source} "
            f"ON CONFLICT ({qn('key')}, {qn('window_start')}) "
            f"DO UPDATE SET {qn('count')} = {qn(self.table)}.{qn('count')} + 1 "
            f"RETURNING {qn('key')}, {qn('count')}"
        )
        params = [value for slot in slots for value in slot]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return dict(cursor.fetchall())

    def peek(self, slots: Sequence[Slot]) -> dict[str, int] | None:
        qn = connection.ops.quote_name
        where = " OR ".join([f"({qn('key')} = %s AND {qn('window_start')} = %s)"] * len(slots))
        sql = f"SELECT {qn('key')}, {qn('count')} FROM {qn(self.table)} WHERE {where}"
        params = [value for key, window_start, _ in slots for value in (key, window_start)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return dict(cursor.fetchall())


# Counts every key and sets its expiry on its first count; one round trip, atomic.
_HIT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, ARGV[i]) end
  counts[i] = count
end
return counts
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self.script = self.client.register_script(_HIT_SCRIPT)

    @staticmethod
    def _key(slot: Slot) -> str:
        return f"{settings.RATELIMIT_KEY_PREFIX}{slot[0]}:{slot[1]}"

    def hit(self, slots: Sequence[Slot]) -> dict[str, int] | None:
        now = int(clock())
        keys = [self._key(slot) for slot in slots]
        ttls = [max(1, expires_at - now) + 1 for _, _, expires_at in slots]
        try:
            counts: list[int] = self.script(keys=keys, args=ttls)
        except self.errors:
            logger.warning("rate limit store (Redis) unreachable: request let through")
            return None
        return {slot[0]: int(count) for slot, count in zip(slots, counts, strict=True)}

    def peek(self, slots: Sequence[Slot]) -> dict[str, int] | None:
        try:
            counts: list[Any] = self.client.mget([self._key(slot) for slot in slots])
        except self.errors:
            logger.warning("rate limit store (Redis) unreachable: request let through")
            return None
        return {slot[0]: int(count) for slot, count in zip(slots, counts, strict=True) if count}


@lru_cache(maxsize=4)
def _redis_store(url: str) -> RedisStore:
    return RedisStore(url)


_database_store = DatabaseStore()


def store() -> Store:
    if settings.RATELIMIT_STORE == "redis":
        if not settings.REDIS_URL:
            raise ValueError("RATELIMIT_STORE=redis needs REDIS_URL")
        return _redis_store(settings.REDIS_URL)
    return _database_store


def prune(now: float | None = None) -> int:
    """Deletes the database counters of windows that have ended; returns how many."""
    from microblog.core.models import RateLimitCounter

    cutoff = int(clock() if now is None else now)
    deleted, _ = RateLimitCounter.objects.filter(expires_at__lt=cutoff).delete()
    return deleted


# --- Checks --------------------------------------------------------------------------------


def _slots(checks: Iterable[tuple[str, str]], now: float) -> list[tuple[Rule, Slot]]:
    table = rules()
    out = []
    for rule_name, subject in checks:
        rule = table[rule_name]
        window_start = int(now) // rule.period * rule.period
        out.append((rule, (f"{rule_name}:{subject}", window_start, window_start + rule.period)))
    return out


def _record(request: HttpRequest, decisions: list[Decision]) -> list[Decision]:
    seen: list[Decision] = getattr(request, "_ratelimit_decisions", [])
    seen.extend(decisions)
    request._ratelimit_decisions = seen  # type: ignore[attr-defined]
    for decision in decisions:
        if decision.blocked:
            metrics.RATE_LIMIT_REJECTIONS.labels(limit=decision.rule.name).inc()
    return decisions


def hit(request: HttpRequest, checks: Iterable[tuple[str, str]]) -> list[Decision]:
    """Counts this request against each (rule name, subject), in one statement; a decision is
    blocked when its count went past the rule's limit. Nothing is counted when disabled."""
    return _decide(request, checks, counting=True)


def peek(request: HttpRequest, checks: Iterable[tuple[str, str]]) -> list[Decision]:
    """Reads the counts without counting; a decision is blocked when its limit is already
    reached (for rules counted after the fact, like failed log-ins)."""
    return _decide(request, checks, counting=False)


def _decide(
    request: HttpRequest, checks: Iterable[tuple[str, str]], *, counting: bool
) -> list[Decision]:
    if not enabled():
        return []
    slots = _slots(dict.fromkeys(checks), clock())
    if not slots:
        return []
    keys = [slot for _, slot in slots]
    counts = store().hit(keys) if counting else store().peek(keys)
    if counts is None:
        return []
    decisions = []
    for rule, slot in slots:
        count = counts.get(slot[0], 0)
        # Counting includes this request, so only a count past the limit blocks; a peek blocks
        # once the limit is reached, since the next failure would pass it.
        blocked = count > rule.limit if counting else count >= rule.limit
        decisions.append(Decision(rule, count, slot[2], blocked))
    return _record(request, decisions)


def raise_if_blocked(decisions: Iterable[Decision]) -> None:
    blocked = [decision for decision in decisions if decision.blocked]
    if blocked:
        raise Throttled(max(blocked, key=lambda decision: decision.reset_at))


def enforce(request: HttpRequest, rule_name: str, subject: str | None = None) -> None:
    """Counts the request against one rule (per user by default, per IP when signed out) and
    raises Throttled past the limit; the middleware turns that into a 429. For views:
    `ratelimit.enforce(request, "reports")` before creating a report."""
    subject = subject or user_subject(request) or ip_subject(request)
    raise_if_blocked(hit(request, [(rule_name, subject)]))


def login_checks(request: HttpRequest, username: str) -> list[tuple[str, str]]:
    checks = [("login_failures", ip_subject(request))]
    if username.strip():
        checks.append(("login_failures", username_subject(username)))
    return checks


def login_guard(request: HttpRequest, username: str) -> None:
    """Before a log-in's password is checked: Throttled when the client's address or the
    username has LOGIN_FAILURES failed log-ins in the window."""
    raise_if_blocked(peek(request, login_checks(request, username)))


def login_failed(request: HttpRequest, username: str) -> None:
    """Counts a failed log-in against the client's address and the username."""
    hit(request, login_checks(request, username))


# --- HTTP ----------------------------------------------------------------------------------


def _wait_text(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = (seconds + 59) // 60
    return f"{minutes} minutes"


def set_headers(response: HttpResponse, decision: Decision) -> None:
    response["X-RateLimit-Limit"] = str(decision.rule.limit)
    response["X-RateLimit-Remaining"] = str(decision.remaining)
    response["X-RateLimit-Reset"] = str(decision.reset_at)


def throttled_response(request: HttpRequest, decision: Decision) -> HttpResponse:
    from microblog.core.views import error_response

    retry_after = decision.retry_after()
    message = MESSAGES.get(decision.rule.name, DEFAULT_MESSAGE).format(wait=_wait_text(retry_after))
    response = error_response(request, 429, "Too many requests", message)
    response["Retry-After"] = str(retry_after)
    set_headers(response, decision)
    return response


def tightest(decisions: Sequence[Decision]) -> Decision | None:
    if not decisions:
        return None
    return min(decisions, key=lambda d: (d.remaining, d.rule.limit, -d.reset_at))


class RateLimitMiddleware:
    """Applies "requests" (per IP) to every request and the route rules (ROUTE_RULES) to theirs,
    in one store round trip, before the view; answers Throttled with a 429; puts the
    X-RateLimit-* headers on every response. Placed after AuthenticationMiddleware (the
    per-user rules need request.user)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not enabled() or request.path_info in settings.RATELIMIT_EXEMPT_PATHS:
            return self.get_response(request)
        response = self.get_response(request)
        if not getattr(request, "_ratelimit_checked", False):
            # No view was reached (an unknown path, or a refusal by an earlier process_view):
            # still counted against the client's overall limit.
            request._ratelimit_checked = True  # type: ignore[attr-defined]
            decisions = hit(request, [("requests", ip_subject(request))])
            blocked = [decision for decision in decisions if decision.blocked]
            if blocked:
                return throttled_response(request, blocked[0])
        if "X-RateLimit-Limit" not in response:
            decision = tightest(getattr(request, "_ratelimit_decisions", []))
            if decision is not None:
                set_headers(response, decision)
        return response

    def process_view(
        self,
        request: HttpRequest,
        view: Callable[..., HttpResponse],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if not enabled() or request.path_info in settings.RATELIMIT_EXEMPT_PATHS:
            return None
        request._ratelimit_checked = True  # type: ignore[attr-defined]
        checks = [("requests", ip_subject(request))]
        match = request.resolver_match
        route = ROUTE_RULES.get(match.url_name or "") if match is not None else None
        if route is not None and request.method in route[1]:
            subject = _subject(request, route[2])
            if subject is not None:
                checks.append((route[0], subject))
        try:
            raise_if_blocked(hit(request, checks))
        except Throttled as refusal:
            return throttled_response(request, refusal.decision)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Throttled):
            return throttled_response(request, exception.decision)
        return None
