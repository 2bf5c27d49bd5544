"""The streaming app: Server-Sent Events at `/events/`, a plain ASGI callable (no framework).

It delivers, it does not compute (docs/architecture.md, "Real-time"):

- One source of events per process: a `LISTEN microblog_posts` connection on PostgreSQL, a poll
  of new rows (`id > last seen`, every STREAM_POLL_SECONDS) on SQLite. Each event is offered to
  every open connection's `Subscription`, which decides from the event alone (author, parent)
  and the reader's followed ids, loaded once per connection, whether it belongs to the feed.
- Signed-in readers only, by the pages' session cookie: one session lookup per connection.
- `?feed=for_you|following` or `?thread=<post id>`; `?since=<post id>` or the `Last-Event-ID`
  header (the newest post id delivered) starts with a catch-up from the database, so a
  reconnecting browser loses nothing; live events already sent by the catch-up are skipped.
- A comment line every STREAM_HEARTBEAT_SECONDS; at most STREAM_MAX_CONNECTIONS_PER_USER open
  streams per user and process (429 beyond).
- Reply counts: after a reply, a `count` event (`{"id": <post id>, "replies": n}`, no event id)
  goes to the streams whose pages may show the replied-to post, so its "N replies" stays current.
  The counts are read once per batch of replies by the process, never per reader.

Database work runs in a small thread pool (Django's ORM is synchronous).
"""

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Q

from microblog.core.ids import id_to_ms
from microblog.core.metrics import STREAM_CONNECTIONS, STREAM_DELIVERY_LATENCY
from microblog.core.pagination import MAX_ID
from microblog.stream.events import (
    CHANNEL,
    CountEvent,
    FollowEvent,
    PostEvent,
    RepliesChangedEvent,
    parse,
)

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

FEEDS = ("for_you", "following")
QUEUE_SIZE = 1000
RECENT_IDS = 2000


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


# --- Per-reader filtering ------------------------------------------------------------------


@dataclass
class Subscription:
    """What one open stream wants. `wants` is the per-reader filter, from the event alone."""

    reader_id: int
    feed: str  # "for_you", "following" or "thread"
    thread_id: int | None = None
    followed: frozenset[int] = frozenset()
    # Authors whose posts this page does not show (moderation.selectors): the ones the reader
    # blocks, and in feeds also the ones they mute.
    silenced: frozenset[int] = frozenset()

    def wants(self, event: PostEvent | CountEvent) -> bool:
        if isinstance(event, CountEvent):
            return self.wants_count(event)
        if event.author in self.silenced:
            return False
        if self.feed == "thread":
            # Direct replies to the open post (deeper replies show when the page is reloaded).
            return event.parent is not None and event.parent == self.thread_id
        if event.author is None:
            return False
        if self.feed == "following":
            # Posts and replies of the people the reader follows (timelines.selectors.following).
            return event.author in self.followed
        # For You (timelines.fanout): top-level posts by the reader or by anyone they follow,
        # celebrities included (their posts are merged at read time, not fanned out).
        return event.parent is None and (
            event.author == self.reader_id or event.author in self.followed
        )

    def wants_count(self, event: CountEvent) -> bool:
        """Whether the reader's page may show the post whose reply count changed."""
        if self.feed == "thread":
            # The open post and its direct replies (the cards the page shows at first).
            return event.post == self.thread_id or (
                event.parent is not None and event.parent == self.thread_id
            )
        # A feed shows the posts it would deliver as events.
        return self.wants(PostEvent(id=event.post, author=event.author, parent=event.parent))


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


def session_user_id(session_key: str) -> int | None:
    """The signed-in user of a session, checked as the pages check it (auth hash, active)."""
    from django.contrib.auth import get_user

    engine = import_module(settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(session_key))
    user = get_user(request)  # type: ignore[arg-type]
    return int(user.pk) if user.is_authenticated else None


def followed_ids(reader_id: int) -> frozenset[int]:
    from microblog.follows.models import Follow

    return frozenset(
        Follow.objects.filter(follower_id=reader_id).values_list("followed_id", flat=True)
    )


def silenced_ids(reader_id: int, feed: str) -> frozenset[int]:
    """Authors the page leaves out: blocked ones everywhere, muted ones in feeds too."""
    from microblog.moderation.selectors import blocked_ids, muted_ids

    silenced = set(blocked_ids(reader_id))
    if feed != "thread":
        silenced.update(muted_ids(reader_id))
    return frozenset(silenced)


