"""Live updates (microblog.stream): the per-reader filter, the events the services publish, the
`?since=` fragments, and `microblog stream` run as a real process against the test database."""

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from microblog.accounts.models import User
from microblog.posts.services import post_create
from microblog.stream.app import Subscription
from microblog.stream.events import (
    CountEvent,
    FiltersChangedEvent,
    PostEvent,
    RepliesChangedEvent,
    UnreadChangedEvent,
    parse,
)
from tests.stream.helpers import (
    Driver,
    EventStream,
    app_process,
    database_url,
    free_port,
    status_of,
)
from tests.stream.helpers import subprocess_env as stream_env

# --- The per-reader filter -------------------------------------------------------------------

READER, FOLLOWED, STRANGER = 1, 2, 3


def sub(feed: str, thread_id: int | None = None) -> Subscription:
    return Subscription(User(id=READER), feed, thread_id, heard=frozenset({FOLLOWED}))


@pytest.mark.parametrize(
    ("event", "for_you", "following"),
    [
        (PostEvent(10, FOLLOWED, None), True, True),  # a followed author's post
        (PostEvent(11, FOLLOWED, 5), False, True),  # their reply: Following only
        (PostEvent(12, READER, None), True, False),  # the reader's own post: For You only
        (PostEvent(13, READER, 5), False, False),  # the reader's own reply
        (PostEvent(14, STRANGER, None), False, False),
        (PostEvent(15, STRANGER, 5), False, False),
        (PostEvent(16, None, None), False, False),  # author deleted meanwhile
    ],
)
def test_feed_filter(event: PostEvent, for_you: bool, following: bool) -> None:
    assert sub("for_you").wants(event) is for_you
    assert sub("following").wants(event) is following


def test_thread_filter_takes_direct_replies_by_anyone() -> None:
    thread = sub("thread", thread_id=5)
    assert thread.wants(PostEvent(20, STRANGER, 5))
    assert thread.wants(PostEvent(21, READER, 5))
    assert not thread.wants(PostEvent(22, FOLLOWED, None))
    assert not thread.wants(PostEvent(23, FOLLOWED, 6))


def test_blocked_and_muted_authors_are_left_out_of_every_page() -> None:
    """Feeds hear the followed accounts less the muted and blocked ones (heard_ids leaves them
    out of Subscription.heard); a thread page leaves out replies by blocked accounts."""
    for feed in ("for_you", "following"):
        muting = Subscription(User(id=READER), feed, None, heard=frozenset())
        assert not muting.wants(PostEvent(30, FOLLOWED, None))
        assert not muting.wants(CountEvent(30, 1, FOLLOWED, None))
    blocking = Subscription(User(id=READER), "thread", 5, blocked=frozenset({STRANGER}))
    assert not blocking.wants(PostEvent(31, STRANGER, 5))
    assert not blocking.wants(CountEvent(31, 1, STRANGER, 5))
    assert blocking.wants(PostEvent(32, FOLLOWED, 5))


def test_a_hidden_posts_count_goes_only_to_its_author() -> None:
    """Issue 10 finding 9: a post hidden by the moderators is shown to its author only (staff
    read its count when they reload its page), so no other stream hears its count."""
    hidden = CountEvent(40, 2, FOLLOWED, None, hidden=True)
    assert not sub("for_you").wants(hidden)
    assert not sub("following").wants(hidden)
    assert not sub("thread", thread_id=40).wants(hidden)
    assert not sub("thread", thread_id=5).wants(CountEvent(41, 1, FOLLOWED, 5, hidden=True))
    own = CountEvent(42, 1, READER, None, hidden=True)
    assert sub("for_you").wants(own)
    assert sub("thread", thread_id=42).wants(own)


@pytest.mark.parametrize(
    ("count", "for_you", "following", "thread"),
    [
        (CountEvent(5, 1, FOLLOWED, None), True, True, True),  # the open post itself
        (CountEvent(6, 1, FOLLOWED, 5), False, True, True),  # a direct reply on the thread page
        (CountEvent(7, 1, READER, None), True, False, False),  # the reader's own post
        (CountEvent(8, 1, STRANGER, None), False, False, False),
        (CountEvent(9, 1, STRANGER, 6), False, False, False),  # deeper in the thread
    ],
)
def test_reply_counts_go_to_the_pages_that_show_the_post(
    count: CountEvent, for_you: bool, following: bool, thread: bool
) -> None:
    assert sub("for_you").wants(count) is for_you
    assert sub("following").wants(count) is following
    assert sub("thread", thread_id=5).wants(count) is thread
    assert count.for_browser() == f'{{"id":"{count.post}","replies":1}}'


