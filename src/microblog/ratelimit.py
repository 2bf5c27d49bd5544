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
  and tag pages ("feeds", per user, per IP when signed out), searches ("searches", likewise);
- views, through `enforce`, `reserve`, `refund` and `hit`: sign-ups (accounts.views.signup:
  reserved before the account is created, refunded when it is not, so only created accounts
  count), failed log-ins and password re-checks (`login_reserve`, `recheck_reserve`: the attempt
  is counted as a failure before the password is hashed, atomically, and refunded when the
  password was right or was never checked, so concurrent guesses cannot pass the limit), and
  reports (`enforce(request, "reports")` in the moderation view).

A refused request raises (or returns) `Throttled`, which the middleware answers with 429,
`Retry-After` and the `X-RateLimit-*` headers, as an HTML page or JSON by `Accept`; a view that
takes a form declares with `@refusal_page(render)` how its refusal looks (the form again, with
what the user typed and when to retry), and views that check limits themselves do the same with
`throttled_form`. Every other response carries the `X-RateLimit-*` headers of the tightest limit
the request touched (the one with the fewest requests left). `X-RateLimit-Reset` is the Unix time
at which that window ends.

The per-username log-in limit would let anyone lock a named account out with a few wrong
passwords. A browser that logged in to that account before (a signed device cookie,
`DEVICE_COOKIE`) is let past it, with a failure limit of its own (the per-address limit still
applies). A client at an address without failures is not: that would give an attacker with many
addresses one guess per address and window against any account (docs/operations.md, "Rate
limits").

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
from django.core import signing
from django.db import connection
from django.http import HttpRequest, HttpResponse

from microblog.ops import metrics

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
    "tag": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "search": ("searches", frozenset({"GET", "HEAD"}), "user_or_ip"),
    # The client API (microblog.api): the same limits, counted for the token's user, so posting
    # from an app and from the page share one budget.
    "api_statuses": ("posts", frozenset({"POST"}), "user"),
    "api_account_follow": ("follows", frozenset({"POST"}), "user"),
    "api_account_unfollow": ("follows", frozenset({"POST"}), "user"),
    "api_timeline_home": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "api_timeline_public": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "api_account_statuses": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "api_timeline_tag": ("feeds", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "api_search": ("searches", frozenset({"GET", "HEAD"}), "user_or_ip"),
    "api_accounts_search": ("searches", frozenset({"GET", "HEAD"}), "user_or_ip"),
}

MESSAGES = {
    "login_failures": "Too many failed log-ins. Wait {wait} and try again.",
    "signups": "Too many accounts were created from your network. Wait {wait} and try again.",
    "posts": "You are posting too fast. Wait {wait} and try again.",
    "follows": "You are following and unfollowing too fast. Wait {wait} and try again.",
    "reports": "You have sent many reports. Wait {wait} and try again.",
    "searches": "You are searching too fast. Wait {wait} and try again.",
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
    key: str = ""  # the counter's key in the store ("rule:subject")

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


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack socket or proxy
    reports for an IPv4 client) unmapped to IPv4; None when `text` is not an address."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id is not None:  # "fe80::1%eth0": one address whatever the zone
            return ipaddress.IPv6Address(str(ip).partition("%")[0])
    return ip


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    ip = _address(address)
    return ip is not None and any(ip in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy (TRUSTED_PROXIES,
    CIDRs), in which case the right-most address of X-Forwarded-For that is not a trusted proxy
    (the left part of the header is whatever the client sent, so it is never believed)."""
    cached: str | None = getattr(request, "_ratelimit_ip", None)
    if cached is not None:
        return cached
    peer = request.META.get("REMOTE_ADDR", "") or ""
    unmapped = _address(peer)
    address = str(unmapped) if unmapped is not None else peer
    proxies = settings.TRUSTED_PROXIES
    if proxies:
        networks = _networks(tuple(proxies))
        if _trusted(peer, networks):
            for item in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
                parsed = _address(item)
                if parsed is None:
                    break  # not written by a proxy of ours: keep the last trusted hop's peer
                candidate = str(parsed)
                address = candidate
                if not _trusted(candidate, networks):
                    break
    request._ratelimit_ip = address  # type: ignore[attr-defined]
    return address


def ip_subject(request: HttpRequest) -> str:
    """Returns "ip:<address>"; an IPv6 client is counted by its /64, which one subscriber
    usually has whole (counting single addresses would let it rotate through 2**64 of them).
    IPv4-mapped addresses were unmapped by client_ip: each IPv4 client counts on its own."""
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
    """The key of a username, for a name the log-in form has validated: usernames are ASCII
    (accounts.models.username_validator), for which lower() here and the lookup's
    case-insensitive match (UPPER() on PostgreSQL) agree on which names are the same."""
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

    def refund(self, slots: Sequence[Slot]) -> None: ...


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

    def refund(self, slots: Sequence[Slot]) -> None:
        qn = connection.ops.quote_name
        where = " OR ".join([f"({qn('key')} = %s AND {qn('window_start')} = %s)"] * len(slots))
        sql = (
            f"UPDATE {qn(self.table)} SET {qn('count')} = {qn('count')} - 1 "
            f"WHERE ({where}) AND {qn('count')} > 0"
        )
        params = [value for key, window_start, _ in slots for value in (key, window_start)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


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

# Takes one count back from every key that has one.
_REFUND_SCRIPT = """
for _, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count > 0 then redis.call('DECR', key) end
end
return 0
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self.script = self.client.register_script(_HIT_SCRIPT)
        self.refund_script = self.client.register_script(_REFUND_SCRIPT)

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

    def refund(self, slots: Sequence[Slot]) -> None:
        try:
            self.refund_script(keys=[self._key(slot) for slot in slots])
        except self.errors:
            logger.warning("rate limit store (Redis) unreachable: refund dropped")


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
        decisions.append(Decision(rule, count, slot[2], blocked, slot[0]))
    return _record(request, decisions)


def refund(decisions: Iterable[Decision]) -> None:
    """Takes back the counts of a `hit` whose request turned out not to be what the rule counts
    (a sign-up that created no account, a log-in whose password was right or never checked),
    in the window they were counted in."""
    slots = [
        (d.key, d.reset_at - d.rule.period, d.reset_at) for d in decisions if d.key and d.count
    ]
    if slots:
        store().refund(slots)


def reserve(request: HttpRequest, checks: Iterable[tuple[str, str]]) -> list[Decision]:
    """Counts the request before the work the rule limits (one atomic statement, so concurrent
    requests cannot all pass a check made before any of them was counted); refunded and raised
    as Throttled when a limit is past. The caller refunds the returned decisions when the work
    turns out not to count."""
    decisions = hit(request, checks)
    if any(decision.blocked for decision in decisions):
        refund(decisions)
        raise_if_blocked(decisions)
    return decisions


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


# --- Log-ins and password re-checks ----------------------------------------------------------

DEVICE_COOKIE = "mb_device"
_DEVICE_SALT = "microblog.ratelimit.device"


def login_checks(request: HttpRequest, username: str) -> list[tuple[str, str]]:
    return [("login_failures", ip_subject(request)), ("login_failures", username_subject(username))]


def login_reserve(request: HttpRequest, username: str) -> list[Decision]:
    """Before a log-in's password is checked (`username` validated by the form): counts the
    attempt as a failure against the client's address and the username (and the browser, when it
    logged in to that account before), in one atomic statement, and raises Throttled (counting
    nothing) when the address has LOGIN_FAILURES failures in the window, or the username has and
    the browser is not one that logged in to it before (with fewer failures of its own).
    Refund the decisions when the password was right."""
    checks = login_checks(request, username)
    device = _device_subject(request, username)
    if device is not None:
        checks.append(("login_failures", device))
    decisions = hit(request, checks)
    if len(decisions) >= 2:
        by_address, by_name, *by_device = decisions
        known_browser = bool(by_device) and not by_device[0].blocked
        if by_address.blocked or (by_name.blocked and not known_browser):
            refund(decisions)
            raise_if_blocked([d for d in (by_address, by_name) if d.blocked])
    return decisions


def recheck_reserve(request: HttpRequest, user: Any) -> list[Decision]:
    """Before a signed-in user's current password is checked again (password change, account
    deletion): the failed-log-in treatment, per address and per account. Refund on success."""
    checks = [("login_failures", ip_subject(request)), ("login_failures", f"u:{user.pk}")]
    return reserve(request, checks)


def _device_subject(request: HttpRequest, username: str) -> str | None:
    """ "device:<digest>" when this browser logged in to `username` before (its signed device
    cookie names it), else None."""
    value = request.COOKIES.get(DEVICE_COOKIE)
    if not value:
        return None
    try:
        known = signing.loads(value, salt=_DEVICE_SALT, max_age=settings.LOGIN_DEVICE_COOKIE_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(known, list) or username.strip().lower() not in known:
        return None
    return "device:" + hashlib.sha256(value.encode()).hexdigest()[:32]


def remember_device(request: HttpRequest, response: HttpResponse, username: str) -> None:
    """After a successful log-in: the browser keeps a signed list of the (at most 5) accounts
    it logged in to, which lets it past that username's lock."""
    value = request.COOKIES.get(DEVICE_COOKIE)
    known: list[str] = []
    if value:
        with contextlib.suppress(signing.BadSignature):
            loaded = signing.loads(
                value, salt=_DEVICE_SALT, max_age=settings.LOGIN_DEVICE_COOKIE_AGE
            )
            if isinstance(loaded, list):
                known = [name for name in loaded if isinstance(name, str)]
    name = username.strip().lower()
    known = [name, *[other for other in known if other != name]][:5]
    response.set_cookie(
        DEVICE_COOKIE,
        signing.dumps(known, salt=_DEVICE_SALT),
        max_age=settings.LOGIN_DEVICE_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


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


def message(decision: Decision, template: str | None = None) -> str:
    """What to tell the user: which limit (or `template`, with {wait}), and how long to wait."""
    wait = _wait_text(decision.retry_after())
    return (template or MESSAGES.get(decision.rule.name, DEFAULT_MESSAGE)).format(wait=wait)


def throttled_form(response: HttpResponse, decision: Decision) -> HttpResponse:
    """A form page shown again because of a limit (with what the user typed and `message`):
    429 with Retry-After and the X-RateLimit-* headers."""
    response.status_code = 429
    response["Retry-After"] = str(decision.retry_after())
    set_headers(response, decision)
    return response


# A view's own refusal page: render(request, message) -> the form again, with what was typed.
RefusalPage = Callable[[HttpRequest, str], HttpResponse]


def refusal_page(render: RefusalPage) -> Callable[[Callable[..., HttpResponse]], Any]:
    """Marks a view whose route limits the middleware checks: a refused request gets `render`'s
    page (the form, with the text kept and when to retry) instead of the bare 429 page. Put it
    outermost, above login_required and friends."""

    def mark(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        view.ratelimit_refusal_page = render  # type: ignore[attr-defined]
        return view

    return mark


def throttled_response(
    request: HttpRequest, decision: Decision, page: RefusalPage | None = None
) -> HttpResponse:
    from microblog.core.views import error_response, wants_json

    if page is not None and not wants_json(request):
        return throttled_form(page(request, message(decision)), decision)
    response = error_response(request, 429, "Too many requests", message(decision))
    response["Retry-After"] = str(decision.retry_after())
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
            page = getattr(view, "ratelimit_refusal_page", None)
            return throttled_response(request, refusal.decision, page)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Throttled):
            return throttled_response(request, exception.decision)
        return None
