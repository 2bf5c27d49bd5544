"""The client API's streaming (stream/api.py): Mastodon's Server-Sent Events from `microblog
stream` run as a real process against the test database, and Mastodon.py's StreamListener
against `microblog serve` (the one-port app of `make run`)."""

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client
from mastodon import Mastodon, StreamListener

from microblog.accounts.models import User
from microblog.stream.app import STREAM_PATH_PREFIXES, Subscription, is_stream_path
from microblog.stream.events import DeletedEvent, PostEvent, UnreadCountEvent, parse
from tests.stream.helpers import (
    Driver,
    EventStream,
    app_process,
    database_url,
    free_port,
    subprocess_env,
)

USER = "/api/v1/streaming/user"
PUBLIC = "/api/v1/streaming/public"


@pytest.fixture
def stream_db(db: None, tmp_path: Path) -> Iterator[tuple[str, Driver]]:
    with database_url(tmp_path) as url:
        driver = Driver(url)
        try:
            yield url, driver
        finally:
            driver.close()


@pytest.fixture
def stream(stream_db: tuple[str, Driver]) -> Iterator[tuple[int, Driver]]:
    """`microblog stream` with a 1 s heartbeat (subprocess_env)."""
    url, driver = stream_db
    port = free_port()
    with app_process(["stream", "--port", str(port)], subprocess_env(url), port):
        yield port, driver


def _open(
    port: int, path: str, token: str | None = None, query: str = "", **headers: str
) -> EventStream:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    events = EventStream(port, query, None, path=path, headers=headers)
    return events


def _opened(port: int, path: str, token: str | None = None, query: str = "") -> EventStream:
    events = _open(port, path, token, query)
    assert events.status == 200, events.response.read()
    return events


def _refusal(port: int, path: str, token: str | None = None, query: str = "") -> tuple[int, Any]:
    events = _open(port, path, token, query)
    try:
        assert events.response.getheader("Content-Type") == "application/json"
        assert events.response.getheader("Access-Control-Allow-Origin") == "*"
        return events.status, json.loads(events.response.read())
    finally:
        events.close()


def _next(events: EventStream, name: str, timeout: float = 5.0) -> Any:
    """The data of the next event (other kinds are passed over), parsed as JSON; None when none
    came in time."""
    for _ in range(100):
        event = events.next(timeout)
        if event is None:
            return None
        if event.get("event") == name:
            return json.loads(event["data"])
    return None


# --- The filters, the events, the routes (in process) ------------------------------------------

READER, FOLLOWED, MUTED, STRANGER = 1, 2, 3, 4


def test_public_and_notification_streams_filter_as_their_rest_lists() -> None:
    public = Subscription(User(id=READER), "public", excluded=frozenset({MUTED}), client_api=True)
    visitor = Subscription(None, "public", client_api=True)
    assert public.wants(PostEvent(10, STRANGER, None))
    assert not public.wants(PostEvent(11, STRANGER, 10))  # All has no replies
    assert not public.wants(PostEvent(12, MUTED, None))
    assert visitor.wants(PostEvent(12, MUTED, None)) and visitor.reader_id == 0
    assert public.wants(DeletedEvent(10, STRANGER, None))
    assert not public.wants(DeletedEvent(12, MUTED, None))
    notifications = Subscription(User(id=READER), "notifications", client_api=True)
    assert not notifications.wants(PostEvent(13, READER, None))
    assert notifications.wants(UnreadCountEvent(READER, 1))
    assert not notifications.wants(UnreadCountEvent(FOLLOWED, 1))
    home = Subscription(User(id=READER), "for_you", heard=frozenset({FOLLOWED}), client_api=True)
    assert home.wants(DeletedEvent(14, FOLLOWED, None))
    assert not home.wants(DeletedEvent(15, STRANGER, None))


def test_deleted_event_payload() -> None:
    assert parse('{"deleted":386,"author":7,"parent":null}') == DeletedEvent(386, 7, None)
    assert parse('{"deleted":"x"}') is None


