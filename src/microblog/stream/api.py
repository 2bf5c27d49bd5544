"""The client API's streaming (Mastodon's `/api/v1/streaming`), served by the streaming process
beside the pages' `/events/` (stream/app.py: the same hub, filters and limits).

- Streams: `GET /api/v1/streaming/user` (the token user's home timeline, For You, and their
  notifications), `/user/notification` (notifications only), `/public` and `/public/local` (All;
  every account is local), or `/api/v1/streaming?stream=user|user:notification|public|
  public:local`. `/api/v1/streaming/health` answers `OK`.
- Mastodon's Server-Sent Events: `event: update` with the Status entity, `event: delete` with the
  status id, `event: notification` with the Notification entity (api/serializers.py, the REST
  API's own serializers); a comment (`:)`) when the stream opens and `:thump` every
  STREAM_HEARTBEAT_SECONDS. No `retry:` or `id:` field: clients such as Mastodon.py take a
  block without `event:` for a malformed event.
- Who reads: the OAuth access token, in `Authorization: Bearer` or `?access_token=` (browsers'
  EventSource cannot send headers), checked by the REST API's own functions (api.auth: the
  token through django-oauth-toolkit's validator, then check_access with the scope of the
  matching REST endpoint): user streams need a user token with `read:statuses` (GET
  /api/v1/timelines/home), and get notifications only if it also allows `read:notifications`
  (Mastodon's rule); `user:notification` needs `read:notifications`; the public stream answers
  without a token, as GET /api/v1/timelines/public does, and with one checks it the same way.
  Refusals are the REST API's `{"error": "..."}` with its status codes.
- The token is checked again every heartbeat: a revoked or expired token (or a deactivated
  account) ends the stream within STREAM_HEARTBEAT_SECONDS (as still_admitted does for sessions).
- What goes out is decided by the pages' stream filters (Subscription, timelines.visibility):
  For You's for the user stream, All's (everyone_shows: top-level, not by an account the reader
  blocks or mutes) for the public one. A post's Status is read once per process and post (not
  per stream) and only when some stream wants it; a post hidden or deleted by then is not sent.
  Notifications: whenever the reader's notifications change (the hub's unread counts, which
  come after `{"unread_of"}` on PostgreSQL and every poll on SQLite), those newer than the last
  sent are read with notifications_for's rule (one query) and sent oldest first.
- Deleted posts (`{"deleted"}` by NOTIFY): sent to the streams whose filter would have shown the
  post (PostgreSQL only: SQLite's poll sees new rows, not deletions).
"""

import asyncio
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import DisallowedHost
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from microblog import ratelimit
from microblog.api.auth import (
    CORS_HEADERS,
    Access,
    bearer_token,
    check_access,
    load_token,
)
from microblog.api.scopes import expand, satisfied
from microblog.ops.metrics import STREAM_CONNECTIONS
from microblog.stream.app import (
    API_STREAMING_PREFIX,
    READY_TIMEOUT_SECONDS,
    RECENT_IDS,
    Control,
    Item,
    Listener,
    Subscription,
    _headers,
    _send_body,
    _setting,
    _wait_disconnect,
    hub,
    reload_filters,
    run_db,
)
from microblog.stream.events import CountEvent, DeletedEvent, PostEvent, UnreadCountEvent

if TYPE_CHECKING:
    from microblog.accounts.models import User
    from microblog.api.serializers import Context

logger = logging.getLogger(__name__)

# Mastodon's stream names, the feed of the pages' stream filter each reads, and the access each
# needs: that of the REST endpoint listing the same posts (api/urls.py).
STREAMS: dict[str, tuple[str, Access]] = {
    "user": ("for_you", Access(scope="read:statuses")),
    "user:notification": ("notifications", Access(scope="read:notifications")),
    "public": ("public", Access(scope="read:statuses", user=False, token=False)),
    "public:local": ("public", Access(scope="read:statuses", user=False, token=False)),
}
PATHS = {
    "/user": "user",
    "/user/notification": "user:notification",
    "/public": "public",
    "/public/local": "public:local",
}
HEALTH_PATH = "/health"
NOTIFICATIONS_PER_READ = 40
STATUS_CACHE_SIZE = 512
OPEN_COMMENT = b":)\n\n"
HEARTBEAT_COMMENT = b":thump\n\n"


