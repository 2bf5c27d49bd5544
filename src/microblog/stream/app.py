"""The streaming app: Server-Sent Events at `/events/`, a plain ASGI callable (no framework).

It delivers, it does not compute (docs/architecture.md, "Real-time"):

- One source of events per process: a `LISTEN microblog_posts` connection on PostgreSQL, a poll
  of new rows (`id > last seen`, every STREAM_POLL_SECONDS) on SQLite. Each event is offered to
  every open connection's `Subscription`, which decides from the event alone (author, parent)
  and the reader's filters (whom they hear, whom they block), loaded per connection with the
  page selectors.
- Filters are reloaded before the next event is judged whenever they may have changed: on the
  reader's follow, unfollow, block or mute (PostgreSQL: its notification), on every batch of
  new posts (SQLite, which has no notifications), after the LISTEN connection was lost. Events
  offered meanwhile wait in the connection's queue and are judged after the reload.
- Signed-in readers only, by the pages' session cookie, checked as the pages check it when the
  stream opens and again every STREAM_HEARTBEAT_SECONDS: a stream whose session was logged out
  or ended by a password change says `event: end` and closes. A thread stream opens only for a
  post whose page the reader may open (404 otherwise), and is re-checked with the session.
- `?feed=for_you|following` or `?thread=<post id>`; `?since=<post id>` or the `Last-Event-ID`
  header (the newest post id delivered) starts with a catch-up from the database (the page
  selectors' own queries), so a reconnecting browser loses nothing; live events already sent by
  the catch-up are skipped.
- Opening attempts count against the "requests" rate limit (per client address, as every page
  request does); at most STREAM_MAX_CONNECTIONS_PER_USER open streams per user and process (429
  beyond). Every answer carries the security headers of the pages (Django's own middleware).
- Reply counts: after a reply, a `count` event (`{"id": <post id>, "replies": n}`, no event id)
  goes to the streams whose pages may show the replied-to post, so its "N replies" stays current.
  The counts are read once per batch of replies by the process, never per reader.
- Unread notifications: after a user's notifications change (`{"unread_of"}` by NOTIFY; on
  SQLite every poll, for the users with open streams), an `unread` event
  (`{"unread": n}`) goes to that user's open streams, for the top bar's count; read once per
  batch of users by the process, sent only when it changed.

The client API's Mastodon streams (`/api/v1/streaming`, token-authenticated) are answered by
stream/api.py on the same hub, filters and limits.

Database work runs in a small thread pool (Django's ORM is synchronous).
"""

import asyncio
import enum
import io
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, close_old_connections, connection
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from microblog import ratelimit
from microblog.core.ids import id_to_ms, parse_id
from microblog.ops.metrics import STREAM_CONNECTIONS, STREAM_DELIVERY_LATENCY
from microblog.stream.events import (
    CHANNEL,
    CountEvent,
    DeletedEvent,
    FiltersChangedEvent,
    PostEvent,
    RepliesChangedEvent,
    UnreadChangedEvent,
    UnreadCountEvent,
    parse,
)
from microblog.timelines import visibility

if TYPE_CHECKING:
    from microblog.accounts.models import User

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

FEEDS = ("for_you", "following")
# Addresses this app answers besides /up: the pages' stream, and the client API's streams
# (stream/api.py). microblog serve's one-port app (combined.py) and the load balancer
# (deploy/haproxy.cfg) send these prefixes here.
EVENTS_PREFIX = "/events"
API_STREAMING_PREFIX = "/api/v1/streaming"
STREAM_PATH_PREFIXES = (EVENTS_PREFIX, API_STREAMING_PREFIX)


def is_stream_path(path: str) -> bool:
    return path.startswith(STREAM_PATH_PREFIXES)


QUEUE_SIZE = 1000
RECENT_IDS = 2000
# How long a new stream waits for the process's event source to be listening (first start).
READY_TIMEOUT_SECONDS = 10.0


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


# --- Per-reader filtering ------------------------------------------------------------------


