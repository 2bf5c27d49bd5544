"""Likes and reposts: the services' rules (idempotence, refusals, exact counts), the pages and
forms (htmx and plain), the "Liked by" list, the Likes tab, reposts in For You, and query
counts."""

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from microblog.accounts.models import User
from microblog.accounts.services import user_erase
from microblog.core.errors import Invalid, NotAllowed, NotFound
from microblog.follows.services import follow_create
from microblog.interactions.models import Like, Repost
from microblog.interactions.services import (
    like_create,
    like_delete,
    repost_create,
    repost_delete,
)
from microblog.moderation.models import Block, Mute
from microblog.moderation.services import block_create, mute_create
from microblog.ops.counters import reconcile
from microblog.posts.models import Post
from microblog.posts.services import post_delete
from microblog.timelines.models import RepostEntry
from tests.feeds import feed_ids, pull_ids

MakeUser = Callable[..., User]
MakePost = Callable[..., Post]


def counts(post: Post) -> tuple[int, int]:
    post.refresh_from_db()
    return post.likes_count, post.reposts_count


def hide(post: Post) -> None:
    Post.objects.filter(id=post.id).update(is_hidden=True)


# --- Services ---------------------------------------------------------------------------------


def test_a_double_like_is_one_like(alice: User, bob: User, make_post: MakePost) -> None:
    post = make_post(bob, "like me")
    assert like_create(user=alice, post_id=post.id) is True
    assert like_create(user=alice, post_id=post.id) is False
    assert counts(post) == (1, 0)
    assert Like.objects.filter(post_id=post.id).count() == 1


def test_unlike_when_not_liked_changes_nothing(alice: User, bob: User, make_post: MakePost) -> None:
    post = make_post(bob)
    assert like_delete(user=alice, post_id=post.id) is False
    assert counts(post) == (0, 0)
    like_create(user=alice, post_id=post.id)
    assert like_delete(user=alice, post_id=post.id) is True
    assert like_delete(user=alice, post_id=post.id) is False
    assert counts(post) == (0, 0)


def test_liking_a_post_that_does_not_exist_is_not_found(alice: User) -> None:
    with pytest.raises(NotFound):
        like_create(user=alice, post_id=123456789)
    with pytest.raises(NotFound):
        repost_create(user=alice, post_id=123456789)
    assert not Like.objects.exists() and not Repost.objects.exists()


def test_a_hidden_post_can_be_liked_only_by_its_author_and_staff(
    alice: User, bob: User, make_user: MakeUser, make_post: MakePost
) -> None:
    post = make_post(bob, "hidden soon")
    hide(post)
    with pytest.raises(NotFound):
        like_create(user=alice, post_id=post.id)
    with pytest.raises(NotFound):
        repost_create(user=alice, post_id=post.id)
    assert like_create(user=bob, post_id=post.id) is True
    staff = make_user("staffer", is_staff=True)
    assert like_create(user=staff, post_id=post.id) is True
    assert counts(post) == (2, 0)


def test_a_deleted_posts_placeholder_cannot_be_liked_and_loses_its_likes(
    alice: User, bob: User, make_post: MakePost
) -> None:
    post = make_post(bob, "will be deleted")
    make_post(alice, "a reply keeps it as a placeholder", parent=post)
    like_create(user=alice, post_id=post.id)
    repost_create(user=alice, post_id=post.id)
    post_delete(post=post, actor=bob)
    assert counts(post) == (0, 0)
    assert not Like.objects.exists() and not Repost.objects.exists()
    assert not RepostEntry.objects.exists()
    with pytest.raises(Invalid, match="deleted"):
        like_create(user=alice, post_id=post.id)
    with pytest.raises(Invalid, match="deleted"):
        repost_create(user=alice, post_id=post.id)


def test_a_post_removed_takes_its_likes_and_reposts(
    alice: User, bob: User, make_post: MakePost
) -> None:
    post = make_post(bob)
    like_create(user=alice, post_id=post.id)
    repost_create(user=alice, post_id=post.id)
    post_delete(post=post, actor=bob)
    assert not Like.objects.exists() and not Repost.objects.exists()
    assert not RepostEntry.objects.exists()


def test_the_author_who_blocks_you_refuses_your_like_and_repost(
    alice: User, bob: User, make_post: MakePost
) -> None:
    post = make_post(bob)
    block_create(blocker=bob, blocked=alice)
    with pytest.raises(NotAllowed, match="blocked you"):
        like_create(user=alice, post_id=post.id)
    with pytest.raises(NotAllowed, match="blocked you"):
        repost_create(user=alice, post_id=post.id)
    assert counts(post) == (0, 0)