def stream_name(request: HttpRequest) -> str | None:
    """The stream asked for: by path, or by `?stream=` on /api/v1/streaming itself."""
    rest = request.path.removeprefix(API_STREAMING_PREFIX).rstrip("/")
    if rest == "":
        name = request.GET.get("stream", "")
        return name if name in STREAMS else None
    return PATHS.get(rest)


def presented_token(request: HttpRequest) -> str | None:
    """The access token: the Authorization header first, else `?access_token=`."""
    token = bearer_token(request)
    if token is None:
        token = request.GET.get("access_token", "").strip() or None
    return token


# --- Admission and the per-heartbeat check (in threads) ---------------------------------------


@dataclass
class ApiAdmission:
    status: int
    error: str = ""
    reader: "User | None" = None
    notifications: bool = False  # the token allows read:notifications
    last_notification: int = 0  # the newest notification's sort_id when the stream opened
    ctx: "Context | None" = None
    decisions: tuple[ratelimit.Decision, ...] = ()


def admit(request: HttpRequest, stream: str, token: str | None) -> ApiAdmission:
    """Counts the attempt against the rate limit (per address, as /events/), then checks the
    token as the REST API checks it for the endpoint listing the same posts."""
    from django.db.models import Max

    from microblog.api.serializers import Context
    from microblog.notifications.models import Notification

    decisions = tuple(ratelimit.hit(request, [("requests", ratelimit.ip_subject(request))]))
    if any(decision.blocked for decision in decisions):
        return ApiAdmission(429, "Too many requests", decisions=decisions)
    try:
        ctx = Context.of(request)
    except DisallowedHost:
        return ApiAdmission(400, "Bad request", decisions=decisions)
    access = load_token(token) if token is not None else None
    # What ApiTokenMiddleware sets on REST requests, read by check_access.
    request.access_token = access  # type: ignore[attr-defined]
    request.token_invalid = token is not None and access is None  # type: ignore[attr-defined]
    refused = check_access(request, STREAMS[stream][1])
    if refused is not None:
        message = json.loads(refused.content)["error"]
        return ApiAdmission(refused.status_code, message, decisions=decisions)
    reader = access.user if access is not None else None
    notifications = (
        access is not None
        and reader is not None
        and stream.startswith("user")
        and satisfied(expand(access.scope), "read:notifications")
    )
    last = 0
    if notifications:
        assert reader is not None
        newest = Notification.objects.filter(recipient_id=reader.pk).aggregate(
            newest=Max("sort_id")
        )["newest"]
        last = int(newest or 0)
    return ApiAdmission(200, "", reader, notifications, last, ctx, decisions)


def token_still_valid(token: str | None, reader_id: int) -> bool:
    """Every heartbeat: the token is still valid (not revoked, not expired, its account active)
    and still the same reader's. A stream opened without a token has nothing to lose."""
    if token is None:
        return True
    access = load_token(token)
    return access is not None and access.user_id == (reader_id or None)


def status_json(post_id: int, ctx: "Context") -> str | None:
    """A new post's Status entity as JSON (None once it is deleted or hidden: it is not sent).
    Read as a visitor reads it: a new post's entity is the same for every reader (nobody has
    liked or reposted it yet)."""
    from microblog.api.serializers import statuses
    from microblog.posts.selectors import post_for_display

    post = post_for_display(post_id)
    if post is None or post.is_deleted or post.is_hidden:
        return None
    return json.dumps(statuses([post], ctx.fresh())[0], separators=(",", ":"))