@dataclass
class Subscription:
    """What one open stream wants. `wants` is the per-reader filter, from the event alone."""

    # None: a visitor (the client API's public stream without a token).
    reader: "User | None"
    # "for_you", "following", "thread"; the client API's "public" (All), and "notifications"
    # (Mastodon's user:notification: no posts, notifications only).
    feed: str
    thread_id: int | None = None
    # Feeds: the accounts whose posts reach the reader's feeds (visibility.heard_ids: followed,
    # less muted and blocked). Threads: the accounts the reader blocks, whose posts the page
    # leaves out (visibility.on_pages).
    heard: frozenset[int] = frozenset()
    blocked: frozenset[int] = frozenset()
    # All (client API): the accounts the reader blocks or mutes (visibility.in_feeds).
    excluded: frozenset[int] = frozenset()
    # A client API stream (stream/api.py): it is told of deleted posts too.
    client_api: bool = False

    @property
    def reader_id(self) -> int:
        return 0 if self.reader is None else int(self.reader.pk)

    def wants(self, event: "PostEvent | DeletedEvent | CountEvent | UnreadCountEvent") -> bool:
        """Whether the reader's page shows this post: the page's own rule (timelines.visibility)
        for one post at a time. A new post is never hidden yet. An unread count is the reader's
        own only."""
        if isinstance(event, UnreadCountEvent):
            return event.user == self.reader_id
        if isinstance(event, CountEvent):
            return self.wants_count(event)
        # A new post is never hidden yet; a deleted one is judged as it was when new.
        return self.shows(event.author, event.parent, hidden=False)

    def shows(self, author: int | None, parent: int | None, *, hidden: bool) -> bool:
        if self.feed == "notifications":
            return False
        if self.feed == "public":
            reader_id = None if self.reader is None else self.reader_id
            return visibility.everyone_shows(
                reader_id, self.excluded, author=author, parent=parent, hidden=hidden
            )
        if self.feed == "thread":
            assert self.reader is not None
            # Direct replies to the open post (deeper replies show when the page is reloaded).
            return (
                parent is not None
                and parent == self.thread_id
                and visibility.on_pages_shows(
                    self.reader_id,
                    self.blocked,
                    staff=self.reader.is_staff,
                    author=author,
                    hidden=hidden,
                )
            )
        if self.feed == "following":
            return visibility.following_shows(self.heard, author=author, hidden=hidden)
        # For You: celebrities included (their posts are merged at read time).
        return visibility.for_you_shows(
            self.reader_id, self.heard, author=author, parent=parent, hidden=hidden
        )

    def wants_count(self, event: CountEvent) -> bool:
        """Whether the reader's page shows the post whose reply count changed: on a thread page
        the open post (the stream is open only while the reader may open it) and its direct
        replies; on a feed, the posts it shows."""
        if self.feed == "thread" and event.post == self.thread_id:
            assert self.reader is not None
            return visibility.may_open(
                self.reader_id, staff=self.reader.is_staff, author=event.author, hidden=event.hidden
            )
        return self.shows(event.author, event.parent, hidden=event.hidden)


# --- Database work (in threads) -------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None


async def run_db[T](function: Callable[..., T], *args: Any) -> T:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=int(_setting("STREAM_DB_THREADS", 4)), thread_name_prefix="stream-db"
        )

    def call() -> T:
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    return await asyncio.get_running_loop().run_in_executor(_pool, call)


def session_user(session_key: str | None) -> "User | None":
    """The signed-in user of a session, checked as the pages check it (auth hash, active), with
    the pages' one query (accounts.sessions)."""
    from microblog.accounts.sessions import signed_in_user

    if not session_key:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    user = signed_in_user(engine.SessionStore(session_key))
    return user if user.is_authenticated else None


def may_open_thread(post_id: int, reader: "User") -> bool:
    """Whether the reader may open the post's page: the thread view's own check
    (posts.views.detail), so a stream never tells about a post its page would answer 404 for."""
    from microblog.posts.selectors import post_for_display

    post = post_for_display(post_id, reader)
    return post is not None and visibility.can_see(reader, post)


@dataclass(frozen=True, slots=True)
class Admission:
    status: int  # 200: the stream may open
    reader: "User | None" = None
    decisions: tuple[ratelimit.Decision, ...] = ()