def test_replies_can_be_liked_but_not_reposted(alice: User, bob: User, make_post: MakePost) -> None:
    reply = make_post(bob, "a reply", parent=make_post(alice))
    assert like_create(user=alice, post_id=reply.id) is True
    with pytest.raises(Invalid, match="Replies can't be reposted"):
        repost_create(user=alice, post_id=reply.id)


def test_a_deleted_account_takes_its_likes_and_reposts_off_the_counts(
    alice: User, bob: User, make_post: MakePost
) -> None:
    post = make_post(bob)
    like_create(user=alice, post_id=post.id)
    repost_create(user=alice, post_id=post.id)
    user_erase(user=alice)
    assert counts(post) == (0, 0)
    assert not RepostEntry.objects.exists()
    assert reconcile(fix=False).drifts == []


def test_reconcile_finds_and_fixes_drifted_like_and_repost_counts(
    alice: User, bob: User, make_post: MakePost
) -> None:
    post = make_post(bob)
    like_create(user=alice, post_id=post.id)
    Post.objects.filter(id=post.id).update(likes_count=5, reposts_count=2)
    drifts = {(d.counter, d.stored, d.actual) for d in reconcile(fix=True).drifts}
    assert drifts == {("post.likes_count", 5, 1), ("post.reposts_count", 2, 0)}
    assert counts(post) == (1, 0)
    assert reconcile(fix=False).drifts == []


# --- Reposts in For You -----------------------------------------------------------------------


def test_a_repost_enters_followers_for_you_once_and_undo_removes_it(
    make_user: MakeUser, make_post: MakePost, client_for: Callable[[User], Client]
) -> None:
    reader, carol, dave, author = (make_user(n) for n in ("reader", "carol", "dave", "author"))
    follow_create(follower=reader, followed=carol)
    follow_create(follower=reader, followed=dave)
    post = make_post(author, "worth passing on")
    repost_create(user=carol, post_id=post.id)
    repost_create(user=dave, post_id=post.id)
    assert feed_ids(reader) == pull_ids(reader) == [post.id]  # once, not twice
    page = client_for(reader).get("/").content.decode()
    assert page.count(f'id="post-{post.id}"') == 1
    assert re.search(r"Reposted by <a[^>]*>(carol|dave)</a>", page)
    assert "2 reposts" in page

    repost_delete(user=carol, post_id=post.id)
    assert feed_ids(reader) == [post.id]  # still reposted by dave
    repost_delete(user=dave, post_id=post.id)
    assert feed_ids(reader) == pull_ids(reader) == []


def test_deleting_the_original_removes_every_repost(
    make_user: MakeUser, make_post: MakePost
) -> None:
    reader, carol, author = (make_user(n) for n in ("reader", "carol", "author"))
    follow_create(follower=reader, followed=carol)
    post = make_post(author)
    repost_create(user=carol, post_id=post.id)
    assert feed_ids(reader) == [post.id]
    post_delete(post=post, actor=author)
    assert feed_ids(reader) == pull_ids(reader) == []
    assert not RepostEntry.objects.exists()


def test_mutes_and_blocks_apply_to_the_reposter_and_to_the_author(
    make_user: MakeUser, make_post: MakePost
) -> None:
    reader, carol, author = (make_user(n) for n in ("reader", "carol", "author"))
    follow_create(follower=reader, followed=carol)
    post = make_post(author)
    repost_create(user=carol, post_id=post.id)
    mute_create(muter=reader, muted=author)
    assert feed_ids(reader) == pull_ids(reader) == []
    Mute.objects.all().delete()
    assert feed_ids(reader) == [post.id]
    mute_create(muter=reader, muted=carol)
    assert feed_ids(reader) == pull_ids(reader) == []
    Mute.objects.all().delete()
    block_create(blocker=reader, blocked=author)
    assert feed_ids(reader) == pull_ids(reader) == []
    Block.objects.all().delete()
    hide(post)
    assert feed_ids(reader) == pull_ids(reader) == []


