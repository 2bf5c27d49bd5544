"""The client API's notifications: Mastodon's Notification entity from our grouped rows, its
filters and pages, what may be shown, dismissing and clearing, scopes and bad input."""

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from microblog.accounts.models import User
from microblog.follows.services import follow_create
from microblog.interactions.services import like_create, repost_create
from microblog.moderation.services import block_create, mute_create, review
from microblog.notifications.models import Notification
from microblog.posts.services import post_create, post_delete

Api = Callable[..., Client]
URL = "/api/v1/notifications"


@pytest.fixture
def fold_now(settings: Any, db_job_backend: Callable[[], None]) -> Callable[[], None]:
    """Grouped events (follows, likes, reposts) are folded by the real job, at once."""
    settings.NOTIFICATIONS_GROUP_DELAY_SECONDS = 0
    return db_job_backend


def link_params(response: Any, rel: str) -> dict[str, list[str]]:
    for part in response["Link"].split(", "):
        url, _, kind = part.partition("; ")
        if kind == f'rel="{rel}"':
            return parse_qs(urlsplit(url.strip("<>")).query)
    raise AssertionError(f"no {rel} link in {response['Link']}")


def test_each_kind_in_mastodon_shape(
    make_user: Callable[..., User], api_for: Api, fold_now: Callable[[], None]
) -> None:
    star, fan = make_user("star"), make_user("fan")
    post = post_create(author=star, content="my post")
    reply = post_create(author=fan, content="a reply", parent_id=post.id)
    mention = post_create(author=fan, content="hello @star")
    follow_create(follower=fan, followed=star)
    like_create(user=fan, post_id=post.id)
    repost_create(user=fan, post_id=post.id)
    fold_now()
    response = api_for(star).get(URL)
    assert response.status_code == 200
    found = response.json()
    by_type = {}
    for entity in found:
        by_type.setdefault(entity["type"], []).append(entity)
    # A reply is a "mention" on Mastodon; likes are "favourite", reposts "reblog".
    assert sorted(by_type) == ["favourite", "follow", "mention", "reblog"]
    assert sorted(e["status"]["id"] for e in by_type["mention"]) == sorted(
        [str(reply.id), str(mention.id)]
    )
    replied = next(e for e in by_type["mention"] if e["status"]["id"] == str(reply.id))
    assert replied["status"]["in_reply_to_id"] == str(post.id)
    assert replied["status"]["in_reply_to_account_id"] == str(star.id)
    assert by_type["follow"][0]["status"] is None
    assert by_type["favourite"][0]["status"]["id"] == str(post.id)
    assert by_type["reblog"][0]["status"]["content"] == "<p>my post</p>"
    for entity in found:
        assert entity["account"]["username"] == "fan"
        assert entity["created_at"].endswith("Z")
        row = Notification.objects.get(sort_id=int(entity["id"]))
        assert entity["group_key"] == f"{row.kind}-{row.group_key}"
    # Newest first, by the id (the row's sort_id).
    ids = [int(e["id"]) for e in found]
    assert ids == sorted(ids, reverse=True)


def test_a_group_is_one_notification_with_its_latest_actor(
    make_user: Callable[..., User], api_for: Api, fold_now: Callable[[], None]
) -> None:
    star = make_user("star")
    post = post_create(author=star, content="popular")
    fans = [make_user(f"fan{n}") for n in range(3)]
    for fan in fans:
        like_create(user=fan, post_id=post.id)
    fold_now()
    api = api_for(star)
    [first] = api.get(URL).json()
    assert (first["type"], first["account"]["username"]) == ("favourite", "fan2")
    # A later like brings the group back to the top under a new id: a client shows it as new.
    late = make_user("late")
    like_create(user=late, post_id=post.id)
    fold_now()
    [again] = api.get(URL).json()
    assert again["account"]["username"] == "late"
    assert int(again["id"]) > int(first["id"])
    assert api.get(f"{URL}/{first['id']}").status_code == 404
    assert api.get(f"{URL}/{again['id']}").json()["account"]["username"] == "late"