def test_event_payloads_round_trip_and_malformed_ones_are_skipped() -> None:
    event = PostEvent(383707940417685241, 7, None)
    assert parse(event.to_json()) == event
    assert '"id":"383707940417685241"' in event.for_browser()  # a string: beyond 2**53
    assert parse('{"filters_of": 4}') == FiltersChangedEvent(4)
    assert parse('{"replies_of": 9}') == RepliesChangedEvent(9)
    assert parse('{"unread_of": 5}') == UnreadChangedEvent(5)
    for bad in ["", "nope", "[]", '{"id": "x"}', '{"author": 1}', "null"]:
        assert parse(bad) is None


@pytest.mark.postgres_only
def test_post_create_notifies_after_commit(alice, bob) -> None:
    import psycopg
    from django.db import connection, transaction

    s = connection.settings_dict
    with psycopg.connect(
        dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"] or None, host=s["HOST"],
        port=s["PORT"] or 5432, autocommit=True,
    ) as listener:  # fmt: skip
        listener.execute("LISTEN microblog_posts")
        with transaction.atomic():
            post = post_create(author=alice, content="live")
            # Nothing before the commit.
            assert list(listener.notifies(timeout=0.2)) == []
        reply = post_create(author=bob, content="re", parent_id=post.id)
        received = [parse(n.payload) for n in listener.notifies(timeout=2, stop_after=3)]
    # The reply also told alice (a notification): her open pages update their unread count.
    assert received == [
        PostEvent(post.id, alice.id, None),
        UnreadChangedEvent(alice.id),
        PostEvent(reply.id, bob.id, post.id),
    ]


# --- `?since=`: the posts behind the "N new posts" button ------------------------------------


def test_since_returns_only_newer_feed_posts(make_user, make_post, client_for) -> None:
    from microblog.follows.services import follow_create

    reader, author, stranger = make_user(), make_user(), make_user()
    follow_create(follower=reader, followed=author)
    old = make_post(author, "old post")
    new = make_post(author, "new post")
    reply = make_post(author, "new reply", parent=old)
    make_post(stranger, "stranger post")
    client = client_for(reader)

    body = client.get(f"/?since={old.id}", headers={"HX-Request": "true"}).content.decode()
    assert "new post" in body and f"post-{new.id}" in body
    assert "old post" not in body and "stranger post" not in body and "new reply" not in body
    assert "<html" not in body and "Your feed is empty" not in body

    body = client.get(f"/following?since={old.id}", headers={"HX-Request": "true"}).content
    assert b"new reply" in body and b"new post" in body and b"old post" not in body

    last = client.get(f"/?since={reply.id}", headers={"HX-Request": "true"}).content.decode()
    assert "article" not in last and "empty" not in last
    assert client.get("/?since=abc").status_code == 400
    assert client.get("/?since=99999999999999999999").status_code == 400


def test_feed_pages_carry_the_stream_for_signed_in_readers(alice, make_post, client_for) -> None:
    client = client_for(alice)
    assert 'data-stream="/events/?feed=for_you"' in client.get("/").content.decode()
    assert 'data-stream="/events/?feed=following"' in client.get("/following").content.decode()
    post = make_post(alice)
    assert (
        f'data-stream="/events/?thread={post.id}"'
        in client.get(f"/posts/{post.id}").content.decode()
    )
    assert b"data-stream" not in client.get("/all").content


# --- `microblog stream` as a process ----------------------------------------------------------


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
    url, driver = stream_db
    port = free_port()
    env = stream_env(url, STREAM_MAX_CONNECTIONS_PER_USER="2")
    with app_process(["stream", "--port", str(port)], env, port):
        yield port, driver


def _open(port: int, query: str, session: str | None, **kwargs: str | None) -> EventStream:
    events = EventStream(port, query, session, **kwargs)
    assert events.status == 200, events.response.read()
    return events