def new_notifications(reader_id: int, after: int, ctx: "Context") -> tuple[list[str], int]:
    """The reader's notifications changed after the sort_id `after`, oldest first, as
    Notification entities (JSON), with the newest sort_id read: the notifications page's rule
    (visibility.notifications_for): one query, and one for the accounts its posts mention if any."""
    from microblog.api.serializers import notifications
    from microblog.notifications.selectors import shown_to

    rows = list(
        shown_to(reader_id)
        .filter(sort_id__gt=after)
        .select_related("actor", "post__author", "post__parent")
        .order_by("sort_id")[:NOTIFICATIONS_PER_READ]
    )
    if not rows:
        return [], after
    # A fresh context per batch: the stream's own lives as long as the stream.
    entities = notifications(rows, ctx.fresh())
    frames = [json.dumps(entity, separators=(",", ":")) for entity in entities]
    return frames, rows[-1].sort_id


# --- Status entities, read once per process and post ------------------------------------------


@dataclass
class StatusCache:
    """The Status JSON of recent posts, shared by the process's streams: a post that reaches a
    thousand streams is read and serialized once. Keyed by post and site address (the entity's
    links are absolute)."""

    size: int = STATUS_CACHE_SIZE
    entries: "OrderedDict[tuple[int, str], asyncio.Task[str | None]]" = field(
        default_factory=OrderedDict
    )
    loop: asyncio.AbstractEventLoop | None = None

    async def get(self, post_id: int, ctx: "Context") -> str | None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # tasks belong to the loop that made them
            self.entries.clear()
            self.loop = loop
        key = (post_id, ctx.base)
        task = self.entries.get(key)
        if task is None:
            task = loop.create_task(run_db(status_json, post_id, ctx))
            self.entries[key] = task
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        try:
            return await asyncio.shield(task)
        except DatabaseError:
            logger.warning("stream: could not read post %s", post_id, exc_info=True)
            self.entries.pop(key, None)
            return None


statuses_cache = StatusCache()


# --- HTTP --------------------------------------------------------------------------------------


def _cors(response: HttpResponse) -> HttpResponse:
    for name, value in CORS_HEADERS.items():
        response[name] = value
    return response


async def _answer(
    send: Any,
    request: HttpRequest,
    response: HttpResponse,
    decisions: Sequence[ratelimit.Decision] = (),
) -> None:
    decision = ratelimit.tightest(decisions)
    if decision is not None:
        ratelimit.set_headers(response, decision)
        if decision.blocked:
            response["Retry-After"] = str(decision.retry_after())
    _cors(response)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": _headers(request, response),
        }
    )
    await send({"type": "http.response.body", "body": response.content})


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