def test_types_exclude_types_and_account_id(
    make_user: Callable[..., User], api_for: Api, fold_now: Callable[[], None]
) -> None:
    star, fan, other = make_user("star"), make_user("fan"), make_user("other")
    post = post_create(author=star, content="x")
    post_create(author=fan, content="re", parent_id=post.id)
    post_create(author=other, content="hi @star")
    follow_create(follower=fan, followed=star)
    like_create(user=other, post_id=post.id)
    fold_now()
    api = api_for(star)

    def types(params: dict[str, Any]) -> list[str]:
        response = api.get(URL, params)
        assert response.status_code == 200, response.content
        return sorted(e["type"] for e in response.json())

    assert types({"types[]": ["mention"]}) == ["mention", "mention"]
    assert types({"types[]": ["follow", "favourite"]}) == ["favourite", "follow"]
    assert types({"exclude_types[]": ["mention", "follow"]}) == ["favourite"]
    assert types({"types[]": ["mention"], "exclude_types[]": ["mention"]}) == []
    # Types we never send match nothing, as on Mastodon.
    assert types({"types[]": ["poll"]}) == []
    assert types({"exclude_types[]": ["poll"]}) == ["favourite", "follow", "mention", "mention"]
    assert types({"account_id": str(fan.id)}) == ["follow", "mention"]
    assert types({"account_id": str(other.id), "types[]": ["favourite"]}) == ["favourite"]


def test_pages_with_link_headers_and_since_and_min_id(
    make_user: Callable[..., User], api_for: Api
) -> None:
    star, fan = make_user("star"), make_user("fan")
    mentions = [post_create(author=fan, content=f"@star {n}") for n in range(7)]
    api = api_for(star)
    first = api.get(URL, {"limit": 3})
    assert [e["status"]["id"] for e in first.json()] == [str(p.id) for p in mentions[:3:-1]]
    next_params = link_params(first, "next")
    assert next_params["max_id"] == [first.json()[-1]["id"]]
    second = api.get(URL, {"limit": 3, "max_id": next_params["max_id"][0]})
    assert [e["status"]["id"] for e in second.json()] == [str(p.id) for p in mentions[3:0:-1]]
    assert link_params(second, "prev")["min_id"] == [second.json()[0]["id"]]
    oldest = str(mentions[0].id)
    # since_id: the newest above it; min_id: the ones just above it.
    since = api.get(URL, {"limit": 2, "since_id": oldest}).json()
    assert [e["status"]["id"] for e in since] == [str(mentions[6].id), str(mentions[5].id)]
    above = api.get(URL, {"limit": 2, "min_id": oldest}).json()
    assert [e["status"]["id"] for e in above] == [str(mentions[2].id), str(mentions[1].id)]
    # A short page has no next link.
    last = api.get(URL, {"limit": 10})
    assert len(last.json()) == 7
    assert 'rel="next"' not in last["Link"]


def test_only_what_the_page_shows(
    make_user: Callable[..., User], api_for: Api, fold_now: Callable[[], None]
) -> None:
    """Hidden posts of others, deleted posts, blocked and muted accounts: left out, as on the
    notifications page (the same selector)."""
    staff = make_user("staff", is_staff=True)
    star, troll, rude, gone, fine = (make_user(n) for n in ("star", "troll", "rude", "gone", "ok"))
    hidden = post_create(author=troll, content="@star look")
    review(staff=staff, post_id=hidden.id, action="hide")
    post_create(author=rude, content="@star hey")
    mute_create(muter=star, muted=rude)
    deleted = post_create(author=gone, content="@star soon gone")
    post_delete(post=deleted, actor=gone)
    blocked_follow = make_user("blocked")
    follow_create(follower=blocked_follow, followed=star)
    own = post_create(author=star, content="mine")
    like_create(user=fine, post_id=own.id)
    fold_now()
    block_create(blocker=star, blocked=blocked_follow)
    review(staff=staff, post_id=own.id, action="hide")
    kept = post_create(author=fine, content="@star fine")
    api = api_for(star)
    found = api.get(URL).json()
    # Their own hidden post still tells of its likes: they may see it.
    assert [(e["type"], e["account"]["username"]) for e in found] == [
        ("mention", "ok"),
        ("favourite", "ok"),
    ]
    assert found[0]["status"]["id"] == str(kept.id)
    hidden_row = Notification.objects.get(post_id=hidden.id)
    assert api.get(f"{URL}/{hidden_row.sort_id}").status_code == 404
    assert api.get(f"{URL}/unread_count").json() == {"count": 2}