def test_stream_delivers_the_readers_feed_and_catches_up(stream) -> None:
    port, driver = stream
    reader, session = driver.user("reader")
    author, _ = driver.user("author")
    stranger, _ = driver.user("stranger")
    driver.follow(reader, author)

    for_you = _open(port, "feed=for_you", session)
    following = _open(port, "feed=following", session)
    first = driver.post(author, "first")
    driver.post(stranger, "not for the reader")
    got = for_you.next_post()
    assert got is not None and got["id"] == str(first) and got["author"] == str(author)
    assert got["event_id"] == str(first)
    reply = driver.post(author, "a reply", parent=first)
    own = driver.post(reader, "my own")
    assert for_you.next_post()["id"] == str(own)  # the reply is not For You
    assert following.next_post()["id"] == str(first)
    assert following.next_post()["id"] == str(reply)
    for_you.close()
    following.close()

    # Missed while disconnected: caught up from Last-Event-ID, in order, then live, once each.
    missed = [driver.post(author, f"missed {n}") for n in range(3)]
    missed_reply = driver.post(author, "missed reply", parent=first)
    again = _open(port, "feed=for_you", session, last_event_id=str(own))
    assert [again.next_post()["id"] for _ in missed] == [str(i) for i in missed]
    live = driver.post(author, "live again")
    assert again.next_post()["id"] == str(live)
    assert again.next_post(timeout=1.5) is None  # no duplicates
    again.close()

    # A thread stream catches up with the replies after `since`, then sees new ones live.
    thread = _open(port, f"thread={first}&since={reply}", session)
    assert thread.next_post()["id"] == str(missed_reply)
    other = driver.post(stranger, "stranger replies", parent=first)
    assert thread.next_post()["id"] == str(other)
    thread.close()


def test_stream_leaves_out_muted_and_blocked_authors_live_and_on_catch_up(stream) -> None:
    port, driver = stream
    reader, session = driver.user("reader")
    loud, _ = driver.user("loud")
    rude, _ = driver.user("rude")
    quiet, _ = driver.user("quiet")
    for author in (loud, rude, quiet):
        driver.follow(reader, author)
    first = driver.post(quiet, "before")
    driver.mute(reader, loud)
    driver.block(reader, rude)
    driver.post(loud, "muted")
    driver.post(rude, "blocked")
    shown = driver.post(quiet, "shown")

    # The catch-up leaves them out, and so does the live filter loaded with the stream.
    for_you = _open(port, "feed=for_you", session, last_event_id=str(first))
    assert for_you.next_post()["id"] == str(shown)
    driver.post(loud, "muted, live")
    driver.post(rude, "blocked, live")
    live = driver.post(quiet, "live")
    assert for_you.next_post()["id"] == str(live)  # the two before it were passed over
    for_you.close()


def test_a_follow_unfollow_mute_or_block_applies_before_the_next_post(stream) -> None:
    """Issue 11 item 2, on both databases: an open stream judges the next post with the
    reader's new follows, mutes and blocks (it used to wait for a periodic reload)."""
    port, driver = stream
    reader, session = driver.user("reader")
    carol, _ = driver.user("carol")
    dave, _ = driver.user("dave")
    for_you = _open(port, "feed=for_you", session)
    following = _open(port, "feed=following", session)

    driver.follow(reader, carol)
    first = driver.post(carol, "right after the follow")
    assert for_you.next_post()["id"] == str(first)
    assert following.next_post()["id"] == str(first)

    driver.unfollow(reader, carol)
    driver.post(carol, "after the unfollow")
    own = driver.post(reader, "my own")
    assert for_you.next_post()["id"] == str(own)

    driver.follow(reader, carol)
    driver.follow(reader, dave)
    driver.mute(reader, carol)
    driver.post(carol, "muted")
    heard = driver.post(dave, "dave is heard")
    assert for_you.next_post()["id"] == str(heard)
    assert following.next_post()["id"] == str(heard)  # carol's "after the unfollow" passed over

    driver.unmute(reader, carol)
    again = driver.post(carol, "unmuted")
    assert for_you.next_post()["id"] == str(again)

    driver.block(reader, dave)
    driver.post(dave, "blocked")
    last = driver.post(carol, "still heard")
    assert for_you.next_post()["id"] == str(last)
    assert following.next_post()["id"] == str(again)
    assert following.next_post()["id"] == str(last)
    for_you.close()
    following.close()