def admit(request: HttpRequest, thread_id: int | None) -> Admission:
    """Counts the attempt against the rate limit, then checks the session and, for a thread,
    that the reader may open the post. One call, in a thread."""
    decisions = tuple(ratelimit.hit(request, [("requests", ratelimit.ip_subject(request))]))
    if any(decision.blocked for decision in decisions):
        return Admission(429, None, decisions)
    reader = session_user(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    if reader is None:
        return Admission(401, None, decisions)
    if thread_id is not None and not may_open_thread(thread_id, reader):
        return Admission(404, None, decisions)
    return Admission(200, reader, decisions)


def still_admitted(session_key: str, subscription: Subscription) -> bool:
    """Every heartbeat: the session still signs in the same reader (not logged out, not ended by
    a password change, not expired), and a thread's post may still be opened by them."""
    reader = session_user(session_key)
    if reader is None or reader.pk != subscription.reader_id:
        return False
    subscription.reader = reader  # staff status and the like, as of now
    return subscription.thread_id is None or may_open_thread(subscription.thread_id, reader)


def load_filters(subscription: Subscription) -> None:
    """Loads the reader's filters from the page selectors (at start, and again whenever they may
    have changed: see Listener.reload_filters)."""
    if subscription.feed == "thread":
        subscription.blocked = frozenset(visibility.blocked_ids(subscription.reader_id))
    elif subscription.feed == "public":
        if subscription.reader is not None:
            excluded = visibility.excluded_from_feeds(subscription.reader_id)
            subscription.excluded = frozenset(excluded)
    elif subscription.feed != "notifications":
        assert subscription.reader is not None
        subscription.heard = frozenset(visibility.heard_ids(subscription.reader))


def catch_up(subscription: Subscription, after: int, limit: int) -> list[PostEvent]:
    """The page's posts newer than `after` (at most the newest `limit`), oldest first: the
    selectors the pages read for `?since=` (feeds) and for their first level of replies
    (threads), so the catch-up and the page cannot disagree."""
    from microblog.posts.models import Post
    from microblog.posts.selectors import replies_since
    from microblog.timelines.selectors import following_since, for_you_since

    reader = subscription.reader
    assert reader is not None  # the pages' streams are for signed-in readers
    posts: Sequence[Post]
    if subscription.feed == "thread":
        assert subscription.thread_id is not None
        posts = replies_since(subscription.thread_id, reader, after, limit)
    elif subscription.feed == "following":
        posts = following_since(reader, after, limit).items
    else:
        posts = for_you_since(reader, after, limit).items
    return [PostEvent(id=p.id, author=p.author_id, parent=p.parent_id) for p in reversed(posts)]


def reply_counts(post_ids: list[int]) -> list[CountEvent]:
    """The current reply counts of these posts (deleted ones are left out)."""
    from microblog.posts.models import Post

    rows = Post.objects.filter(id__in=post_ids).values_list(
        "id", "replies_count", "author_id", "parent_id", "is_hidden"
    )
    return [CountEvent(post=i, replies=n, author=a, parent=p, hidden=h) for i, n, a, p, h in rows]


def unread_counts(user_ids: list[int]) -> list[UnreadCountEvent]:
    """The unread notification counts of these users, as the top bar shows them."""
    from microblog.accounts.models import User
    from microblog.notifications.selectors import unread_count

    rows = (
        User.objects.filter(id__in=user_ids)
        .annotate(unread=unread_count())
        .values_list("id", "unread")
    )
    return [UnreadCountEvent(user=user_id, unread=unread) for user_id, unread in rows]


def posts_after(after: int | None, limit: int = 1000) -> tuple[list[PostEvent], int]:
    """New posts for the poll (and to fill a gap after the LISTEN connection was lost); with
    `after` None, none, and the newest id to start from."""
    from django.db.models import Max

    from microblog.posts.models import Post

    if after is None:
        newest = Post.objects.aggregate(newest=Max("id"))["newest"]
        return [], int(newest or 0)
    rows = list(
        Post.objects.filter(id__gt=after)
        .order_by("id")
        .values_list("id", "author_id", "parent_id")[:limit]
    )
    events = [PostEvent(id=i, author=a, parent=p) for i, a, p in rows]
    return events, (events[-1].id if events else after)


# --- The hub: one event source per process, fanned out to the open streams ------------------


class Control(enum.Enum):
    RELOAD = "reload"  # reload the filters before judging what follows in the queue
    END = "end"  # the stream ends (its reader fell too far behind, or the process stops)


Item = PostEvent | DeletedEvent | CountEvent | UnreadCountEvent | Control


@dataclass(eq=False)
class Listener:
    """One open stream in the hub: its subscription and the queue its connection reads."""

    subscription: Subscription
    queue: asyncio.Queue[Item] = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE))
    closed: bool = False
    # The filters are stale from the moment a reload is asked for until it is done: events
    # offered meanwhile are queued unfiltered, behind the RELOAD marker, and judged after it.
    reload_queued: bool = False
    reloading: bool = False

    def __post_init__(self) -> None:
        self.reload_filters()  # a new stream loads its filters first

    @property
    def stale(self) -> bool:
        return self.reload_queued or self.reloading

    def offer(self, event: PostEvent | DeletedEvent | CountEvent | UnreadCountEvent) -> None:
        if self.closed or (not self.stale and not self.subscription.wants(event)):
            return
        self._put(event)

    def reload_filters(self) -> None:
        """Asks the stream to reload its reader's filters before it judges the next event."""
        if not self.closed and not self.reload_queued:
            self.reload_queued = True
            self._put(Control.RELOAD)

    def _put(self, item: Item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A reader this far behind is disconnected; its browser reconnects and catches up.
            self.close()

    def close(self) -> None:
        """Ends the stream (its loop reads END)."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(Control.END)


class Hub:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.per_user: Counter[int] = Counter()
        self.task: asyncio.Task[None] | None = None
        self.last_id: int | None = None
        # Set once the event source runs (LISTEN issued, or the poll's first id read): a stream
        # opened after it misses no event.
        self.ready = asyncio.Event()
        # Posts that got a reply, waiting for their new count (read in batches, in order).
        self.replied: set[int] = set()
        self.replied_event = asyncio.Event()
        self.counts_task: asyncio.Task[None] | None = None
        # Users with open streams whose unread notification count may have changed (read in
        # the same batches, woken by the same event).
        self.unread_changed: set[int] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done():
            self.ready = asyncio.Event()  # bound to the running loop
            self.task = loop.create_task(self.run())
        if self.counts_task is None or self.counts_task.done():
            self.replied_event = asyncio.Event()
            if self.replied or self.unread_changed:
                self.replied_event.set()
            self.counts_task = loop.create_task(self.send_counts())

    def close_all(self) -> None:
        for listener in self.listeners:
            listener.close()

    def reload_all(self) -> None:
        for listener in self.listeners:
            listener.reload_filters()

    def dispatch(
        self,
        event: PostEvent
        | DeletedEvent
        | FiltersChangedEvent
        | RepliesChangedEvent
        | UnreadChangedEvent,
    ) -> None:
        if isinstance(event, DeletedEvent):  # the client API's streams say `delete`
            for listener in list(self.listeners):
                if listener.subscription.client_api:
                    listener.offer(event)
            return
        if isinstance(event, UnreadChangedEvent):  # a notification, or notifications read
            if event.user in self.per_user:  # only users with a stream open here
                self.recount_unread([event.user])
            return
        if isinstance(event, FiltersChangedEvent):  # a follow, unfollow, block, mute or undoing one
            for listener in self.listeners:
                if listener.subscription.reader_id == event.reader:
                    listener.reload_filters()
            return
        if isinstance(event, RepliesChangedEvent):  # a reply was deleted
            self.recount(event.post)
            return
        if self.last_id is None or event.id > self.last_id:
            self.last_id = event.id
        for listener in list(self.listeners):
            listener.offer(event)
        if event.parent is not None:
            self.recount(event.parent)

    def recount(self, post_id: int) -> None:
        """Queues the post's reply count for the next batch that send_counts() reads."""
        self.replied.add(post_id)
        self.replied_event.set()

    def recount_unread(self, user_ids: "Sequence[int]") -> None:
        """Queues these users' unread counts for the next batch that send_counts() reads."""
        self.unread_changed.update(user_ids)
        self.replied_event.set()

    async def send_counts(self) -> None:
        """Reads the reply counts of the posts that got replies, one query per batch, and offers
        them to the open streams. One task, so counts go out in the order they were read. The
        unread notification counts of the users queued go out the same way."""
        while True:  # for the life of the process
            await self.replied_event.wait()
            self.replied_event.clear()
            user_ids, self.unread_changed = sorted(self.unread_changed), set()
            if user_ids:
                try:
                    unread = await run_db(unread_counts, user_ids)
                except Exception:
                    logger.warning("stream: could not read unread counts", exc_info=True)
                    unread = []
                for unread_count in unread:
                    for listener in list(self.listeners):
                        if listener.subscription.reader_id == unread_count.user:
                            listener.offer(unread_count)
            if not self.replied:
                continue
            post_ids, self.replied = sorted(self.replied), set()
            try:
                counts = await run_db(reply_counts, post_ids)
            except Exception:
                logger.warning("stream: could not read reply counts", exc_info=True)
                continue  # the pages show the right count when reloaded
            for count in counts:
                for listener in list(self.listeners):
                    listener.offer(count)

    async def run(self) -> None:
        if connection.vendor == "postgresql":
            await self.listen()
        else:
            await self.poll()

    async def fill_gap(self) -> None:
        events, newest = await run_db(posts_after, self.last_id)
        if events:
            # SQLite sends no follow or block events, and none arrive while the LISTEN
            # connection is down: filters may have changed since they were loaded.
            self.reload_all()
        for event in events:
            self.dispatch(event)
        self.last_id = newest

    async def poll(self) -> None:
        interval = _setting("STREAM_POLL_SECONDS", 0.5)
        while True:  # for the life of the process
            try:
                await self.fill_gap()
                self.ready.set()
            except Exception:
                logger.warning("stream: poll failed", exc_info=True)
            if self.per_user:
                # SQLite sends no notifications: the connected users' counts are read each poll
                # (one query; a stream sends only a count that changed).
                self.recount_unread(list(self.per_user))
            await asyncio.sleep(interval)

    async def listen(self) -> None:
        import psycopg

        backoff = 0.5
        while True:  # for the life of the process; reconnects with a bounded backoff
            try:
                async with await psycopg.AsyncConnection.connect(
                    _conninfo(), autocommit=True
                ) as listen_connection:
                    await listen_connection.execute(f"LISTEN {CHANNEL}")
                    if self.ready.is_set():
                        # Follows and blocks made while the connection was down went unheard.
                        self.reload_all()
                    # Posts committed while there was no LISTEN connection (none at start).
                    await self.fill_gap()
                    self.ready.set()
                    backoff = 0.5
                    logger.info("stream: listening on %s", CHANNEL)
                    async for notify in listen_connection.notifies():
                        event = parse(notify.payload)
                        if event is not None:
                            self.dispatch(event)
            except Exception:
                logger.warning("stream: LISTEN connection lost; reconnecting", exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def _conninfo() -> str:
    from psycopg.conninfo import make_conninfo

    db = settings.DATABASES["default"]
    params = {
        "dbname": db.get("NAME"),
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
        "host": db.get("HOST"),
        "port": str(db.get("PORT") or ""),
    }
    return make_conninfo(**{key: value for key, value in params.items() if value})


hub = Hub()


# --- HTTP ------------------------------------------------------------------------------------

# Django's middleware that puts the security headers (CSP, nosniff, referrer and opener policy,
# HSTS over HTTPS, frame options) on every page: the stream's answers go through the same ones,
# those of them that settings.MIDDLEWARE turns on.
SECURITY_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)


@cache
def _security_middleware() -> tuple[Any, ...]:
    def no_view(request: HttpRequest) -> HttpResponse:
        raise AssertionError("only process_response is used")

    return tuple(
        import_string(path)(no_view) for path in SECURITY_MIDDLEWARE if path in settings.MIDDLEWARE
    )


def _headers(request: HttpRequest | None, response: HttpResponse) -> list[tuple[bytes, bytes]]:
    response["Cache-Control"] = "no-store"
    if request is not None:
        for middleware in _security_middleware():
            response = middleware.process_response(request, response)
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]


