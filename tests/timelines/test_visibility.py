"""timelines.visibility: where a rule is written twice (SQL and Python, the ORM and Python), the
two versions agree, and the stream's filter is the pages' rule."""

from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.db import connection

from microblog.accounts.models import User
from microblog.follows.services import follow_create
from microblog.moderation.services import block_create, mute_create, review
from microblog.posts.models import Post
from microblog.posts.services import post_delete
from microblog.stream.app import Subscription
from microblog.stream.events import CountEvent
from microblog.timelines import visibility
from microblog.timelines.fanout import FEED
from microblog.timelines.models import FeedEntry


def test_staff_thread_streams_get_the_counts_of_hidden_replies_they_see() -> None:
    """Staff see hidden replies on a thread page (marked), so their thread stream keeps those
    replies' counts current too; before, it left them out, unlike the page."""
    hidden_reply = CountEvent(post=6, replies=1, author=2, parent=5, hidden=True)
    staff = Subscription(User(id=1, is_staff=True), "thread", 5)
    reader = Subscription(User(id=1), "thread", 5)
    assert staff.wants(hidden_reply)
    assert not reader.wants(hidden_reply)


def _world(make_user: Callable[..., User], make_post: Callable[..., Post]) -> tuple[User, User]:
    """A reader who follows b, c and d, mutes c, blocks e; hidden and visible posts by each, and
    a stored entry for every top-level post (stale ones included, as fan-out may leave them
    until the next read filters them)."""
    reader, b, c, d, e = (make_user() for _ in range(5))
    staff = make_user(is_staff=True)
    for followed in (b, c, d):
        follow_create(follower=reader, followed=followed)
    mute_create(muter=reader, muted=c)
    block_create(blocker=reader, blocked=e)
    for author in (reader, b, c, d, e):
        shown = make_post(author)
        hidden = make_post(author)
        review(staff=staff, post_id=hidden.id, action="hide")
        make_post(author, parent=shown)  # a reply: in Following, not in For You
    kept = make_post(d)
    make_post(b, parent=kept)
    post_delete(post=kept, actor=d)  # a placeholder: on no list but its thread
    FeedEntry.objects.bulk_create(
        [
            FeedEntry(user_id=reader.id, post_id=p.id, author_id=p.author_id)
            # Not the placeholder: its entries go in the delete's own transaction and no fan-out
            # adds them again (fanout.fan_out_post checks stored_in_feeds under its lock).
            for p in Post.objects.filter(parent=None, is_deleted=False)
        ],
        ignore_conflicts=True,
    )
    return reader, staff


def test_for_you_sql_orm_and_python_agree(
    make_user: Callable[..., User], make_post: Callable[..., Post]
) -> None:
    reader, _ = _world(make_user, make_post)
    heard = frozenset(visibility.heard_ids(reader))
    posts = list(Post.objects.values_list("id", "author_id", "parent_id", "is_hidden"))
    python = {
        i
        for i, a, p, h in posts
        if visibility.for_you_shows(reader.id, heard, author=a, parent=p, hidden=h)
    }
    orm = set(Post.objects.filter(visibility.for_you(reader)).values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.post_id FROM {FEED} e WHERE e.user_id = %s "
            f"AND {visibility.stored_entry_shown_sql('e')}",
            [reader.id],
        )
        sql = {row[0] for row in cursor.fetchall()}
    assert python == orm == sql
    assert len(python) == 4  # the reader's two (one hidden), b's and d's visible ones


def test_following_and_pages_orm_and_python_agree(
    make_user: Callable[..., User], make_post: Callable[..., Post]
) -> None:
    reader, staff = _world(make_user, make_post)
    posts = list(Post.objects.values_list("id", "author_id", "parent_id", "is_hidden"))
    heard = frozenset(visibility.heard_ids(reader))
    python = {i for i, a, _, h in posts if visibility.following_shows(heard, author=a, hidden=h)}
    orm = set(Post.objects.filter(visibility.following(reader)).values_list("id", flat=True))
    assert python == orm and python
    for viewer in (reader, staff, AnonymousUser()):
        viewer_id = viewer.id if viewer.is_authenticated else None
        blocked = frozenset(visibility.blocked_ids(viewer_id)) if viewer_id else frozenset()
        python = {
            i
            for i, a, _, h in posts
            if visibility.on_pages_shows(
                viewer_id, blocked, staff=viewer.is_staff, author=a, hidden=h
            )
        }
        orm = set(Post.objects.filter(visibility.on_pages(viewer)).values_list("id", flat=True))
        assert python == orm and python, viewer
        opened = {p.id for p in Post.objects.all() if visibility.can_see(viewer, p)}
        assert python <= opened  # blocked accounts' posts open (withheld), pages leave them out


def test_all_orm_and_python_agree(
    make_user: Callable[..., User], make_post: Callable[..., Post]
) -> None:
    """everyone_shows (the client API's public stream) is everyone() for one post that is not a
    placeholder: top-level, visible or the reader's own, not by an account they block or mute."""
    reader, staff = _world(make_user, make_post)
    posts = list(
        Post.objects.filter(is_deleted=False).values_list(
            "id", "author_id", "parent_id", "is_hidden"
        )
    )
    for viewer in (reader, staff, AnonymousUser()):
        viewer_id = viewer.id if viewer.is_authenticated else None
        excluded = frozenset(visibility.excluded_from_feeds(viewer_id) if viewer_id else ())
        python = {
            i
            for i, a, p, h in posts
            if visibility.everyone_shows(viewer_id, excluded, author=a, parent=p, hidden=h)
        }
        orm = set(Post.objects.filter(visibility.everyone(viewer)).values_list("id", flat=True))
        assert python == orm and python, viewer
    reader_sees = {
        i
        for i, a, p, h in posts
        if visibility.everyone_shows(
            reader.id,
            frozenset(visibility.excluded_from_feeds(reader.id)),
            author=a,
            parent=p,
            hidden=h,
        )
    }
    assert len(reader_sees) == 4  # the reader's two (one hidden), b's and d's visible ones


def test_stored_in_feeds_sql_and_python_agree(
    make_user: Callable[..., User], make_post: Callable[..., Post]
) -> None:
    _world(make_user, make_post)
    rows = list(Post.objects.values_list("id", "parent_id", "is_deleted"))
    python = {i for i, p, d in rows if visibility.stored_in_feeds(parent_id=p, is_deleted=d)}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.id FROM {Post._meta.db_table} p WHERE {visibility.stored_in_feeds_sql('p')}"
        )
        sql = {row[0] for row in cursor.fetchall()}
    assert python == sql and python