def test_serve_and_the_load_balancer_send_api_streaming_to_the_stream_process() -> None:
    """combined.py asks is_stream_path; deploy/haproxy.cfg names the same prefixes."""
    assert is_stream_path("/api/v1/streaming/user") and is_stream_path("/api/v1/streaming")
    assert is_stream_path("/events/")
    assert not is_stream_path("/api/v1/timelines/home")
    haproxy = (Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg").read_text()
    rule = next(line for line in haproxy.splitlines() if "use_backend stream" in line)
    for prefix in STREAM_PATH_PREFIXES:
        assert f" {prefix}" in rule, prefix


def test_instance_names_the_streaming_api(db: None, settings: Any) -> None:
    """The site's own origin as Mastodon gives it (wss:// over HTTPS), or API_STREAMING_URL."""
    client = Client()
    assert client.get("/api/v1/instance").json()["urls"]["streaming_api"] == "ws://testserver"
    v2 = client.get("/api/v2/instance", secure=True).json()
    assert v2["configuration"]["urls"]["streaming"] == "wss://testserver"
    settings.API_STREAMING_URL = "wss://stream.example.org"
    v1 = client.get("/api/v1/instance").json()
    assert v1["urls"]["streaming_api"] == "wss://stream.example.org"


def test_notification_entity_in_mastodons_types(alice: User, bob: User, make_post: Any) -> None:
    """A like is a `favourite` with its status, a follow a `follow` without one; `id` is the
    group's time-sortable sort_id."""
    from microblog.api.serializers import Context, notifications
    from microblog.follows.services import follow_create
    from microblog.interactions.services import like_create
    from microblog.notifications.models import Notification, PendingNotification
    from microblog.notifications.services import notifications_fold

    post = make_post(alice, "like me")
    like_create(user=bob, post_id=post.id)
    follow_create(follower=bob, followed=alice)
    for pending in PendingNotification.objects.filter(recipient=alice):
        notifications_fold(recipient_id=alice.id, kind=pending.kind, group_key=pending.group_key)
    ctx = Context(base="https://example.org", domain="example.org")
    rows = Notification.objects.filter(recipient=alice).select_related("actor", "post__author")
    by_kind = {row.kind: row for row in rows}
    liked, followed = notifications([by_kind["like"], by_kind["follow"]], ctx)
    assert liked["type"] == "favourite" and liked["id"] == str(by_kind["like"].sort_id)
    assert liked["account"]["username"] == bob.username
    assert liked["status"]["id"] == str(post.id)
    assert liked["created_at"].endswith("Z")
    assert followed["type"] == "follow" and followed["status"] is None


def test_per_event_reads_are_one_query_each(
    alice: User, bob: User, make_post: Any, django_assert_num_queries: Any
) -> None:
    """A new post's Status (once per process and post) is one query, replies included, and one
    more for the accounts it mentions (the Status's `mentions`); a batch of new notifications
    (once per change and stream) is one query, and one more when its posts mention accounts."""
    from microblog.api.serializers import Context
    from microblog.stream.api import new_notifications, status_json

    ctx = Context(base="https://example.org", domain="example.org")
    post = make_post(alice, "a post")
    plain_reply = make_post(alice, "a reply to herself: no notification", parent=post)
    reply = make_post(bob, "@alice a reply", parent=post)
    with django_assert_num_queries(1):
        status = json.loads(status_json(plain_reply.id, ctx) or "null")
    assert status["in_reply_to_account_id"] == str(alice.id)
    with django_assert_num_queries(2):
        status = json.loads(
            status_json(reply.id, Context(base=ctx.base, domain=ctx.domain)) or "null"
        )
    assert status["in_reply_to_account_id"] == str(alice.id)
    assert [mention["id"] for mention in status["mentions"]] == [str(alice.id)]
    with django_assert_num_queries(2):
        frames, newest = new_notifications(alice.id, 0, Context(base=ctx.base, domain=ctx.domain))
    (entity,) = [json.loads(frame) for frame in frames]  # a reply that mentions: one row
    assert entity["status"]["in_reply_to_account_id"] == str(alice.id)
    assert entity["id"] == str(newest)
    with django_assert_num_queries(1):
        assert new_notifications(alice.id, newest, ctx) == ([], newest)


# --- Format -------------------------------------------------------------------------------------


def test_user_stream_speaks_mastodons_server_sent_events(stream) -> None:
    """The stream opens with a comment, beats with `:thump`, and sends `event: update` with the
    Status entity of the REST API as `data:` on one line, with no `id:` or `retry:` field (a
    block without `event:` is a malformed event to Mastodon.py)."""
    port, driver = stream
    reader, _ = driver.user("reader")
    author, _ = driver.user("author")
    driver.follow(reader, author)
    token, _app = driver.token(reader)
    events = _opened(port, USER, token)
    assert events.response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert events.response.getheader("Cache-Control") == "no-store"
    assert events.response.getheader("Access-Control-Allow-Origin") == "*"
    assert events.response.readline() == b":)\n"
    assert events.response.readline() == b"\n"
    assert events.response.readline() == b":thump\n"  # within a heartbeat (1 s here)
    assert events.response.readline() == b"\n"

    post = driver.post(author, "Hello <b>stream</b>\n\nsecond paragraph")
    lines = [events.response.readline() for _ in range(3)]
    while lines[0].startswith(b":"):  # a heartbeat may come first
        lines = [*lines[2:], events.response.readline(), events.response.readline()]
    assert lines[0] == b"event: update\n"
    assert lines[1].startswith(b"data: {") and lines[1].endswith(b"}\n")
    assert lines[2] == b"\n"
    status = json.loads(lines[1].removeprefix(b"data: "))
    assert status["id"] == str(post)
    assert status["account"]["id"] == str(author)
    assert status["account"]["username"] == "author"
    assert status["content"] == "<p>Hello &lt;b&gt;stream&lt;/b&gt;</p><p>second paragraph</p>"
    assert status["in_reply_to_id"] is None and status["visibility"] == "public"
    assert status["url"] == f"http://127.0.0.1:{port}/posts/{post}"
    events.close()


def test_user_stream_carries_the_home_timeline_and_notifications(stream) -> None:
    """What GET /api/v1/timelines/home shows (For You: own and followed top-level posts, not
    blocked or muted authors, not replies, not strangers), and a mention as `notification`."""
    port, driver = stream
    reader, _ = driver.user("reader")
    followed, _ = driver.user("followed")
    rude, _ = driver.user("rude")
    loud, _ = driver.user("loud")
    stranger, _ = driver.user("stranger")
    for author in (followed, rude, loud):
        driver.follow(reader, author)
    driver.block(reader, rude)
    driver.mute(reader, loud)
    token, _app = driver.token(reader)
    events = _opened(port, USER, token)

    driver.post(rude, "blocked author")
    driver.post(loud, "muted author")
    driver.post(stranger, "not followed")
    first = driver.post(followed, "followed author")
    assert _next(events, "update")["id"] == str(first)  # the three before it were left out
    driver.post(followed, "a reply", parent=first)
    own = driver.post(reader, "my own")
    assert _next(events, "update")["id"] == str(own)

    mention = driver.post(stranger, "hello @reader")
    notification = _next(events, "notification")
    assert notification["type"] == "mention"
    assert notification["account"]["username"] == "stranger"
    assert notification["status"]["id"] == str(mention)
    assert notification["status"]["content"].startswith("<p>hello ")
    reply = driver.post(stranger, "a reply to you", parent=own)
    notification = _next(events, "notification")
    assert notification["type"] == "mention" and notification["status"]["id"] == str(reply)
    assert notification["status"]["in_reply_to_id"] == str(own)
    assert notification["status"]["in_reply_to_account_id"] == str(reader)
    events.close()


def test_a_block_made_while_the_stream_is_open_applies_to_the_next_post(stream) -> None:
    port, driver = stream
    reader, _ = driver.user("reader")
    rude, _ = driver.user("rude")
    quiet, _ = driver.user("quiet")
    driver.follow(reader, rude)
    driver.follow(reader, quiet)
    token, _app = driver.token(reader)
    events = _opened(port, USER, token)
    before = driver.post(rude, "before the block")
    assert _next(events, "update")["id"] == str(before)
    driver.block(reader, rude)
    driver.post(rude, "after the block")
    marker = driver.post(quiet, "still heard")
    assert _next(events, "update")["id"] == str(marker)
    events.close()


def test_notifications_need_the_read_notifications_scope(stream) -> None:
    """Mastodon's rule: a user stream opened with read:statuses alone carries no notifications;
    user:notification needs read:notifications and carries nothing else."""
    port, driver = stream
    reader, _ = driver.user("reader")
    other, _ = driver.user("other")
    statuses_only, _ = driver.token(reader, "read:statuses")
    notifications_only, _ = driver.token(reader, "read:notifications")
    home = _opened(port, USER, statuses_only)
    notifications = _opened(port, "/api/v1/streaming/user/notification", notifications_only)
    assert _refusal(port, USER, notifications_only)[0] == 403
    driver.post(other, "hello @reader")
    own = driver.post(reader, "mine")
    assert _next(home, "update")["id"] == str(own)  # the mention was not sent before it
    assert _next(notifications, "notification")["type"] == "mention"
    assert notifications.next(timeout=1.5) is None  # not the post
    assert home.next(timeout=0.5) is None
    home.close()
    notifications.close()


def test_public_stream_carries_all_without_a_token(stream) -> None:
    """As GET /api/v1/timelines/public: every top-level post, no replies, without a token; with
    a token, not the authors the reader blocks or mutes. `/public/local` and `?stream=public`
    are the same stream."""
    port, driver = stream
    reader, _ = driver.user("reader")
    muted, _ = driver.user("muted")
    anyone, _ = driver.user("anyone")
    driver.mute(reader, muted)
    token, _app = driver.token(reader, "read")
    visitor = _opened(port, PUBLIC)
    local = _opened(port, "/api/v1/streaming/public/local", token)
    by_query = _opened(port, "/api/v1/streaming", token, query="stream=public")

    first = driver.post(muted, "a muted author")
    assert _next(visitor, "update")["id"] == str(first)
    driver.post(anyone, "a reply", parent=first)
    second = driver.post(anyone, "top level")
    assert _next(visitor, "update")["id"] == str(second)
    assert _next(local, "update")["id"] == str(second)
    assert _next(by_query, "update")["id"] == str(second)
    for events in (visitor, local, by_query):
        events.close()


@pytest.mark.postgres_only
def test_a_deleted_post_is_sent_as_delete(stream) -> None:
    """`event: delete` with the id as data, to the streams that could have shown the post
    (deletions come by NOTIFY: PostgreSQL only)."""
    port, driver = stream
    reader, _ = driver.user("reader")
    author, _ = driver.user("author")
    stranger, _ = driver.user("stranger")
    driver.follow(reader, author)
    token, _app = driver.token(reader)
    events = _opened(port, USER, token)
    post = driver.post(author, "soon gone")
    assert _next(events, "update")["id"] == str(post)
    elsewhere = driver.post(stranger, "not in the reader's home")
    driver.delete(elsewhere)
    driver.delete(post)
    event = events.next()
    while event is not None and event["event"] != "delete":
        event = events.next()
    assert event == {"event": "delete", "data": str(post)}
    events.close()


# --- Who may stream -------------------------------------------------------------------------------


def test_stream_refusals_are_the_rest_apis_errors(stream) -> None:
    port, driver = stream
    reader, _ = driver.user("reader")
    token, _app = driver.token(reader)
    app_token, _ = driver.token(None, "read")
    narrow, _ = driver.token(reader, "read:accounts")
    invalid = {"error": "The access token is invalid"}
    assert _refusal(port, USER) == (401, invalid)
    assert _refusal(port, USER, "not-a-token") == (401, invalid)
    assert _refusal(port, PUBLIC, "not-a-token") == (401, invalid)
    assert _refusal(port, USER, query="access_token=not-a-token") == (401, invalid)
    assert _refusal(port, USER, app_token)[0] == 422
    assert _refusal(port, USER, narrow) == (
        403,
        {"error": "This action is outside the authorized scopes"},
    )
    assert _refusal(port, PUBLIC, narrow)[0] == 403
    assert _refusal(port, "/api/v1/streaming/hashtag", token) == (
        404,
        {"error": "Unknown stream type"},
    )
    assert _refusal(port, "/api/v1/streaming", token, query="stream=direct")[0] == 404
    # The token in the query string (browsers' EventSource cannot send a header).
    by_query = _opened(port, USER, query=f"access_token={token}")
    by_query.close()
    by_stream = _opened(port, "/api/v1/streaming", query=f"stream=user&access_token={token}")
    by_stream.close()

    health = requests.get(f"http://127.0.0.1:{port}/api/v1/streaming/health", timeout=10)
    assert (health.status_code, health.text) == (200, "OK")
    posted = requests.post(f"http://127.0.0.1:{port}{USER}", timeout=10)
    assert posted.status_code == 405 and posted.json()["error"]
    preflight = requests.options(
        f"http://127.0.0.1:{port}{USER}",
        headers={"Origin": "https://elk.example", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_a_revoked_token_ends_its_open_stream(stream) -> None:
    """The token is checked again every heartbeat (1 s here): once the user revokes the app in
    Settings the stream closes, and opening it again is a 401."""
    port, driver = stream
    reader, _ = driver.user("reader")
    token, app = driver.token(reader)
    other_token, _other_app = driver.token(reader)
    events = _opened(port, USER, token)
    other = _opened(port, USER, other_token)
    own = driver.post(reader, "still streaming")
    assert _next(events, "update")["id"] == str(own)
    assert _next(other, "update")["id"] == str(own)

    driver.revoke(reader, app)
    assert events.ended(timeout=4)
    events.close()
    assert _refusal(port, USER, token)[0] == 401
    # The other app's token is untouched.
    after = driver.post(reader, "after the revoke")
    assert _next(other, "update")["id"] == str(after)
    other.close()


# --- Mastodon.py against `microblog serve` -------------------------------------------------------


@pytest.fixture
def served(stream_db: tuple[str, Driver]) -> Iterator[tuple[str, Driver]]:
    """`microblog serve`, as `make run` starts it: pages, API and streaming on one port."""
    url, driver = stream_db
    port = free_port()
    command = ["serve", "--port", str(port), "--job-workers", "0", "--stream", "same-port"]
    with app_process(command, subprocess_env(url), port) as base:
        yield base, driver


class Updates(StreamListener):
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.arrived = threading.Event()

    def on_update(self, status: Any) -> None:
        self.received.append(status)
        self.arrived.set()


def test_mastodon_py_streams_an_update_from_make_runs_server(served) -> None:
    """Mastodon.py finds the streaming API through the instance entity (the site's own origin),
    and `microblog serve` routes /api/v1/streaming to the streaming app: a post by someone the
    user follows reaches the StreamListener's on_update."""
    base, driver = served
    reader, _ = driver.user("reader")
    author, _ = driver.user("author")
    driver.follow(reader, author)
    token, _app = driver.token(reader)
    with requests.Session() as session:
        app = Mastodon(access_token=token, api_base_url=base, session=session)
        assert app.instance_v1().urls.streaming_api == base.replace("http://", "ws://")
        assert app.instance_v2().configuration.urls.streaming == base.replace("http://", "ws://")
        listener = Updates()
        handle = app.stream_user(listener, run_async=True, timeout=10)
        try:
            # The request is sent on the handle's thread: wait until the stream is open (the
            # server answers only once the stream listens, so nothing posted after is missed).
            ready = threading.Event()
            for _ in range(100):
                if handle.is_receiving() and handle.connection is not None:
                    ready.set()
                    break
                ready.wait(0.1)
            assert ready.is_set(), "the stream did not open"
            post = driver.post(author, "live from the stream")
            assert listener.arrived.wait(10), "no update arrived"
            (status,) = listener.received
            assert str(status.id) == str(post)
            assert status.account.acct == "author"
            assert status.content == "<p>live from the stream</p>"
        finally:
            handle.close()
            handle.join(10)


def test_a_streams_events_show_the_counts_as_they_are_when_each_is_read(
    alice: User, bob: User, make_post: Any
) -> None:
    """A stream's context lives as long as the stream; each event is made from a fresh one, so
    an author's counts in a later event are read anew, not those of the stream's first event."""
    from microblog.api.serializers import Context
    from microblog.follows.services import follow_create
    from microblog.stream.api import status_json

    ctx = Context(base="https://example.org", domain="example.org")
    first = json.loads(status_json(make_post(alice, "first").id, ctx) or "null")
    assert first["account"]["followers_count"] == 0
    follow_create(follower=bob, followed=alice)
    second = json.loads(status_json(make_post(alice, "second").id, ctx) or "null")
    assert second["account"]["followers_count"] == 1
    assert second["account"]["statuses_count"] == 2