def load_filters(subscription: Subscription) -> None:
    """Loads whom the reader follows and whom they silenced (at start, and again after the
    reader follows, unfollows, blocks, mutes or undoes one of these)."""
    subscription.followed = followed_ids(subscription.reader_id)
    subscription.silenced = silenced_ids(subscription.reader_id, subscription.feed)


def catch_up(subscription: Subscription, after: int, limit: int) -> list[PostEvent]:
    """The feed's posts newer than `after` (at most the newest `limit`), oldest first."""
    from microblog.follows.models import Follow
    from microblog.posts.models import Post

    posts = Post.objects.filter(id__gt=after)
    followed = Follow.objects.filter(follower_id=subscription.reader_id).values("followed_id")
    if subscription.feed == "thread":
        posts = posts.filter(parent_id=subscription.thread_id)
    elif subscription.feed == "following":
        posts = posts.filter(author_id__in=followed)
    else:
        posts = posts.filter(
            Q(author_id=subscription.reader_id) | Q(author_id__in=followed), parent__isnull=True
        )
    # What the page would show (moderation.selectors.in_feeds / on_pages): no post the
    # moderators hid, unless it is the reader's own.
    posts = posts.filter(Q(is_hidden=False) | Q(author_id=subscription.reader_id))
    if subscription.silenced:
        posts = posts.exclude(author_id__in=subscription.silenced)
    rows = list(posts.order_by("-id").values_list("id", "author_id", "parent_id")[:limit])
    return [PostEvent(id=i, author=a, parent=p) for i, a, p in reversed(rows)]


def reply_counts(post_ids: list[int]) -> list[CountEvent]:
    """The current reply counts of these posts (deleted ones are left out)."""
    from microblog.posts.models import Post

    rows = Post.objects.filter(id__in=post_ids).values_list(
        "id", "replies_count", "author_id", "parent_id"
    )
    return [CountEvent(post=i, replies=n, author=a, parent=p) for i, n, a, p in rows]


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


Item = PostEvent | CountEvent