def test_a_celebritys_repost_is_merged_at_read_time(
    make_user: MakeUser, make_post: MakePost, settings: object
) -> None:
    settings.FANOUT_CELEBRITY_FOLLOWERS = 1  # type: ignore[attr-defined]
    reader, other, star, author = (make_user(n) for n in ("reader", "other", "star", "author"))
    follow_create(follower=reader, followed=star)
    follow_create(follower=other, followed=star)
    assert User.objects.get(id=star.id).is_celebrity
    post = make_post(author)
    repost_create(user=star, post_id=post.id)
    assert not RepostEntry.objects.filter(user_id=reader.id).exists()  # no fan-out
    assert feed_ids(reader) == pull_ids(reader) == [post.id]


# --- Pages and forms --------------------------------------------------------------------------


def test_like_and_repost_with_plain_forms_come_back_with_a_message(
    alice: User, bob: User, make_post: MakePost, client_for: Callable[[User], Client]
) -> None:
    post = make_post(bob, "plain forms")
    client = client_for(alice)
    response = client.post(f"/posts/{post.id}/like", {"next": "/all"}, follow=True)
    assert response.redirect_chain[-1][0] == "/all"
    page = response.content.decode()
    assert "You liked this post." in page
    assert "1 like" in page and ">Unlike<" in page
    response = client.post(f"/posts/{post.id}/repost", {"next": "/all"}, follow=True)
    assert "Undo repost" in response.content.decode()
    client.post(f"/posts/{post.id}/unlike")
    client.post(f"/posts/{post.id}/unrepost")
    assert counts(post) == (0, 0)