def test_one_notification_dismiss_and_clear(
    make_user: Callable[..., User], api_for: Api, client_for: Callable[[User], Client]
) -> None:
    star, fan, other = make_user("star"), make_user("fan"), make_user("other")
    first = post_create(author=fan, content="@star one")
    post_create(author=fan, content="@star two")
    post_create(author=star, content="@other for other")
    api = api_for(star)
    entities = api.get(URL).json()
    assert api.get(f"{URL}/unread_count").json() == {"count": 2}
    shown = api.get(f"{URL}/{entities[1]['id']}")
    assert shown.status_code == 200
    assert shown.json()["status"]["id"] == str(first.id)
    # Someone else's notification is not found, to see or to dismiss.
    others = Notification.objects.get(recipient=other)
    assert api.get(f"{URL}/{others.sort_id}").status_code == 404
    assert api.post(f"{URL}/{others.sort_id}/dismiss").status_code == 404
    assert Notification.objects.filter(recipient=other).exists()

    dismissed = api.post(f"{URL}/{entities[1]['id']}/dismiss")
    assert (dismissed.status_code, dismissed.json()) == (200, {})
    assert [e["id"] for e in api.get(URL).json()] == [entities[0]["id"]]
    assert api.get(f"{URL}/{entities[1]['id']}").status_code == 404
    assert api.post(f"{URL}/{entities[1]['id']}/dismiss").status_code == 404
    # The web page shows what the API left.
    assert "@star one" not in client_for(star).get("/notifications").content.decode()

    cleared = api.post(f"{URL}/clear")
    assert (cleared.status_code, cleared.json()) == (200, {})
    assert api.get(URL).json() == []
    assert api.get(f"{URL}/unread_count").json() == {"count": 0}
    assert Notification.objects.filter(recipient=other).count() == 1


def test_reading_the_page_on_the_web_clears_the_unread_count(
    make_user: Callable[..., User], api_for: Api, client_for: Callable[[User], Client]
) -> None:
    star, fan = make_user("star"), make_user("fan")
    post_create(author=fan, content="@star hi")
    api = api_for(star)
    assert api.get(f"{URL}/unread_count").json() == {"count": 1}
    client_for(star).get("/notifications")
    assert api.get(f"{URL}/unread_count").json() == {"count": 0}


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("get", URL, "read:notifications"),
        ("get", f"{URL}/unread_count", "read:notifications"),
        ("get", f"{URL}/1", "read:notifications"),
        ("post", f"{URL}/1/dismiss", "write:notifications"),
        ("post", f"{URL}/clear", "write:notifications"),
    ],
)
def test_scopes(alice: User, api_for: Api, method: str, path: str, scope: str) -> None:
    assert getattr(Client(), method)(path).status_code == 401
    assert getattr(api_for(alice, "read:statuses write:statuses"), method)(path).status_code == 403
    assert getattr(api_for(alice, scope), method)(path).status_code in {200, 404}
    top = scope.split(":")[0]
    assert getattr(api_for(alice, top), method)(path).status_code in {200, 404}
    # An app token (no user) has no notifications.
    assert getattr(api_for(None, top), method)(path).status_code == 422


def test_a_read_token_cannot_clear(alice: User, bob: User, api_for: Api) -> None:
    post_create(author=bob, content="@alice hi")
    assert api_for(alice, "read").post(f"{URL}/clear").status_code == 403
    assert Notification.objects.filter(recipient=alice).count() == 1


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"max_id": "abc"}, 400),
        ({"since_id": "-1"}, 400),
        ({"min_id": "1" * 25}, 400),
        ({"limit": "x"}, 400),
        ({"account_id": "bob"}, 422),
        ({"types[]": [f"t{n}" for n in range(41)]}, 422),
    ],
)
def test_bad_input_is_a_clear_4xx(
    alice: User, api_for: Api, params: dict[str, Any], status: int
) -> None:
    response = api_for(alice).get(URL, params)
    assert response.status_code == status
    assert response.json()["error"]


def test_malformed_ids_in_the_path_are_404(alice: User, api_for: Api) -> None:
    api = api_for(alice)
    assert api.get(f"{URL}/{'9' * 25}").status_code == 404
    assert api.post(f"{URL}/{'9' * 25}/dismiss").status_code == 404


def test_the_list_query_count_is_pinned(
    make_user: Callable[..., User],
    api_for: Api,
    fold_now: Callable[[], None],
    django_assert_num_queries: Any,
) -> None:
    star = make_user("star")
    post = post_create(author=star, content="x")
    fans = [make_user(f"fan{n}") for n in range(8)]
    for fan in fans:
        post_create(author=fan, content="a reply", parent_id=post.id)
        post_create(author=fan, content="@star hi")
        follow_create(follower=fan, followed=star)
        like_create(user=fan, post_id=post.id)
    fold_now()
    api = api_for(star)
    # The token (with its user and app), then the page: notifications with their actors, posts,
    # the posts' authors and parents, in one query; the reader's likes and reposts of those posts
    # (state_for: the Status's favourited / reblogged); the accounts the posts mention ("@star
    # hi": the Status's mentions).
    with django_assert_num_queries(4):
        assert len(api.get(URL, {"limit": 40}).json()) == 18
    with django_assert_num_queries(4):
        assert len(api.get(URL).json()) == 18