def test_stream_sends_new_reply_counts_to_the_pages_showing_the_post(stream) -> None:
    port, driver = stream
    reader, session = driver.user("reader")
    author, _ = driver.user("author")
    stranger, _ = driver.user("stranger")
    driver.follow(reader, author)
    post = driver.post(author, "count my replies")
    elsewhere = driver.post(stranger, "not in the reader's feed")

    for_you = _open(port, "feed=for_you", session)
    thread = _open(port, f"thread={post}", session)
    reply = driver.post(stranger, "a reply", parent=post)
    driver.post(stranger, "a reply elsewhere", parent=elsewhere)

    # The thread page gets the reply, then the open post's new count (no event id, so the
    # browser's Last-Event-ID stays the newest post).
    assert thread.next_post()["id"] == str(reply)
    count = thread.next()
    assert count is not None and count["event"] == "count" and "id" not in count
    assert json.loads(count["data"]) == {"id": str(post), "replies": 1}
    # For You shows the post (not the reply): only its count.
    count = for_you.next()
    assert count is not None and count["event"] == "count"
    assert json.loads(count["data"]) == {"id": str(post), "replies": 1}
    # Neither gets the count of a post they do not show.
    assert for_you.next(timeout=1.5) is None
    assert thread.next(timeout=0.5) is None
    for_you.close()
    thread.close()


@pytest.mark.postgres_only
def test_stream_sends_the_lower_count_when_a_reply_is_deleted(stream) -> None:
    """Deletions are published by NOTIFY only (SQLite's poll sees new rows, not deleted ones)."""
    port, driver = stream
    reader, session = driver.user("reader")
    author, _ = driver.user("author")
    post = driver.post(author, "count my replies")
    first = driver.post(author, "first reply", parent=post)
    second = driver.post(reader, "second reply", parent=post)

    thread = _open(port, f"thread={post}", session)
    driver.delete(first)
    count = thread.next()
    assert count is not None and count["event"] == "count"
    assert json.loads(count["data"]) == {"id": str(post), "replies": 1}
    driver.delete(second)
    count = thread.next()
    assert count is not None and json.loads(count["data"]) == {"id": str(post), "replies": 0}
    thread.close()


def test_stream_refuses_strangers_bad_requests_and_too_many_connections(stream) -> None:
    port, driver = stream
    _reader, session = driver.user("capped")
    assert status_of(port, "feed=for_you", None) == 401
    assert status_of(port, "feed=for_you", "not-a-session") == 401
    assert status_of(port, "feed=everything", session) == 400
    assert status_of(port, "thread=abc", session) == 400
    for bad in [
        "thread=%00",
        "thread=-1",
        "thread=99999999999999999999",
        "thread=%D9%A1",
        "feed=%FF",
    ]:
        assert status_of(port, bad, session) == 400, bad
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET /events/?feed=\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400"), "a query string that is not UTF-8"

    first = _open(port, "feed=for_you", session)
    second = _open(port, "feed=following", session)
    assert status_of(port, "feed=for_you", session) == 429
    first.close()
    # The server notices the disconnect and frees the slot.
    deadline = time.monotonic() + 10
    while (status := status_of(port, "feed=for_you", session)) == 429:
        assert time.monotonic() < deadline, "the closed connection was never released"
        time.sleep(0.2)
    assert status == 200
    second.close()


# --- Who may hear what (issue 10 finding 9) ---------------------------------------------------


def test_a_thread_stream_opens_only_for_those_who_may_open_the_post(stream) -> None:
    """`?thread=<hidden id>` is a 404, as the post's page is, except for its author and staff:
    it used to stream the hidden post's reply ids and counts to anyone signed in."""
    port, driver = stream
    staff, staff_session = driver.user("moderator", staff=True)
    author, author_session = driver.user("author")
    _reader, session = driver.user("reader")
    post = driver.post(author, "to be hidden")
    driver.post(author, "an early reply", parent=post)
    driver.hide(staff, post)

    assert status_of(port, f"thread={post}", session) == 404
    assert status_of(port, f"thread={post}&since=1", session) == 404
    assert status_of(port, "thread=999999999", session) == 404  # no such post
    assert status_of(port, f"thread={post}", author_session) == 200
    assert status_of(port, f"thread={post}", staff_session) == 200


def test_counts_of_a_hidden_post_reach_only_its_author(stream) -> None:
    """A hidden post's `count` events no longer reach its author's followers."""
    port, driver = stream
    staff, _ = driver.user("moderator", staff=True)
    author, author_session = driver.user("author")
    reader, session = driver.user("reader")
    driver.follow(reader, author)
    hidden = driver.post(author, "to be hidden")
    driver.hide(staff, hidden)
    follower = _open(port, "feed=for_you", session)
    own = _open(port, "feed=for_you", author_session)

    driver.post(author, "answering my own hidden post", parent=hidden)
    count = own.next()
    assert count is not None and count["event"] == "count"
    assert json.loads(count["data"]) == {"id": str(hidden), "replies": 1}
    # Offered to every stream before this post was written: the follower's next event is it.
    marker = driver.post(author, "a visible post")
    event = follower.next()
    assert event is not None and event["event"] == "post", event
    assert json.loads(event["data"])["id"] == str(marker)
    follower.close()
    own.close()


