"""Request tests of the client API's likes and reposts (Mastodon's favourites and reblogs): each
endpoint's answer, scopes, 404s for posts the reader may not see, 422s, pagination, the
per-reader flags and reblog wrappers in timelines, tags and mentions in Status, query counts,
and the expiry of Idempotency-Keys."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from microblog import jobs
from microblog.accounts.models import User
from microblog.api.models import IdempotentStatus
from microblog.follows.services import follow_create
from microblog.interactions.models import Like, Repost
from microblog.interactions.services import like_create, repost_create
from microblog.moderation.services import block_create
from microblog.posts.models import Post
from microblog.posts.services import post_delete

Api = Callable[..., Client]


@pytest.fixture
def carol(make_user: Callable[..., User]) -> User:
    return make_user("carol")


def next_link(response: Any) -> str | None:
    for part in response.get("Link", "").split(","):
        if 'rel="next"' in part:
            return part.split(";")[0].strip().strip("<>")
    return None


# --- favourite / unfavourite ----------------------------------------------------------------


def test_favourite_and_unfavourite(alice: User, bob: User, make_post: Any, api_for: Api) -> None:
    post = make_post(bob, "likeable")
    api = api_for(alice)
    liked = api.post(f"/api/v1/statuses/{post.id}/favourite")
    assert liked.status_code == 200
    assert liked.json()["id"] == str(post.id)
    assert liked.json()["favourited"] is True
    assert liked.json()["favourites_count"] == 1
    # A second favourite changes nothing (one like per account and post).
    assert api.post(f"/api/v1/statuses/{post.id}/favourite").json()["favourites_count"] == 1
    assert Like.objects.filter(user=alice, post=post).count() == 1
    unliked = api.post(f"/api/v1/statuses/{post.id}/unfavourite")
    assert unliked.status_code == 200
    assert unliked.json()["favourited"] is False
    assert unliked.json()["favourites_count"] == 0
    assert not Like.objects.exists()


def test_favourite_needs_write_favourites(
    alice: User, bob: User, make_post: Any, api_for: Api
) -> None:
    post = make_post(bob, "p")
    assert Client().post(f"/api/v1/statuses/{post.id}/favourite").status_code == 401
    assert api_for(alice, "read").post(f"/api/v1/statuses/{post.id}/favourite").status_code == 403
    statuses_only = api_for(alice, "write:statuses")
    assert statuses_only.post(f"/api/v1/statuses/{post.id}/favourite").status_code == 403
    assert statuses_only.post(f"/api/v1/statuses/{post.id}/unfavourite").status_code == 403
    granular = api_for(alice, "write:favourites")
    assert granular.post(f"/api/v1/statuses/{post.id}/favourite").status_code == 200
    assert not Like.objects.filter(user=alice).exclude(post=post).exists()


def test_posts_the_reader_may_not_see_are_404(
    alice: User, bob: User, carol: User, make_post: Any, api_for: Api
) -> None:
    hidden = make_post(bob, "hidden")
    Post.objects.filter(id=hidden.id).update(is_hidden=True)
    deleted = make_post(bob, "deleted")
    post_delete(post=deleted, actor=bob)
    blocking = make_post(carol, "carol blocks alice")
    block_create(blocker=carol, blocked=alice)
    api = api_for(alice)
    for post_id in (hidden.id, deleted.id, blocking.id, 999):
        for verb in ("favourite", "unfavourite", "reblog", "unreblog"):
            response = api.post(f"/api/v1/statuses/{post_id}/{verb}")
            assert response.status_code == 404, (post_id, verb)
            assert response.json() == {"error": "Record not found"}
        for listing in ("favourited_by", "reblogged_by"):
            assert api.get(f"/api/v1/statuses/{post_id}/{listing}").status_code == 404
    assert not Like.objects.exists() and not Repost.objects.exists()
    # The hidden post's author still sees and likes it, as on its page.
    assert api_for(bob).post(f"/api/v1/statuses/{hidden.id}/favourite").status_code == 200


# --- reblog / unreblog ----------------------------------------------------------------------


def test_reblog_answers_the_wrapper_and_unreblog_the_post(
    alice: User, bob: User, make_post: Any, api_for: Api
) -> None:
    post = make_post(bob, "worth sharing #news")
    api = api_for(alice)
    response = api.post(f"/api/v1/statuses/{post.id}/reblog")
    assert response.status_code == 200
    wrapper = response.json()
    repost = Repost.objects.get(user=alice, post=post)
    assert wrapper["id"] == str(repost.id)
    assert wrapper["account"]["username"] == "alice"
    assert wrapper["content"] == ""
    assert wrapper["tags"] == [] and wrapper["mentions"] == []
    assert wrapper["reblogged"] is True
    assert wrapper["reblog"]["id"] == str(post.id)
    assert wrapper["reblog"]["account"]["username"] == "bob"
    assert wrapper["reblog"]["reblogs_count"] == 1
    assert wrapper["reblog"]["reblogged"] is True
    assert wrapper["reblog"]["tags"][0]["name"] == "news"
    # Reblogging again changes nothing and answers the same wrapper.
    assert api.post(f"/api/v1/statuses/{post.id}/reblog").json()["id"] == wrapper["id"]
    # Favouriting the reblog (its own id) favourites the post, as on Mastodon.
    via_wrapper = api.post(f"/api/v1/statuses/{repost.id}/favourite")
    assert via_wrapper.json()["id"] == str(post.id) and via_wrapper.json()["favourited"] is True
    assert [
        a["username"] for a in api.get(f"/api/v1/statuses/{repost.id}/reblogged_by").json()
    ] == ["alice"]
    undone = api.post(f"/api/v1/statuses/{post.id}/unreblog")
    assert undone.status_code == 200
    assert undone.json()["id"] == str(post.id)
    assert undone.json()["reblogged"] is False
    assert undone.json()["reblogs_count"] == 0
    assert not Repost.objects.exists()


def test_a_reblog_is_read_and_deleted_by_its_own_id(
    alice: User, bob: User, carol: User, make_post: Any, api_for: Api
) -> None:
    """GET /api/v1/statuses/<a reblog's id> answers the wrapper the home timeline showed under
    that id; DELETE of one's own reblog undoes the repost (as POST :id/unreblog), another
    account's reblog is not theirs to delete; a reblog by an account the reader blocks, or of a
    post since deleted, is not found."""
    post = make_post(bob, "worth sharing")
    alice_api = api_for(alice)
    wrapper = alice_api.post(f"/api/v1/statuses/{post.id}/reblog").json()
    shown = Client().get(f"/api/v1/statuses/{wrapper['id']}")
    assert shown.status_code == 200
    assert shown.json()["id"] == wrapper["id"]
    assert shown.json()["account"]["username"] == "alice"
    assert shown.json()["reblog"]["id"] == str(post.id)
    # Not carol's reblog: she cannot delete it, and nothing changes.
    assert api_for(carol).delete(f"/api/v1/statuses/{wrapper['id']}").status_code == 404
    assert Repost.objects.filter(user=alice, post=post).exists()
    # Carol blocks alice: alice's reblog is not shown to her.
    block_create(blocker=carol, blocked=alice)
    assert api_for(carol).get(f"/api/v1/statuses/{wrapper['id']}").status_code == 404
    deleted = alice_api.delete(f"/api/v1/statuses/{wrapper['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["id"] == wrapper["id"]
    assert not Repost.objects.filter(user=alice, post=post).exists()
    assert Post.objects.get(id=post.id).reposts_count == 0
    assert Client().get(f"/api/v1/statuses/{wrapper['id']}").status_code == 404
    # A reblog of a post deleted since: not found.
    again = alice_api.post(f"/api/v1/statuses/{post.id}/reblog").json()
    post_delete(post=Post.objects.get(id=post.id), actor=bob)
    assert Client().get(f"/api/v1/statuses/{again['id']}").status_code == 404


def test_reblog_scopes_and_refusals(alice: User, bob: User, make_post: Any, api_for: Api) -> None:
    post = make_post(bob, "root")
    reply = make_post(bob, "a reply", parent=post)
    assert Client().post(f"/api/v1/statuses/{post.id}/reblog").status_code == 401
    favourites_only = api_for(alice, "write:favourites")
    assert favourites_only.post(f"/api/v1/statuses/{post.id}/reblog").status_code == 403
    assert favourites_only.post(f"/api/v1/statuses/{post.id}/unreblog").status_code == 403
    api = api_for(alice, "write:statuses")
    refused = api.post(f"/api/v1/statuses/{reply.id}/reblog")
    assert refused.status_code == 422
    assert "Replies can't be reposted" in refused.json()["error"]
    assert api.post(f"/api/v1/statuses/{post.id}/reblog").status_code == 200


# --- favourited_by, reblogged_by, favourites ------------------------------------------------


def test_favourited_and_reblogged_by_page_with_link_headers(
    alice: User, make_user: Callable[..., User], make_post: Any
) -> None:
    post = make_post(alice, "popular")
    fans = [make_user(f"fan{n}") for n in range(5)]
    for fan in fans:
        like_create(user=fan, post_id=post.id)
        repost_create(user=fan, post_id=post.id)
    newest_first = [fan.username for fan in reversed(fans)]
    for listing in ("favourited_by", "reblogged_by"):
        first = Client().get(f"/api/v1/statuses/{post.id}/{listing}", {"limit": 2})
        assert first.status_code == 200
        assert [a["username"] for a in first.json()] == newest_first[:2]
        seen = [a["username"] for a in first.json()]
        link = next_link(first)
        while link is not None:
            page = Client().get(link)
            seen += [a["username"] for a in page.json()]
            link = next_link(page)
        assert seen == newest_first, listing


def test_favourited_by_leaves_out_blocked_accounts(
    alice: User, bob: User, carol: User, make_post: Any, api_for: Api
) -> None:
    post = make_post(alice, "p")
    like_create(user=bob, post_id=post.id)
    like_create(user=carol, post_id=post.id)
    block_create(blocker=alice, blocked=carol)
    names = [
        a["username"]
        for a in api_for(alice).get(f"/api/v1/statuses/{post.id}/favourited_by").json()
    ]
    assert names == ["bob"]
    # With a token whose scope does not cover reading statuses: 403.
    scoped = api_for(alice, "write")
    assert scoped.get(f"/api/v1/statuses/{post.id}/favourited_by").status_code == 403
    assert scoped.get(f"/api/v1/statuses/{post.id}/reblogged_by").status_code == 403


def test_favourites_newest_like_first_paged_by_like(
    alice: User, bob: User, make_post: Any, api_for: Api
) -> None:
    posts = [make_post(bob, f"p{n}") for n in range(5)]
    # Liked in an order that is not the posts' order: the list follows the likes.
    order = [posts[2], posts[0], posts[4], posts[1], posts[3]]
    for post in order:
        like_create(user=alice, post_id=post.id)
    expected = [str(p.id) for p in reversed(order)]
    api = api_for(alice)
    first = api.get("/api/v1/favourites", {"limit": 2})
    assert first.status_code == 200
    assert [s["id"] for s in first.json()] == expected[:2]
    assert all(s["favourited"] for s in first.json())
    link = next_link(first)
    assert link is not None and "max_id=" in link
    # The cursor is the like's id, not the status's.
    cursor = link.split("max_id=")[1].split("&")[0]
    assert int(cursor) == Like.objects.get(user=alice, post=order[-2]).id
    seen = [s["id"] for s in first.json()]
    while link is not None:
        page = api.get(link)
        seen += [s["id"] for s in page.json()]
        link = next_link(page)
    assert seen == expected
    # A post hidden since it was liked leaves the list (the Likes tab's rule).
    Post.objects.filter(id=order[0].id).update(is_hidden=True)
    assert str(order[0].id) not in [s["id"] for s in api.get("/api/v1/favourites").json()]


def test_favourites_needs_a_user_token_with_read_favourites(alice: User, api_for: Api) -> None:
    assert Client().get("/api/v1/favourites").status_code == 401
    assert api_for(alice, "read:statuses").get("/api/v1/favourites").status_code == 403
    assert api_for(alice, "read:favourites").get("/api/v1/favourites").json() == []
    assert api_for(None, "read").get("/api/v1/favourites").status_code == 422


# --- the reader's flags, reblogs in home, tags and mentions ---------------------------------


def test_flags_are_the_token_users(alice: User, bob: User, make_post: Any, api_for: Api) -> None:
    post = make_post(bob, "p")
    other = make_post(bob, "q")
    like_create(user=alice, post_id=post.id)
    repost_create(user=alice, post_id=other.id)
    mine = {s["id"]: s for s in api_for(alice).get("/api/v1/timelines/public").json()}
    assert mine[str(post.id)]["favourited"] is True
    assert mine[str(post.id)]["reblogged"] is False
    assert mine[str(other.id)]["favourited"] is False
    assert mine[str(other.id)]["reblogged"] is True
    assert mine[str(post.id)]["favourites_count"] == 1
    assert mine[str(other.id)]["reblogs_count"] == 1
    for status in Client().get("/api/v1/timelines/public").json():
        assert status["favourited"] is False and status["reblogged"] is False
    for status in api_for(bob).get("/api/v1/timelines/public").json():
        assert status["favourited"] is False and status["reblogged"] is False
    detail = api_for(alice).get(f"/api/v1/statuses/{post.id}").json()
    assert detail["favourited"] is True


def test_home_shows_reposts_as_reblogs_and_pages_through_them(
    alice: User, bob: User, carol: User, make_post: Any, api_for: Api
) -> None:
    follow_create(follower=alice, followed=bob)
    before = make_post(bob, "bob before")
    carols = make_post(carol, "carol's post")
    after = [make_post(bob, f"bob after {n}") for n in range(3)]
    # Bob reposts carol's post after writing his: it stands at its own time in For You.
    repost_create(user=bob, post_id=carols.id)
    repost = Repost.objects.get(user=bob, post=carols)
    api = api_for(alice)
    home = api.get("/api/v1/timelines/home").json()
    ids = [s["id"] for s in home]
    assert ids == [str(p.id) for p in reversed(after)] + [str(repost.id), str(before.id)]
    wrapper = home[3]
    assert wrapper["account"]["username"] == "bob"
    assert wrapper["reblog"]["id"] == str(carols.id)
    assert wrapper["reblog"]["account"]["username"] == "carol"
    assert wrapper["content"] == ""
    assert wrapper["created_at"] > wrapper["reblog"]["created_at"]
    # A client paging from the ids it was shown: max_id = the wrapper's id is older than the
    # wrapper's place, since_id = it is newer; no post repeated, none skipped.
    older = api.get("/api/v1/timelines/home", {"max_id": repost.id}).json()
    assert [s["id"] for s in older] == [str(before.id)]
    newer = api.get("/api/v1/timelines/home", {"since_id": repost.id}).json()
    assert [s["id"] for s in newer] == [str(p.id) for p in reversed(after)]
    forward = api.get("/api/v1/timelines/home", {"min_id": repost.id, "limit": 1}).json()
    assert [s["id"] for s in forward] == [str(after[0].id)]
    # The Link headers carry the post ids: following them pages exactly.
    first = api.get("/api/v1/timelines/home", {"limit": 4})
    assert f"max_id={carols.id}" in first["Link"]
    assert [s["id"] for s in api.get(next_link(first)).json()] == [str(before.id)]
    # The reader's own repost is a reblog by them.
    mine = make_post(carol, "another")
    repost_create(user=alice, post_id=mine.id)
    top = api.get("/api/v1/timelines/home", {"limit": 1}).json()[0]
    assert top["account"]["username"] == "alice" and top["reblog"]["id"] == str(mine.id)
    assert top["reblogged"] is True and top["reblog"]["reblogged"] is True
    # All (public) has no reblogs: the posts themselves.
    public_ids = [s["id"] for s in api.get("/api/v1/timelines/public").json()]
    assert str(carols.id) in public_ids and str(repost.id) not in public_ids


def test_a_post_reposted_by_several_is_one_reblog_by_the_first(
    alice: User,
    bob: User,
    carol: User,
    make_user: Callable[..., User],
    make_post: Any,
    api_for: Api,
) -> None:
    dave = make_user("dave")
    follow_create(follower=alice, followed=bob)
    follow_create(follower=alice, followed=dave)
    post = make_post(carol, "shared twice")
    repost_create(user=dave, post_id=post.id)
    repost_create(user=bob, post_id=post.id)
    first = Repost.objects.get(user=dave, post=post)
    api = api_for(alice)
    for _ in range(2):  # the same wrapper on every read
        home = api.get("/api/v1/timelines/home").json()
        assert [(s["id"], s["account"]["username"]) for s in home] == [(str(first.id), "dave")]


def test_tags_and_mentions_in_status(alice: User, bob: User, make_post: Any, api_for: Api) -> None:
    post = make_post(alice, "Hi @bob and @nobody, see #Python and #django_tips")
    status = Client().get(f"/api/v1/statuses/{post.id}").json()
    assert status["tags"] == [
        {"name": "python", "url": "http://testserver/tags/python"},
        {"name": "django_tips", "url": "http://testserver/tags/django_tips"},
    ]
    assert status["mentions"] == [
        {"id": str(bob.id), "username": "bob", "acct": "bob", "url": "http://testserver/@bob"}
    ]
    public = Client().get("/api/v1/timelines/public").json()
    assert public[0]["mentions"][0]["id"] == str(bob.id)
    assert [t["name"] for t in public[0]["tags"]] == ["python", "django_tips"]


# --- query counts ---------------------------------------------------------------------------


def test_query_counts_with_likes_reposts_tags_and_mentions(
    alice: User,
    bob: User,
    carol: User,
    make_post: Any,
    api_for: Api,
    django_assert_num_queries: Any,
) -> None:
    follow_create(follower=alice, followed=bob)
    for n in range(25):
        post = make_post(bob, f"post {n} #tag{n % 3} @carol")
        if n % 2:
            like_create(user=alice, post_id=post.id)
        if n % 5 == 0:
            repost_create(user=carol, post_id=post.id)
    for n in range(5):
        shared = make_post(carol, f"carol {n} @alice")
        repost_create(user=bob, post_id=shared.id)
    api = api_for(alice)
    # The token; the page (stored feed ids + posts with the columns of their authors a card
    # shows); one query of accounts (the page's authors whole, the reposters of its reblogs and
    # the accounts it mentions); the reader's likes and reposts of the page and who of those
    # they hear reposted each (state_for): the pin of before plus state_for.
    with django_assert_num_queries(4):
        home = api.get("/api/v1/timelines/home").json()
    assert len(home) == 20
    assert any(s["reblog"] for s in home) and any(s["favourited"] for s in home)
    assert any(s["mentions"] for s in home if not s["reblog"])
    # Profile: the token, the account, the page (authors in part, as home), the accounts,
    # state_for (4 before state_for).
    with django_assert_num_queries(5):
        profile = api.get(f"/api/v1/accounts/{bob.id}/statuses").json()
    assert len(profile) == 20 and profile[0]["mentions"][0]["username"] == "carol"
    # Without a token: the account, the page, the accounts; no state.
    with django_assert_num_queries(3):
        assert len(Client().get(f"/api/v1/accounts/{bob.id}/statuses").json()) == 20
    # All reads its authors whole: the token, the page, state_for, and the mentioned accounts
    # (only on a page that mentions someone).
    with django_assert_num_queries(4):
        assert len(api.get("/api/v1/timelines/public").json()) == 20
    with django_assert_num_queries(2):
        assert len(Client().get("/api/v1/timelines/public").json()) == 20


# --- Idempotency-Key expiry -----------------------------------------------------------------


def test_an_expired_idempotency_key_posts_again(alice: User, api_for: Api, settings: Any) -> None:
    api = api_for(alice)
    first = api.post("/api/v1/statuses", {"status": "once"}, HTTP_IDEMPOTENCY_KEY="k")
    retry = api.post("/api/v1/statuses", {"status": "once"}, HTTP_IDEMPOTENCY_KEY="k")
    assert retry.json()["id"] == first.json()["id"]
    # An hour later (Mastodon's expiry, API_IDEMPOTENCY_HOURS) the key is forgotten.
    assert settings.API_IDEMPOTENCY_HOURS == 1
    IdempotentStatus.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    later = api.post("/api/v1/statuses", {"status": "once"}, HTTP_IDEMPOTENCY_KEY="k")
    assert later.status_code == 200
    assert later.json()["id"] != first.json()["id"]
    assert Post.objects.filter(content="once").count() == 2
    # Within the hour of the new use, the key answers the new post.
    IdempotentStatus.objects.update(created_at=timezone.now() - timedelta(minutes=59))
    again = api.post("/api/v1/statuses", {"status": "once"}, HTTP_IDEMPOTENCY_KEY="k")
    assert again.json()["id"] == later.json()["id"]


def test_expired_idempotency_keys_are_pruned_by_the_maintenance_job(
    alice: User, bob: User, api_for: Api, settings: Any
) -> None:
    assert "api_idempotency_prune" in jobs.SCHEDULED
    assert "api_idempotency_prune" in settings.MAINTENANCE_INTERVALS
    api_for(alice).post("/api/v1/statuses", {"status": "old"}, HTTP_IDEMPOTENCY_KEY="old")
    IdempotentStatus.objects.update(created_at=timezone.now() - timedelta(hours=2))
    api_for(bob).post("/api/v1/statuses", {"status": "new"}, HTTP_IDEMPOTENCY_KEY="new")
    jobs.api_idempotency_prune.enqueue()  # the immediate backend runs it now
    assert list(IdempotentStatus.objects.values_list("user__username", flat=True)) == ["bob"]
