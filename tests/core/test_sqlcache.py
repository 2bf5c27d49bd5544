"""core.sqlcache: hot queries compiled once give exactly what the ORM gives."""

from django.contrib.sessions.models import Session
from django.db.models import QuerySet
from django.test import Client, override_settings

from microblog.accounts.models import User
from microblog.core import sqlcache
from microblog.posts.models import Post


def _posts_of(author_id: int, below: int) -> QuerySet[Post]:
    return (
        Post.objects.select_related("author", "parent__author")
        .filter(author_id=author_id, id__lt=below)
        .order_by("-id")[:3]
    )


def _by_name(username: str) -> QuerySet[User, str]:
    return User.objects.filter(username__iexact=username).values_list("username", flat=True)


def test_same_rows_and_related_objects_as_the_orm(alice, bob, make_post):
    sqlcache.clear()
    made = [make_post(alice, f"alice {n}") for n in range(5)]
    reply = make_post(alice, "a reply", parent=make_post(bob, "bob's post"))
    for author, below in ((alice, reply.id + 1), (alice, made[3].id), (bob, 2**62), (alice, 1)):
        cached = sqlcache.fetch("test.posts_of", _posts_of, author.id, below)
        plain = list(_posts_of(author.id, below))
        assert [p.id for p in cached] == [p.id for p in plain]
        for got, want in zip(cached, plain, strict=True):
            assert got.author.username == want.author.username
            assert got.parent_id == want.parent_id
            assert (got.parent and got.parent.author.username) == (
                want.parent and want.parent.author.username
            )
            assert got.created_at == want.created_at
    assert sqlcache._compiled[("test.posts_of", "default")] is not sqlcache._UNCACHEABLE


def test_values_and_case_insensitive_lookups(alice, make_user):
    sqlcache.clear()
    make_user("a_b")
    make_user("axb")
    # "a_b" must not match "axb": SQLite's LIKE needs the underscore escaped, so the argument is
    # not passed through unchanged there and the key falls back to the ORM; either way, right.
    assert sqlcache.fetch("test.by_name", _by_name, "A_B") == ["a_b"]
    assert sqlcache.fetch("test.by_name", _by_name, "ALICE") == ["alice"]
    assert sqlcache.fetch("test.by_name", _by_name, "nobody") == []


def test_a_changed_setting_forgets_compiled_queries(alice):
    sqlcache.fetch("test.by_name", _by_name, "alice")
    assert sqlcache._compiled
    with override_settings(PAGE_SIZE=7):
        assert not sqlcache._compiled


def test_session_and_user_lookups_end_with_logout_and_password_change(alice):
    """The session store and the auth backend read through compiled queries; logging out in one
    client ends that session for every process at once (the database is the only store)."""
    one, two = Client(), Client()
    one.force_login(alice)
    two.force_login(alice)
    assert one.get("/settings").status_code == 200
    key = one.cookies["sessionid"].value
    one.post("/logout")
    assert not Session.objects.filter(session_key=key).exists()
    stale = Client()
    stale.cookies["sessionid"] = key
    assert stale.get("/settings").status_code == 302
    assert two.get("/settings").status_code == 200
    alice.set_password("a-new-password-123")
    alice.save()
    assert two.get("/settings").status_code == 302


def test_the_query_count_does_not_change(alice, client_for, django_assert_num_queries):
    client = client_for(alice)
    client.get("/")
    # 1 the session, 2 the user (as with Django's own store and backend), 3 the page's posts.
    with django_assert_num_queries(3):
        assert client.get("/").status_code == 200


def test_the_session_and_user_lookups_are_compiled_once(alice, client_for):
    from django.db import connection

    sqlcache.clear()
    client = client_for(alice)
    assert client.get("/").status_code == 200
    assert sqlcache._compiled[("accounts.user_by_id", "default")] is not sqlcache._UNCACHEABLE
    if connection.vendor == "postgresql":
        # SQLite gets datetimes as text, so the session's expiry is not found as passed: that
        # key falls back to the ORM there (correct, only not faster).
        assert sqlcache._compiled[("sessions.live", "default")] is not sqlcache._UNCACHEABLE


def test_the_hot_page_queries_are_compiled_once(alice, bob, make_user, make_post, client_for):
    """For You, profiles (for each kind of viewer) and the relationship query really use the
    compiled path: if one fell back to the ORM, it would still be right, only slower."""
    from django.test import Client

    from microblog.follows.services import follow_create

    sqlcache.clear()
    staff = make_user("moderator", is_staff=True)
    follow_create(follower=alice, followed=bob)
    post = make_post(bob, "hello")
    make_post(alice, "a reply", parent=post)
    for client in (client_for(alice), client_for(staff), Client()):
        assert client.get("/@bob").status_code == 200
        assert client.get(f"/posts/{post.id}").status_code == 200
    assert client_for(alice).get("/").status_code == 200
    size = 20
    for key in (
        f"timelines.for_you.{size}",
        f"timelines._profile_for_users.{size}",
        f"timelines._profile_for_staff.{size}",
        f"timelines._profile_for_visitors.{size}",
        "moderation.relationship",
        "posts._post",
        "posts._post_for_user",
        "posts._post_for_staff",
        f"posts._replies_for_users.{size}",
        f"posts._replies_for_staff.{size}",
        f"posts._replies_for_visitors.{size}",
    ):
        assert sqlcache._compiled[(key, "default")] is not sqlcache._UNCACHEABLE, key
