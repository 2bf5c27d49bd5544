"""Post events: published after commit by the write services, read by the streaming process.

On PostgreSQL an event is a `NOTIFY microblog_posts, '<json>'` sent once the post's transaction
has committed (transaction.on_commit); the streaming process LISTENs. On SQLite nothing is sent:
the streaming process polls for new rows (`id > last seen`). Payloads are a few dozen bytes, far
below NOTIFY's 8,000-byte limit.

A filters event (`{"filters_of": id}`) tells the streaming process to reload that reader's
filters (whom they hear, block, mute) before it judges the next event: it is sent after a
follow, unfollow, block, unblock, mute or unmute by that reader (on SQLite the poll reloads
them before each batch of new posts).
An unread event (`{"unread_of": id}`) says that user's notifications changed (a new one, or they
were read): the streaming process reads the user's unread count and sends it to their open
streams, for the top bar (PostgreSQL; on SQLite the poll reads the counts of connected users).
A replies event (`{"replies_of": id}`) says a post's reply count went down (a reply was deleted):
the streaming process sends the new count as it does after a reply (PostgreSQL only).
A deleted event (`{"deleted": id, "author", "parent"}`) says a post was deleted: the client API's
streams send Mastodon's `delete` event (PostgreSQL only; SQLite's poll sees new rows only).
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, transaction

CHANNEL = "microblog_posts"
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PostEvent:
    id: int
    author: int | None
    parent: int | None

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "author": self.author, "parent": self.parent}, separators=(",", ":")
        )

    def for_browser(self) -> str:
        """As sent to browsers: ids as strings (64-bit ids do not fit a JavaScript number)."""
        return json.dumps(
            {
                "id": str(self.id),
                "author": None if self.author is None else str(self.author),
                "parent": None if self.parent is None else str(self.parent),
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class CountEvent:
    """A post's reply count, sent after a reply to it was published, so open pages that show the
    post update its "N replies". Made by the streaming process, which reads the count once per
    batch of replies (not per reader); `author`, `parent` and `hidden` are the post's own, for
    the per-reader filter (a hidden post's count goes only to those who may see it)."""

    post: int
    replies: int
    author: int | None
    parent: int | None
    hidden: bool = False

    def for_browser(self) -> str:
        return json.dumps({"id": str(self.post), "replies": self.replies}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DeletedEvent:
    """A post was deleted (by its author or staff); `author` and `parent` are the post's own as
    it was, for the per-reader filter (only streams that could have shown it are told)."""

    post: int
    author: int | None
    parent: int | None


@dataclass(frozen=True, slots=True)
class FiltersChangedEvent:
    reader: int


@dataclass(frozen=True, slots=True)
class RepliesChangedEvent:
    post: int


@dataclass(frozen=True, slots=True)
class UnreadChangedEvent:
    user: int


@dataclass(frozen=True, slots=True)
class UnreadCountEvent:
    """A user's unread notification count, read by the streaming process (one query per batch of
    users), for the top bar of that user's open pages."""

    user: int
    unread: int

    def for_browser(self) -> str:
        return json.dumps({"unread": self.unread}, separators=(",", ":"))


def parse(
    payload: str,
) -> (
    PostEvent | DeletedEvent | FiltersChangedEvent | RepliesChangedEvent | UnreadChangedEvent | None
):
    """An event from a NOTIFY payload; None for anything malformed (it is skipped)."""
    try:
        data: Any = json.loads(payload)
        if "deleted" in data:
            author, parent = data.get("author"), data.get("parent")
            return DeletedEvent(
                post=int(data["deleted"]),
                author=None if author is None else int(author),
                parent=None if parent is None else int(parent),
            )
        if "unread_of" in data:
            return UnreadChangedEvent(user=int(data["unread_of"]))
        if "filters_of" in data:
            return FiltersChangedEvent(reader=int(data["filters_of"]))
        if "replies_of" in data:
            return RepliesChangedEvent(post=int(data["replies_of"]))
        author, parent = data.get("author"), data.get("parent")
        return PostEvent(
            id=int(data["id"]),
            author=None if author is None else int(author),
            parent=None if parent is None else int(parent),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _notify(payload: str) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: the streaming process polls
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
    except DatabaseError:
        # The post is committed; browsers get it on their next catch-up.
        logger.warning("stream: could not publish an event", exc_info=True)


def publish_post_after_commit(
    *, post_id: int, author_id: int | None, parent_id: int | None
) -> None:
    payload = PostEvent(id=post_id, author=author_id, parent=parent_id).to_json()
    transaction.on_commit(lambda: _notify(payload))


def publish_post_deleted_after_commit(
    *, post_id: int, author_id: int | None, parent_id: int | None
) -> None:
    payload = json.dumps(
        {"deleted": post_id, "author": author_id, "parent": parent_id}, separators=(",", ":")
    )
    transaction.on_commit(lambda: _notify(payload))


def publish_replies_changed_after_commit(*, post_id: int) -> None:
    payload = json.dumps({"replies_of": post_id})
    transaction.on_commit(lambda: _notify(payload))


def publish_reader_filters_changed_after_commit(*, reader_id: int) -> None:
    """`reader_id` followed, unfollowed, blocked, unblocked, muted or unmuted someone: their
    open streams reload whom they hear from before judging the next post."""
    payload = json.dumps({"filters_of": reader_id})
    transaction.on_commit(lambda: _notify(payload))


def publish_unread_changed_after_commit(*, user_id: int) -> None:
    """`user_id` has a new notification, or read theirs: their open pages update the count."""
    payload = json.dumps({"unread_of": user_id})
    transaction.on_commit(lambda: _notify(payload))
