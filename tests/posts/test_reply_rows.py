"""posts.selectors.posts_from_rows: a thread's first-level replies and a profile's posts, read
as rows and made into objects without Model.__init__, are the objects the ORM gives (fields,
annotations, the author with only its username loaded or the profile's user, the database,
saved state), and behave as such."""

from typing import Any

import pytest
from django.db.models import signals

from microblog.accounts.services import user_erase
from microblog.core import sqlcache
from microblog.moderation.services import review
from microblog.posts import selectors
from microblog.posts.models import Post
from microblog.posts.selectors import posts_from_rows, with_card_authors, with_reply_counts
from microblog.timelines import selectors as timelines
from microblog.timelines.visibility import on_pages_for


def _orm_replies(post_id: int, visible: Any) -> list[Post]:
    """The first level as the ORM loaded it before (select_related, deferred author columns)."""
    replies = with_reply_counts(
        with_card_authors(Post.objects.filter(visible, parent_id=post_id)), visible
    )
    return list(replies.order_by("id"))


def _reply_posts(rows: list[Any]) -> list[Post]:
    return posts_from_rows(rows, "default", annotations=("visible_replies",), author_names=True)


def _picture(post: Post) -> Any:
    author = post._state.fields_cache["author"]
    return (
        {k: v for k, v in vars(post).items() if k != "_state"},
        (post._state.db, post._state.adding),
        None
        if author is None
        else (
            {k: v for k, v in vars(author).items() if k != "_state"},
            author.get_deferred_fields(),
            (author._state.db, author._state.adding),
        ),
    )


@pytest.fixture
def thread(alice, bob, make_user, make_user_staff, make_post) -> dict[str, Any]:
    top = make_post(alice, "the top")
    make_post(bob, "a reply", parent=top)
    answered = make_post(alice, "answered", parent=top)
    make_post(bob, "an answer", parent=answered)
    hidden = make_post(bob, "hidden", parent=top)
    review(staff=make_user_staff, post_id=hidden.id, action="hide")
    leaving = make_user("leaving")
    make_post(leaving, "by an account about to go", parent=top)
    user_erase(user=leaving)
    return {"top": top, "viewers": [None, alice.id, bob.id]}


@pytest.fixture
def make_user_staff(make_user):
    return make_user("moderator", is_staff=True)


@pytest.mark.parametrize("init_receiver", [False, True], ids=["direct", "with post_init"])
def test_reply_rows_become_the_orms_objects(thread, init_receiver):
    seen: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(sender)

    if init_receiver:
        signals.post_init.connect(receiver, sender=Post)
    try:
        for viewer_id in thread["viewers"]:
            visible = on_pages_for(viewer_id)
            rows = list(selectors._replies(thread["top"].id, 0, visible))
            built = _reply_posts(rows)
            expected = _orm_replies(thread["top"].id, visible)
            assert [_picture(p) for p in built] == [_picture(p) for p in expected]
            assert any(p.author is None for p in built)
            assert any(p.reply_count == 1 for p in built)
    finally:
        signals.post_init.disconnect(receiver, sender=Post)
    assert bool(seen) is init_receiver  # a receiver still hears every object made


def test_reply_objects_behave_as_loaded_ones(thread, bob, django_assert_num_queries):
    rows = sqlcache.fetch(selectors._replies_for_users, thread["top"].id, 0, bob.id)
    (first, *_) = _reply_posts(rows)
    assert first == Post.objects.get(id=first.id)
    assert first.author is not None and first.author.username == "bob"
    # A deferred column of the author loads on access, as with the ORM's object.
    with django_assert_num_queries(1):
        assert first.author.followers_count == 0
    first.content = "changed"
    first.save(update_fields=["content"])  # an UPDATE: the object is not "adding"
    assert Post.objects.get(id=first.id).content == "changed"


@pytest.mark.parametrize("init_receiver", [False, True], ids=["direct", "with post_init"])
def test_profile_rows_become_the_orms_objects(
    alice, bob, make_post, make_user_staff, init_receiver
):
    """A profile's posts: the ORM's objects, each with the profile's user as its author."""
    posts = [make_post(bob, f"post {n}") for n in range(3)]
    make_post(bob, "a reply", parent=posts[0])  # not on profiles
    review_hidden = make_post(bob, "hidden")
    review(staff=make_user_staff, post_id=review_hidden.id, action="hide")

    def receiver(sender: Any, **kwargs: Any) -> None:
        pass

    if init_receiver:
        signals.pre_init.connect(receiver, sender=Post)
    try:
        for viewer_id, build, args in (
            (None, timelines._profile_for_visitors, ()),
            (alice.id, timelines._profile_for_users, (alice.id,)),
            (bob.id, timelines._profile_for_users, (bob.id,)),
        ):
            built = timelines.profile(bob, _viewer(viewer_id), None).items
            expected = list(
                Post.objects.filter(
                    on_pages_for(viewer_id), parent__isnull=True, author_id=bob.id
                ).order_by("-id")
            )
            for post in expected:
                post.author = bob
            assert [_picture(p) for p in built] == [_picture(p) for p in expected]
            assert all(p.author is bob for p in built)
            assert sqlcache.is_compiled(build, bob.id, 1, *args)
    finally:
        signals.pre_init.disconnect(receiver, sender=Post)


def _viewer(user_id: int | None) -> Any:
    from django.contrib.auth.models import AnonymousUser

    from microblog.accounts.models import User

    return AnonymousUser() if user_id is None else User.objects.get(id=user_id)


def test_rows_without_author_names_or_author_leave_the_author_to_load(alice, make_post):
    """Neither `author_names` nor `author`: the author is not known, so it is not cached as
    None (a deleted account's post) but loaded on use, as for a post the ORM read alone."""
    post = make_post(alice, "mine")
    rows = list(Post.objects.filter(id=post.id).values_list(*selectors.POST_COLUMNS))
    (made,) = posts_from_rows(rows, "default")
    assert made.author_id == alice.id
    assert made.author == alice
    signals.post_init.connect(_noop, sender=Post)
    try:
        (made,) = posts_from_rows(rows, "default")
    finally:
        signals.post_init.disconnect(_noop, sender=Post)
    assert made.author == alice


def _noop(**kwargs: Any) -> None:
    pass