@dataclass(eq=False)
class Listener:
    subscription: Subscription
    queue: asyncio.Queue[Item | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    overflowed: bool = False
    follows_changed: bool = False

    def offer(self, event: Item) -> None:
        if self.overflowed or not self.subscription.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A reader this far behind is disconnected; its browser reconnects and catches up.
            self.close()

    def close(self) -> None:
        """Ends the stream (its loop reads None)."""
        self.overflowed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Hub:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.per_user: Counter[int] = Counter()
        self.task: asyncio.Task[None] | None = None
        self.last_id: int | None = None
        # Posts that got a reply, waiting for their new count (read in batches, in order).
        self.replied: set[int] = set()
        self.replied_event = asyncio.Event()
        self.counts_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done():
            self.task = loop.create_task(self.run())
        if self.counts_task is None or self.counts_task.done():
            self.replied_event = asyncio.Event()  # bound to the running loop
            if self.replied:
                self.replied_event.set()
            self.counts_task = loop.create_task(self.send_counts())

    def close_all(self) -> None:
        for listener in self.listeners:
            listener.close()

    def dispatch(self, event: PostEvent | FollowEvent | RepliesChangedEvent) -> None:
        if isinstance(event, FollowEvent):
            for listener in self.listeners:
                if listener.subscription.reader_id == event.follower:
                    listener.follows_changed = True
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

    async def send_counts(self) -> None:
        """Reads the reply counts of the posts that got replies, one query per batch, and offers
        them to the open streams. One task, so counts go out in the order they were read."""
        while True:  # for the life of the process
            await self.replied_event.wait()
            self.replied_event.clear()
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
        for event in events:
            self.dispatch(event)
        self.last_id = newest

    async def poll(self) -> None:
        interval = _setting("STREAM_POLL_SECONDS", 0.5)
        while True:  # for the life of the process
            try:
                await self.fill_gap()
            except Exception:
                logger.warning("stream: poll failed", exc_info=True)
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
                    # Posts committed while there was no LISTEN connection (none at start).
                    await self.fill_gap()
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


async def _respond(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


def _post_id(raw: str | None) -> int | None:
    """A post id from a query parameter or header; None when absent or not an id."""
    if not raw or not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > MAX_ID:
        return None
    return int(raw)


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    from http.cookies import SimpleCookie

    raw = headers.get(b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def _frame(event: PostEvent, last_id: int) -> bytes:
    return f"id: {last_id}\nevent: post\ndata: {event.for_browser()}\n\n".encode()


def _count_frame(event: CountEvent) -> bytes:
    # No id: the browser's Last-Event-ID stays the newest post delivered.
    return f"event: count\ndata: {event.for_browser()}\n\n".encode()


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
    path = scope["path"]
    if path == "/up":
        await _respond(send, 200, "ok\n")
        return
    if path not in ("/events/", "/events"):
        await _respond(send, 404, "Not found.\n")
        return
    if scope["method"] != "GET":
        await _respond(send, 405, "Only GET.\n")
        return
    await events_view(scope, receive, send)


async def events_view(scope: Scope, receive: Receive, send: Send) -> None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers: dict[bytes, bytes] = {}
    for key, value in scope.get("headers", []):
        headers[key.lower()] = value
    thread_raw = query.get("thread", [None])[0]
    feed = query.get("feed", ["for_you"])[0]
    thread_id = _post_id(thread_raw)
    if thread_raw is not None:
        if thread_id is None:
            await _respond(send, 400, "thread must be a post id.\n")
            return
        feed = "thread"
    elif feed not in FEEDS:
        await _respond(send, 400, "feed must be for_you or following.\n")
        return
    last_event = headers.get(b"last-event-id", b"").decode("latin-1").strip() or None
    since = _post_id(last_event) or _post_id(query.get("since", [None])[0])

    session_key = _cookie(headers, settings.SESSION_COOKIE_NAME)
    try:
        user_id = await run_db(session_user_id, session_key) if session_key else None
    except DatabaseError as error:
        # The database is away (docs/operations.md, "Database down"): the page tries again.
        logger.warning("stream: cannot check a session: %s: %s", type(error).__name__, error)
        await _respond(send, 503, "Live updates are unavailable for a moment.\n")
        return
    if user_id is None:
        await _respond(send, 401, "Log in to follow live updates.\n")
        return

    hub.start()
    cap = int(_setting("STREAM_MAX_CONNECTIONS_PER_USER", 5))
    if hub.per_user[user_id] >= cap:
        await _respond(send, 429, f"At most {cap} live streams per user.\n")
        return
    hub.per_user[user_id] += 1
    STREAM_CONNECTIONS.inc()
    try:
        await _stream(send, receive, Subscription(user_id, feed, thread_id), since)
    finally:
        STREAM_CONNECTIONS.dec()
        hub.per_user[user_id] -= 1
        if hub.per_user[user_id] <= 0:
            del hub.per_user[user_id]


async def _stream(
    send: Send, receive: Receive, subscription: Subscription, since: int | None
) -> None:
    await run_db(load_filters, subscription)
    listener = Listener(subscription)
    hub.listeners.add(listener)  # before the catch-up query, so nothing falls in between
    disconnected = asyncio.get_running_loop().create_task(_wait_disconnect(receive))
    getter: asyncio.Task[Item | None] | None = None
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        last_id = since or 0
        sent_ids: deque[int] = deque(maxlen=RECENT_IDS)
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
                    await _send_body(send, _count_frame(count))
        heartbeat = _setting("STREAM_HEARTBEAT_SECONDS", 15)
        refresh = _setting("STREAM_FOLLOWS_REFRESH_SECONDS", 60)
        next_refresh = time.monotonic() + refresh
        while not disconnected.done():
            if listener.follows_changed or time.monotonic() >= next_refresh:
                listener.follows_changed = False
                await run_db(load_filters, subscription)
                next_refresh = time.monotonic() + refresh
            if getter is None:
                getter = asyncio.ensure_future(listener.queue.get())
            done, _ = await asyncio.wait(
                {getter, disconnected}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if disconnected in done:
                break
            if getter not in done:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                continue
            item = getter.result()
            getter = None
            if item is None:  # overflowed
                break
            if isinstance(item, CountEvent):
                await _send_body(send, _count_frame(item))
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


async def _send_body(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _wait_disconnect(receive: Receive) -> None:
    for _ in range(1_000_000):  # request body messages first (none for GET), then disconnect
        message = await receive()
        if message["type"] == "http.disconnect":
            return
