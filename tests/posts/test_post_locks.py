"""What a post's transaction locks, and for how long (issue 15, item 4), on real PostgreSQL.

The author's row (posts_count) and a reply's parent (replies_count) are the rows other writers
wait for: every post of the same author, every reply to the same post. `post_create` updates them
last, just before its commit, so they are not held while the post's own rows are written."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connections, transaction

from microblog.accounts.models import User
from microblog.core.errors import NotFound
from microblog.notifications import services as notifications
from microblog.notifications.models import Notification
from microblog.posts import services
from microblog.posts.models import Post
from microblog.posts.services import PARENT_MISSING, post_create, post_delete

pytestmark = pytest.mark.postgres_only


def in_other_connection[T](work: Callable[[], T]) -> T:
    """Runs `work` in a thread of its own (so on a connection of its own); re-raises its error.
    Gives up after 10 s (a lock this test's own transaction holds would make it wait forever)."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(("ok", work()))
        except BaseException as error:
            result.append(("error", error))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert result, "the other connection waited for a lock this transaction holds"
    kind, value = result[0]
    if kind == "error":
        raise value
    return value  # type: ignore[no-any-return]


def row_locked(model: type[User] | type[Post], row_id: int) -> bool:
    """Whether another transaction holds a lock that an UPDATE of the row's counters waits for."""

    def probe() -> bool:
        try:
            with transaction.atomic():
                query = model.objects.select_for_update(no_key=True, nowait=True)
                list(query.filter(id=row_id).values("id"))
        except DatabaseError:
            return True
        return False

    return in_other_connection(probe)


def during_writes(monkeypatch: pytest.MonkeyPatch, hook: Callable[[], None]) -> None:
    """Runs `hook` in the middle of post_create's transaction (after its notifications)."""
    real = notifications.notify_post_created

    def notify_then_hook(**kwargs: Any) -> None:
        real(**kwargs)
        hook()

    monkeypatch.setattr(services.notifications, "notify_post_created", notify_then_hook)


def test_the_author_and_the_parent_are_not_locked_while_a_post_is_written(
    alice: User, bob: User, make_post: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = make_post(bob, "a post to reply to")
    seen: list[tuple[bool, bool]] = []
    during_writes(
        monkeypatch,
        lambda: seen.append((row_locked(User, alice.id), row_locked(Post, parent.id))),
    )
    post_create(author=alice, content="a reply", parent_id=parent.id)
    post_create(author=alice, content="a post")
    assert seen == [(False, False), (False, False)]
    # The counters still moved, in the same transactions.
    assert User.objects.get(id=alice.id).posts_count == 2
    assert Post.objects.get(id=parent.id).replies_count == 1


def test_a_parent_deleted_while_the_reply_is_written_refuses_the_reply_and_writes_nothing(
    alice: User, bob: User, make_post: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent is checked first without a lock, then again by the counter's UPDATE under its
    lock: a delete that commits in between (it does not wait for the reply) wins, and the
    reply's rows all roll back."""
    parent = make_post(bob, "about to go")
    during_writes(
        monkeypatch, lambda: in_other_connection(lambda: post_delete(post=parent, actor=bob))
    )
    with pytest.raises(NotFound) as refused:
        post_create(author=alice, content="too late @bob", parent_id=parent.id)
    assert refused.value.messages == [PARENT_MISSING]
    assert not Post.objects.filter(id=parent.id).exists()
    assert not Post.objects.filter(author=alice).exists()
    assert User.objects.get(id=alice.id).posts_count == 0
    assert not Notification.objects.filter(recipient=bob).exists()