@pytest.mark.parametrize("ending", ["log out", "password change"])
def test_an_open_stream_ends_with_its_session(stream, ending: str) -> None:
    """Logged out, or signed out by a password change: the open stream says `end` and closes
    within a heartbeat (1 s here), and cannot be opened again with that session."""
    port, driver = stream
    reader, session = driver.user("reader")
    author, _ = driver.user("author")
    driver.follow(reader, author)
    for_you = _open(port, "feed=for_you", session)
    thread = _open(port, f"thread={driver.post(author, 'a thread')}", session)
    assert for_you.next_post() is not None  # still delivering

    if ending == "log out":
        driver.log_out(session)
    else:
        driver.change_password(reader)
    for events in (for_you, thread):
        end = events.next(timeout=3)
        assert end is not None and end["event"] == "end", end
        assert events.ended(timeout=2)
        events.close()
    assert status_of(port, "feed=for_you", session) == 401


def test_stream_answers_carry_the_pages_security_headers(stream, client) -> None:
    """The stream's refusals (401, 404, 400) and its event stream carry the headers every page
    has (CSP, nosniff, referrer and opener policy, frame options)."""
    port, driver = stream
    _reader, session = driver.user("reader")
    page = client.get("/login")
    names = [
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Cross-Origin-Opener-Policy",
        "X-Frame-Options",
    ]

    def security(headers: list[tuple[str, str]]) -> dict[str, str | None]:
        by_name = {name.lower(): value for name, value in headers}
        found = {name: by_name.get(name.lower()) for name in names}
        # The page's policy carries its per-request nonce, which a text answer does not need.
        csp = found["Content-Security-Policy"] or ""
        found["Content-Security-Policy"] = re.sub(r" 'nonce-[^']*'", "", csp)
        return found

    expected = security(list(page.headers.items()))
    assert all(expected.values()), expected
    for query, cookie, status in [
        ("feed=for_you", None, 401),
        ("thread=999999999", session, 404),
        ("feed=nope", session, 400),
        ("feed=for_you", session, 200),
    ]:
        events = EventStream(port, query, cookie)
        assert events.status == status
        assert security(events.response.getheaders()) == expected, (query, status)
        events.close()


def test_opening_a_stream_counts_against_the_rate_limit(stream_db) -> None:
    """Opening attempts go through the "requests" limit per client address, as every page
    request does; past it, a 429 with Retry-After and the X-RateLimit-* headers."""
    url, driver = stream_db
    _reader, session = driver.user("reader")
    port = free_port()
    env = stream_env(url, RATELIMIT_ENABLED="1", RATELIMIT_REQUESTS="3/1h")
    with app_process(["stream", "--port", str(port)], env, port):
        assert status_of(port, "feed=for_you", None) == 401
        assert status_of(port, "feed=for_you", "not-a-session") == 401
        first = _open(port, "feed=for_you", session)
        assert first.response.getheader("X-RateLimit-Remaining") == "0"
        refused = EventStream(port, "feed=for_you", session)
        assert refused.status == 429
        assert int(refused.response.getheader("Retry-After")) > 0
        assert refused.response.getheader("X-RateLimit-Limit") == "3"
        refused.close()
        assert status_of(port, "feed=for_you", None) == 429  # before any session lookup
        first.close()


def test_stream_sends_the_unread_notification_count_to_its_reader_only(stream) -> None:
    """A mention raises the mentioned reader's unread count on their open page (an `unread`
    event, no event id); others' streams hear nothing of it."""
    port, driver = stream
    _reader, session = driver.user("reader")
    _other, other_session = driver.user("other")
    author, _ = driver.user("author")
    mine = _open(port, "feed=for_you", session)
    theirs = _open(port, "feed=for_you", other_session)
    driver.post(author, "hello @Reader")
    event = mine.next()
    assert event is not None and event["event"] == "unread" and "id" not in event
    assert json.loads(event["data"]) == {"unread": 1}
    driver.post(author, "again, @reader")
    event = mine.next()
    assert event is not None and json.loads(event["data"]) == {"unread": 2}
    assert theirs.next(timeout=1.5) is None  # only the mentioned reader was told
    mine.close()
    theirs.close()