async def api_streaming(request: HttpRequest, receive: Any, send: Any) -> None:
    """`/api/v1/streaming...` on the streaming process (stream/app.py routes it here)."""
    if request.method == "OPTIONS":
        await _answer(send, request, HttpResponse(status=204))  # a browser's CORS preflight
        return
    if request.method != "GET":
        response = _error(405, f"Method {request.method} is not allowed here")
        response["Allow"] = "GET, OPTIONS"
        await _answer(send, request, response)
        return
    if request.path.removeprefix(API_STREAMING_PREFIX).rstrip("/") == HEALTH_PATH:
        await _answer(send, request, HttpResponse("OK", content_type="text/plain"))
        return
    stream = stream_name(request)
    if stream is None:
        await _answer(send, request, _error(404, "Unknown stream type"))
        return
    token = presented_token(request)
    try:
        admission = await run_db(admit, request, stream, token)
    except DatabaseError as error:
        logger.warning("stream: cannot check a token: %s: %s", type(error).__name__, error)
        await _answer(send, request, _error(503, "Streaming is unavailable for a moment"))
        return
    if admission.status != 200:
        response = _error(admission.status, admission.error)
        await _answer(send, request, response, admission.decisions)
        return
    hub.start()
    try:
        await asyncio.wait_for(hub.ready.wait(), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        await _answer(send, request, _error(503, "Streaming is unavailable for a moment"))
        return
    reader = admission.reader
    user_id = int(reader.pk) if reader is not None else None
    if user_id is not None:
        cap = int(_setting("STREAM_MAX_CONNECTIONS_PER_USER", 5))
        if hub.per_user[user_id] >= cap:
            response = _error(429, f"At most {cap} streams per user")
            await _answer(send, request, response, admission.decisions)
            return
        hub.per_user[user_id] += 1
    STREAM_CONNECTIONS.inc()
    try:
        feed = STREAMS[stream][0]
        subscription = Subscription(reader, feed, client_api=True)
        await _stream(send, receive, request, admission, subscription, token)
    finally:
        STREAM_CONNECTIONS.dec()
        if user_id is not None:
            hub.per_user[user_id] -= 1
            if hub.per_user[user_id] <= 0:
                del hub.per_user[user_id]


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


async def _stream(
    send: Any,
    receive: Any,
    request: HttpRequest,
    admission: ApiAdmission,
    subscription: Subscription,
    token: str | None,
) -> None:
    assert admission.ctx is not None
    ctx = admission.ctx
    listener = Listener(subscription)  # its first item: load the filters
    hub.listeners.add(listener)
    disconnected = asyncio.get_running_loop().create_task(_wait_disconnect(receive))
    getter: asyncio.Task[Item] | None = None
    try:
        response = HttpResponse(content_type="text/event-stream; charset=utf-8")
        response["X-Accel-Buffering"] = "no"
        decision = ratelimit.tightest(admission.decisions)
        if decision is not None:
            ratelimit.set_headers(response, decision)
        _cors(response)
        headers = _headers(request, response)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await _send_body(send, OPEN_COMMENT)
        last_notification = admission.last_notification
        sent_ids: deque[int] = deque(maxlen=RECENT_IDS)
        heartbeat = _setting("STREAM_HEARTBEAT_SECONDS", 15)
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + heartbeat
        while not disconnected.done():
            if getter is None:
                getter = asyncio.ensure_future(listener.queue.get())
            done, _ = await asyncio.wait(
                {getter, disconnected},
                timeout=max(0.0, next_beat - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if disconnected in done:
                break
            if loop.time() >= next_beat:
                # The token is checked as often as the stream beats, busy or idle.
                if not await run_db(token_still_valid, token, subscription.reader_id):
                    break
                await _send_body(send, HEARTBEAT_COMMENT)
                next_beat = loop.time() + heartbeat
            if getter not in done:
                continue
            item = getter.result()
            getter = None
            if item is Control.END:
                break
            if item is Control.RELOAD:
                await reload_filters(listener, subscription)
                continue
            if isinstance(item, Control | CountEvent) or not subscription.wants(item):
                continue
            if isinstance(item, UnreadCountEvent):
                if admission.notifications:
                    frames, last_notification = await run_db(
                        new_notifications, subscription.reader_id, last_notification, ctx
                    )
                    for frame in frames:
                        await _send_body(send, _event("notification", frame))
                continue
            if isinstance(item, DeletedEvent):
                await _send_body(send, _event("delete", str(item.post)))
                continue
            assert isinstance(item, PostEvent)
            if item.id in sent_ids:
                continue
            sent_ids.append(item.id)
            data = await statuses_cache.get(item.id, ctx)
            if data is not None:
                await _send_body(send, _event("update", data))
        if not disconnected.done():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception as error:  # the client went away mid-write (the error type is the server's)
        logger.debug("stream: API connection ended: %r", error)
    finally:
        hub.listeners.discard(listener)
        for task in (getter, disconnected):
            if task is not None and not task.done():
                task.cancel()