async def _respond(
    send: Send,
    status: int,
    text: str,
    request: HttpRequest | None = None,
    decisions: tuple[ratelimit.Decision, ...] = (),
) -> None:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    decision = ratelimit.tightest(decisions)
    if decision is not None:
        ratelimit.set_headers(response, decision)
        if decision.blocked:
            response["Retry-After"] = str(decision.retry_after())
    await send(
        {"type": "http.response.start", "status": status, "headers": _headers(request, response)}
    )
    await send({"type": "http.response.body", "body": response.content})


def _post_id(raw: str | None) -> int | None:
    """A post id from a query parameter or header; None when absent or not an id."""
    return parse_id(raw)


def _frame(event: PostEvent, last_id: int) -> bytes:
    return f"id: {last_id}\nevent: post\ndata: {event.for_browser()}\n\n".encode()


def _unread_frame(event: UnreadCountEvent) -> bytes:
    return f"event: unread\ndata: {event.for_browser()}\n\n".encode()


def _count_frame(event: CountEvent) -> bytes:
    # No id: the browser's Last-Event-ID stays the newest post delivered.
    return f"event: count\ndata: {event.for_browser()}\n\n".encode()


# The stream's last words when its session ended: app.js then stops reconnecting.
END_FRAME = b"event: end\ndata: signed out or no longer allowed\n\n"