def test_htmx_like_answers_the_buttons_and_the_counts_out_of_band(
    alice: User, bob: User, make_post: MakePost, client_for: Callable[[User], Client]
) -> None:
    post = make_post(bob)
    response = client_for(alice).post(f"/posts/{post.id}/like", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="buttons-{post.id}"' in body and ">Unlike<" in body
    assert f'id="counts-{post.id}" hx-swap-oob="true"' in body and "1 like" in body


def test_refusals_are_messages_not_errors(
    alice: User, bob: User, make_post: MakePost, client_for: Callable[[User], Client]
) -> None:
    post = make_post(bob)
    block_create(blocker=bob, blocked=alice)
    client = client_for(alice)
    response = client.post(f"/posts/{post.id}/like", follow=True)
    assert response.status_code == 200
    assert "its author has blocked you" in response.content.decode()
    response = client.post(f"/posts/{post.id}/like", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "its author has blocked you" in response.content.decode()
    assert counts(post) == (0, 0)


@pytest.mark.parametrize(
    "path",
    [
        "/posts/99999999/like",  # no such post
        "/posts/abc/like",  # not an id
        "/posts/99999999999999999999999/like",  # beyond 64 bits
        "/posts/-5/repost",
        "/posts/1%00/like",
    ],
)
def test_bad_ids_are_not_found(
    path: str, alice: User, client_for: Callable[[User], Client]
) -> None:
    assert client_for(alice).post(path).status_code == 404
    assert not Like.objects.exists()


def test_a_hidden_post_is_not_found_for_others(
    alice: User, bob: User, make_post: MakePost, client_for: Callable[[User], Client]
) -> None:
    post = make_post(bob)
    hide(post)
    assert client_for(alice).post(f"/posts/{post.id}/like").status_code == 404
    assert client_for(alice).get(f"/posts/{post.id}/likes").status_code == 404
    response = client_for(alice).post(f"/posts/{post.id}/like", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "doesn&#39;t exist, or you can&#39;t see it" in body
    assert "counts-" not in body and "Unlike" not in body  # nothing of the hidden post


def test_visitors_are_sent_to_log_in_and_get_is_refused(
    client: Client,
    alice: User,
    bob: User,
    make_post: MakePost,
    client_for: Callable[[User], Client],
) -> None:
    post = make_post(bob)
    response = client.post(f"/posts/{post.id}/like")
    assert response.status_code == 302 and "/login" in response["Location"]
    assert client_for(alice).get(f"/posts/{post.id}/like").status_code == 405
    assert counts(post) == (0, 0)


def test_liked_by_lists_likers_newest_first_in_pages(
    make_user: MakeUser, make_post: MakePost, client: Client, settings: object
) -> None:
    settings.PAGE_SIZE = 2  # type: ignore[attr-defined]
    author = make_user("author")
    post = make_post(author)
    likers = [make_user(f"liker{n}") for n in range(3)]
    for liker in likers:
        like_create(user=liker, post_id=post.id)
    first = client.get(f"/posts/{post.id}/likes").content.decode()
    assert re.findall(r'class="author" href="/@(\w+)"', first) == ["liker2", "liker1"]
    cursor = re.search(r'href="\?cursor=(\d+)"', first)
    assert cursor is not None
    second = client.get(f"/posts/{post.id}/likes?cursor={cursor.group(1)}").content.decode()
    assert re.findall(r'class="author" href="/@(\w+)"', second) == ["liker0"]
    assert client.get(f"/posts/{post.id}/likes?cursor=abc").status_code == 400


def test_the_likes_tab_is_ones_own_and_applies_visibility(
    alice: User, bob: User, make_post: MakePost, client_for: Callable[[User], Client]
) -> None:
    kept, hidden = make_post(bob, "still visible"), make_post(bob, "hidden later")
    like_create(user=alice, post_id=kept.id)
    like_create(user=alice, post_id=hidden.id)
    hide(hidden)
    page = client_for(alice).get("/@alice/likes").content.decode()
    assert "still visible" in page and "hidden later" not in page
    assert ">Unlike<" in page
    assert client_for(bob).get("/@alice/likes").status_code == 404
    block_create(blocker=alice, blocked=bob)
    assert "still visible" not in client_for(alice).get("/@alice/likes").content.decode()


def test_for_you_with_likes_and_reposts_costs_no_query_per_post(
    make_user: MakeUser,
    make_post: MakePost,
    client_for: Callable[[User], Client],
    django_assert_num_queries: Callable[[int], object],
) -> None:
    """For You with 5 and with 20 posts, each liked and reposted: one query for the page's
    likes, reposts and "reposted by" labels, whatever the number of posts."""
    reader = make_user("reader")
    carol = make_user("carol")
    follow_create(follower=reader, followed=carol)
    authors = [make_user(f"author{n}") for n in range(20)]
    client = client_for(reader)
    made = 0
    for wanted in (5, 20):
        while made < wanted:
            post = make_post(authors[made], f"post {made}")
            repost_create(user=carol, post_id=post.id)
            like_create(user=reader, post_id=post.id)
            made += 1
        # 1 the session with its user, 2 the feed page, 3 likes, reposts and reposters.
        with django_assert_num_queries(3):  # type: ignore[operator]
            response = client.get("/")
        page = response.content.decode()
        assert page.count("Reposted by") == wanted
        assert page.count(">Unlike<") == wanted


def test_the_cards_state_query_is_compiled_once_not_built_per_request(
    make_user: MakeUser, make_post: MakePost, client_for: Callable[[User], Client]
) -> None:
    """state_for runs through core.sqlcache (building it with the ORM on every request made For
    You cost 1.6x the page before reposts, docs/benchmarks.md), with the page's ids bound as one
    parameter (core.idlist): the same SQL for 3 posts as for a 200-reply thread, so a long
    thread is compiled too and psycopg keeps its conversion of the statement (it caches none
    of over 50 parameters)."""
    from django.db import connection

    from microblog.core import sqlcache
    from microblog.core.idlist import id_list
    from microblog.interactions import selectors

    reader, carol, author = make_user("reader"), make_user("carol"), make_user("author")
    follow_create(follower=reader, followed=carol)
    posts = [make_post(author, f"post {n}") for n in range(3)]
    for post in posts:
        repost_create(user=carol, post_id=post.id)
    like_create(user=reader, post_id=posts[1].id)
    ids = sorted(post.id for post in posts)
    sqlcache.clear()  # one key for any ids: an earlier test's page may have compiled it
    assert not sqlcache.is_compiled(selectors._state_rows_with_reposters, reader.id, id_list(ids))
    page = client_for(reader).get("/").content.decode()
    assert page.count("Reposted by") == 3 and page.count(">Unlike<") == 1
    assert sqlcache.is_compiled(selectors._state_rows_with_reposters, reader.id, id_list(ids))
    many = list(range(1, 200))
    statements: list[tuple[str, Any]] = []

    def record(execute: Any, sql: str, params: Any, many_: bool, context: Any) -> Any:
        statements.append((sql, params))
        return execute(sql, params, many_, context)

    with connection.execute_wrapper(record):
        assert selectors.state_for(reader, [posts[1].id, posts[2].id]).liked == {posts[1].id}
        assert selectors.state_for(reader, [*many, posts[1].id]).liked == {posts[1].id}
    assert sqlcache.is_compiled(selectors._state_rows, reader.id, id_list(many))
    # One statement whatever the number of ids, with a handful of parameters.
    (few_sql, few_params), (many_sql, many_params) = statements
    assert few_sql == many_sql
    assert len(few_params) == len(many_params) <= 12  # the reader, the ids, the columns' constants