async def lifespan(receive: Receive, send: Send) -> None:
    while True:  # until the server says shutdown
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            hub.close_all()  # browsers reconnect (to another process) and catch up
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    try:
        request = ASGIRequest(scope, io.BytesIO())
    except UnicodeDecodeError:  # a query string that is not UTF-8, as Django answers it
        await _respond(send, 400, "Bad request.\n")
        return
    if request.path == "/up":
        await _respond(send, 200, "ok\n", request)
        return
    if request.path.startswith(API_STREAMING_PREFIX):
        from microblog.stream.api import api_streaming  # it builds on this module

        await api_streaming(request, receive, send)
        return
    if request.path not in (f"{EVENTS_PREFIX}/", EVENTS_PREFIX):
        await _respond(send, 404, "Not found.\n", request)
        return
    if request.method != "GET":
        await _respond(send, 405, "Only GET.\n", request)
        return
    await events_view(request, receive, send)


async def events_view(request: HttpRequest, receive: Receive, send: Send) -> None:
    thread_raw = request.GET.get("thread")
    feed = request.GET.get("feed", "for_you")
    thread_id = _post_id(thread_raw)
    if thread_raw is not None:
        if thread_id is None:
            await _respond(send, 400, "thread must be a post id.\n", request)
            return
        feed = "thread"
    elif feed not in FEEDS:
        await _respond(send, 400, "feed must be for_you or following.\n", request)
        return
    last_event = request.headers.get("Last-Event-ID", "").strip() or None
    since = _post_id(last_event) or _post_id(request.GET.get("since"))

    try:
        admission = await run_db(admit, request, thread_id)
    except DatabaseError as error:
        # The database is away (docs/operations.md, "Database down"): the page tries again.
        logger.warning("stream: cannot check a session: %s: %s", type(error).__name__, error)
        await _respond(send, 503, "Live updates are unavailable for a moment.\n", request)
        return
    refusals = {
        429: "Too many requests.\n",
        401: "Log in to follow live updates.\n",
        404: "No such post.\n",
    }
    if admission.reader is None:
        text = refusals[admission.status]
        await _respond(send, admission.status, text, request, admission.decisions)
        return
    reader = admission.reader
    user_id = int(reader.pk)

    hub.start()
    try:
        await asyncio.wait_for(hub.ready.wait(), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        await _respond(send, 503, "Live updates are unavailable for a moment.\n", request)
        return
    cap = int(_setting("STREAM_MAX_CONNECTIONS_PER_USER", 5))
    if hub.per_user[user_id] >= cap:
        text = f"At most {cap} live streams per user.\n"
        await _respond(send, 429, text, request, admission.decisions)
        return
    hub.per_user[user_id] += 1
    STREAM_CONNECTIONS.inc()
    try:
        session_key = request.COOKIES[settings.SESSION_COOKIE_NAME]
        subscription = Subscription(reader, feed, thread_id)
        await _stream(send, receive, request, admission, subscription, session_key, since)
    finally:
        STREAM_CONNECTIONS.dec()
        hub.per_user[user_id] -= 1
        if hub.per_user[user_id] <= 0:
            del hub.per_user[user_id]


async def _stream(
    send: Send,
    receive: Receive,
    request: HttpRequest,
    admission: Admission,
    subscription: Subscription,
    session_key: str,
    since: int | None,
) -> None:
    listener = Listener(subscription)  # its first item: load the filters
    hub.listeners.add(listener)  # before the catch-up query, so nothing falls in between
    disconnected = asyncio.get_running_loop().create_task(_wait_disconnect(receive))
    getter: asyncio.Task[Item] | None = None
    try:
        response = HttpResponse(content_type="text/event-stream; charset=utf-8")
        response["X-Accel-Buffering"] = "no"
        decision = ratelimit.tightest(admission.decisions)
        if decision is not None:
            ratelimit.set_headers(response, decision)
        headers = _headers(request, response)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        last_id = since or 0
        sent_ids: deque[int] = deque(maxlen=RECENT_IDS)
        # The last unread notification count the page has: first the one it was rendered with
        # (read with the session's user, accounts.backends), then each sent; only changes go out.
        unread_sent: int | None = getattr(subscription.reader, "unread_notifications", None)
        if since is not None:
            limit = int(_setting("STREAM_CATCH_UP_LIMIT", 200))
            missed = await run_db(catch_up, subscription, since, limit)
            for event in missed:
                last_id = max(last_id, event.id)
                sent_ids.append(event.id)
                await _send_body(send, _frame(event, last_id))
            if missed and subscription.thread_id is not None:
                # The open post's reply count changed while this page was not connected.
                for count in await run_db(reply_counts, [subscription.thread_id]):
                    if subscription.wants(count):
                        await _send_body(send, _count_frame(count))
        heartbeat = _setting("STREAM_HEARTBEAT_SECONDS", 15)
        next_beat = time.monotonic() + heartbeat
        while not disconnected.done():
            if getter is None:
                getter = asyncio.ensure_future(listener.queue.get())
            done, _ = await asyncio.wait(
                {getter, disconnected},
                timeout=max(0.0, next_beat - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if disconnected in done:
                break
            if time.monotonic() >= next_beat:
                # The session is checked as often as the stream beats, busy or idle.
                if not await run_db(still_admitted, session_key, subscription):
                    await _send_body(send, END_FRAME)
                    break
                await _send_body(send, b": ping\n\n")
                next_beat = time.monotonic() + heartbeat
            if getter not in done:
                continue
            item = getter.result()
            getter = None
            if item is Control.END:
                break
            if item is Control.RELOAD:
                await reload_filters(listener, subscription)
                continue
            # Judged again: it may have been queued unfiltered, or before a reload.
            if isinstance(item, Control) or not subscription.wants(item):
                continue
            if isinstance(item, CountEvent):
                await _send_body(send, _count_frame(item))
                continue
            if isinstance(item, UnreadCountEvent):
                if item.unread != unread_sent:
                    unread_sent = item.unread
                    await _send_body(send, _unread_frame(item))
                continue
            if isinstance(item, DeletedEvent):  # for the client API's streams only
                continue
            if item.id in sent_ids:
                continue
            sent_ids.append(item.id)
            last_id = max(last_id, item.id)
            await _send_body(send, _frame(item, last_id))
            STREAM_DELIVERY_LATENCY.observe(max(0.0, time.time() - id_to_ms(item.id) / 1000))
        if not disconnected.done():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception as error:  # the client went away mid-write (the error type is the server's)
        logger.debug("stream: connection ended: %r", error)
    finally:
        hub.listeners.discard(listener)
        for task in (getter, disconnected):
            if task is not None and not task.done():
                task.cancel()


async def reload_filters(listener: Listener, subscription: Subscription) -> None:
    """A queued reload: the subscription's follows, blocks and mutes read again, with the
    listener marked meanwhile so that no second reload is queued for the same change."""
    listener.reload_queued = False
    listener.reloading = True
    try:
        await run_db(load_filters, subscription)
    finally:
        listener.reloading = False


async def _send_body(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _wait_disconnect(receive: Receive) -> None:
    for _ in range(1_000_000):  # request body messages first (none for GET), then disconnect
        message = await receive()
        if message["type"] == "http.disconnect":
            return
