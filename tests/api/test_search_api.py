"""The client API's search (`/api/v2/search`, `/api/v1/accounts/search`) and hashtags (the tag
timeline, `/api/v1/tags/:name`, trends): results, who may be listed, pages, scopes, the rate
limit, bad input and query counts."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from microblog import ratelimit
from microblog.accounts.models import User
from microblog.moderation.services import block_create, mute_create, review
from microblog.posts.models import Post
from microblog.posts.services import post_create, post_delete
from microblog.search.query import QUERY_MAX_LENGTH
from microblog.tags.services import trending_refresh

Api = Callable[..., Client]
SEARCH = "/api/v2/search"


def ids(entities: list[dict[str, Any]]) -> list[str]:
    return [entity["id"] for entity in entities]


def post_ids(posts: list[Post]) -> list[str]:
    return [str(post.id) for post in posts]


# --- /api/v2/search ---------------------------------------------------------------------------


def test_search_finds_accounts_statuses_and_hashtags(
    make_user: Callable[..., User], api_for: Api
) -> None:
    pyro, python_fan = make_user("pyro"), make_user("python_fan")
    make_user("other")
    first = post_create(author=pyro, content="I like #python a lot")
    reply = post_create(author=python_fan, content="Python? me too", parent_id=first.id)
    post_create(author=pyro, content="unrelated #pytest")
    found = api_for(pyro).get(SEARCH, {"q": "python"}).json()
    assert [a["username"] for a in found["accounts"]] == ["python_fan"]
    assert ids(found["statuses"]) == post_ids([reply, first])
    assert found["statuses"][0]["in_reply_to_id"] == str(first.id)
    [tag] = found["hashtags"]
    assert tag["name"] == "python"
    assert tag["url"].endswith("/tags/python")
    assert tag["following"] is False
    assert tag["history"][0]["uses"] == "1" and len(tag["history"]) == 7
    # Hashtags by prefix, accounts by prefix ("#py" asks for tags, "@py" for accounts).
    tags = Client().get(SEARCH, {"q": "#py"}).json()["hashtags"]
    assert [t["name"] for t in tags] == ["pytest", "python"]
    accounts = Client().get(SEARCH, {"q": "@py"}).json()
    assert [a["username"] for a in accounts["accounts"]] == ["pyro", "python_fan"]
    assert accounts["hashtags"] == []


def test_type_limit_offset_and_max_id(alice: User, api_for: Api) -> None:
    posts = [post_create(author=alice, content=f"counted word {n} #counted") for n in range(6)]
    api = api_for(alice)
    only = api.get(SEARCH, {"q": "counted", "type": "statuses", "limit": 2}).json()
    assert only["accounts"] == [] and only["hashtags"] == []
    assert ids(only["statuses"]) == post_ids(posts[:3:-1])
    offset = api.get(SEARCH, {"q": "counted", "type": "statuses", "limit": 2, "offset": 2})
    assert ids(offset.json()["statuses"]) == post_ids(posts[3:1:-1])
    below = api.get(SEARCH, {"q": "counted", "type": "statuses", "max_id": str(posts[2].id)})
    assert ids(below.json()["statuses"]) == post_ids(posts[1::-1])
    tags = api.get(SEARCH, {"q": "counted", "type": "hashtags"}).json()
    assert [t["name"] for t in tags["hashtags"]] == ["counted"] and tags["statuses"] == []
    # `resolve` (nothing remote to resolve here) changes nothing.
    accounts = api.get(SEARCH, {"q": "ali", "type": "accounts", "resolve": "true"}).json()
    assert [a["username"] for a in accounts["accounts"]] == ["alice"]


def test_search_lists_only_what_the_web_search_would(
    make_user: Callable[..., User], api_for: Api
) -> None:
    staff = make_user("staff", is_staff=True)
    reader, blocked, muted, author = (make_user(n) for n in ("reader", "blocked", "muted", "au"))
    hidden = post_create(author=author, content="secret needle")
    review(staff=staff, post_id=hidden.id, action="hide")
    post_create(author=blocked, content="blocked needle")
    post_create(author=muted, content="muted needle")
    gone = post_create(author=author, content="deleted needle")
    post_delete(post=gone, actor=author)
    kept = post_create(author=author, content="visible needle")
    block_create(blocker=reader, blocked=blocked)
    mute_create(muter=reader, muted=muted)
    found = api_for(reader).get(SEARCH, {"q": "needle"}).json()
    assert ids(found["statuses"]) == [str(kept.id)]
    # Accounts the reader blocks are not listed; visitors see every visible post.
    assert api_for(reader).get(SEARCH, {"q": "bloc"}).json()["accounts"] == []
    assert len(Client().get(SEARCH, {"q": "needle"}).json()["statuses"]) == 3
    # The author sees their own hidden post, as on the web.
    mine = api_for(author).get(SEARCH, {"q": "needle"}).json()["statuses"]
    assert str(hidden.id) in ids(mine)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 422),
        ({"q": ""}, 422),
        ({"q": "   "}, 422),
        ({"q": "x" * (QUERY_MAX_LENGTH * 10)}, 422),
        ({"q": "a\x00b"}, 422),
        ({"q": "!!!"}, 422),
        ({"q": "one two three four five six seven eight nine"}, 422),
        ({"q": "ok", "type": "people"}, 400),
        ({"q": "ok", "offset": "-1"}, 400),
        ({"q": "ok", "offset": "x"}, 400),
        ({"q": "ok", "offset": "1001"}, 400),
        ({"q": "ok", "limit": "many"}, 400),
        ({"q": "ok", "max_id": "1e9"}, 400),
    ],
)
def test_bad_input_is_a_clear_4xx(
    alice: User, api_for: Api, params: dict[str, Any], status: int
) -> None:
    for client in (api_for(alice), Client()):
        response = client.get(SEARCH, params)
        assert response.status_code == status, params
        assert response.json()["error"]
        accounts = client.get("/api/v1/accounts/search", params)
        if "type" not in params and "max_id" not in params:
            assert accounts.status_code == status, params


def test_search_scopes(alice: User, api_for: Api) -> None:
    assert Client().get(SEARCH, {"q": "alice"}).status_code == 200  # public, as the web search
    assert Client(HTTP_AUTHORIZATION="Bearer nope").get(SEARCH, {"q": "a"}).status_code == 401
    assert api_for(alice, "read:statuses").get(SEARCH, {"q": "alice"}).status_code == 403
    assert api_for(alice, "read:search").get(SEARCH, {"q": "alice"}).status_code == 200
    assert api_for(alice, "read").get(SEARCH, {"q": "alice"}).status_code == 200
    accounts = "/api/v1/accounts/search"
    assert api_for(alice, "read:search").get(accounts, {"q": "alice"}).status_code == 403
    assert api_for(alice, "read:accounts").get(accounts, {"q": "alice"}).status_code == 200


def test_search_shares_the_web_searchs_rate_limit_per_user(
    alice: User, api_for: Api, client_for: Callable[[User], Client], settings: Any, monkeypatch: Any
) -> None:
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_STORE = "database"
    settings.RATELIMIT_RULES = {**settings.RATELIMIT_RULES, "searches": "3/1m"}
    monkeypatch.setattr(ratelimit, "clock", lambda: 1_800_000_000.0)  # inside one window
    one, two = api_for(alice), api_for(alice)
    assert one.get(SEARCH, {"q": "hello"}).status_code == 200
    assert two.get("/api/v1/accounts/search", {"q": "hello"}).status_code == 200
    assert client_for(alice).get("/search", {"q": "hello"}).status_code == 200
    refused = one.get(SEARCH, {"q": "hello"})
    assert refused.status_code == 429
    assert refused.json()["error"]
    assert refused["X-RateLimit-Limit"] == "3"
    assert int(refused["Retry-After"]) > 0


def test_accounts_search(make_user: Callable[..., User], api_for: Api) -> None:
    for name in ("carol", "carla", "carmen"):
        make_user(name)
    api = api_for(make_user("reader"))
    found = api.get("/api/v1/accounts/search", {"q": "car"}).json()
    assert [a["username"] for a in found] == ["carla", "carmen", "carol"]
    paged = api.get("/api/v1/accounts/search", {"q": "car", "limit": 1, "offset": 1}).json()
    assert [a["username"] for a in paged] == ["carmen"]
    # A full address of a local account, as apps send it.
    full = api.get("/api/v1/accounts/search", {"q": "carol@testserver"}).json()
    assert [a["username"] for a in full] == ["carol"]


def test_search_query_count_is_pinned(
    alice: User, bob: User, api_for: Api, django_assert_num_queries: Any
) -> None:
    for n in range(10):
        parent = post_create(author=bob, content="root") if n % 2 else None
        post_create(
            author=bob, content=f"counted #counted {n}", parent_id=parent.id if parent else None
        )
    api = api_for(alice)
    # The token, the posts (with authors, parents and their authors), accounts by prefix, tags
    # by prefix, the reader's likes and reposts of the posts (state_for), the tags' history.
    with django_assert_num_queries(6):
        found = api.get(SEARCH, {"q": "counted"}).json()
    assert len(found["statuses"]) == 10 and len(found["hashtags"]) == 1


# --- hashtags ---------------------------------------------------------------------------------


def test_tag_timeline_pages_posts_and_replies(alice: User, bob: User) -> None:
    root = post_create(author=alice, content="root")
    tagged = [
        post_create(author=bob, content=f"#Tagged {n}", parent_id=root.id if n % 2 else None)
        for n in range(5)
    ]
    post_create(author=bob, content="#other")
    client = Client()
    first = client.get("/api/v1/timelines/tag/tagged", {"limit": 2})
    assert first.status_code == 200
    assert ids(first.json()) == post_ids(tagged[:2:-1])
    assert first.json()[1]["in_reply_to_id"] == str(root.id)  # n=3 is a reply
    next_url = first["Link"].split(", ")[0].strip("<>").split(">;")[0]
    assert parse_qs(urlsplit(next_url).query)["max_id"] == [str(tagged[3].id)]
    second = client.get(next_url)
    assert ids(second.json()) == post_ids(tagged[2:0:-1])
    # since_id: the newest above; min_id: the ones just above.
    since = client.get("/api/v1/timelines/tag/tagged", {"since_id": tagged[0].id, "limit": 2})
    assert ids(since.json()) == post_ids(tagged[:2:-1])
    above = client.get("/api/v1/timelines/tag/tagged", {"min_id": tagged[0].id, "limit": 2})
    assert ids(above.json()) == post_ids(tagged[2:0:-1])
    # Any way of writing the tag; unknown or impossible tags have no posts.
    assert ids(client.get("/api/v1/timelines/tag/TAGGED").json()) == post_ids(tagged[::-1])
    assert ids(client.get("/api/v1/timelines/tag/%23tagged").json()) == post_ids(tagged[::-1])
    for name in ("nothing", "a%00b", "123", "x" * 200, "%F0%9F%98%80"):
        response = client.get(f"/api/v1/timelines/tag/{name}")
        assert (response.status_code, response.json()) == (200, []), name
    assert client.get("/api/v1/timelines/tag/tagged", {"only_media": "true"}).json() == []


def test_tag_timeline_leaves_out_what_the_tag_page_does(
    make_user: Callable[..., User], api_for: Api
) -> None:
    staff = make_user("staff", is_staff=True)
    reader, blocked, muted, author = (make_user(n) for n in ("reader", "blocked", "muted", "au"))
    hidden = post_create(author=author, content="#topic hidden")
    review(staff=staff, post_id=hidden.id, action="hide")
    post_create(author=blocked, content="#topic blocked")
    post_create(author=muted, content="#topic muted")
    gone = post_create(author=author, content="#topic gone")
    post_delete(post=gone, actor=author)
    kept = post_create(author=author, content="#topic kept")
    block_create(blocker=reader, blocked=blocked)
    mute_create(muter=reader, muted=muted)
    api = api_for(reader)
    assert ids(api.get("/api/v1/timelines/tag/topic").json()) == [str(kept.id)]
    newer = api.get("/api/v1/timelines/tag/topic", {"since_id": "0"}).json()
    assert ids(newer) == [str(kept.id)]
    assert len(Client().get("/api/v1/timelines/tag/topic").json()) == 3
    assert api_for(reader, "read:search").get("/api/v1/timelines/tag/topic").status_code == 403


def test_tag_timeline_query_count_is_pinned(
    alice: User, bob: User, api_for: Api, django_assert_num_queries: Any
) -> None:
    api = api_for(alice)
    made = 0
    for wanted in (5, 20):
        while made < wanted:
            parent = post_create(author=bob, content="root") if made % 2 else None
            post_create(
                author=bob, content=f"#pinned {made}", parent_id=parent.id if parent else None
            )
            made += 1
        # The token, the tag by name, the page of posts with authors, parents and parents'
        # authors (blocks and mutes as subqueries), the reader's likes and reposts (state_for).
        with django_assert_num_queries(4):
            assert len(api.get("/api/v1/timelines/tag/pinned").json()) == wanted
        # Signed out: no token.
        with django_assert_num_queries(2):
            assert len(Client().get("/api/v1/timelines/tag/pinned").json()) == wanted
    for n in range(10):
        post_create(author=bob, content=f"#pinned more {n}")
    # A limit above the page size reads a second page.
    with django_assert_num_queries(5):
        assert len(api.get("/api/v1/timelines/tag/pinned", {"limit": 30}).json()) == 30


def test_tag_entity_with_history(make_user: Callable[..., User], alice: User, bob: User) -> None:
    staff = make_user("staff", is_staff=True)
    post_create(author=alice, content="#Django one")
    post_create(author=alice, content="#django two")
    post_create(author=bob, content="#django three")
    hidden = post_create(author=bob, content="#django hidden")
    review(staff=staff, post_id=hidden.id, action="hide")
    response = Client().get("/api/v1/tags/Django")
    assert response.status_code == 200
    tag = response.json()
    assert tag["name"] == "django" and tag["following"] is False
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert tag["history"][0] == {
        "day": str(int(today.timestamp())),
        "uses": "3",
        "accounts": "2",
    }
    assert [day["uses"] for day in tag["history"][1:]] == ["0"] * 6
    for name in ("nothing", "123", "a%00b", "x" * 200):
        missing = Client().get(f"/api/v1/tags/{name}")
        assert missing.status_code == 404 and missing.json()["error"], name


def test_trends_answer_the_stored_trending_list(
    make_user: Callable[..., User], api_for: Api
) -> None:
    users = [make_user(f"user_t{n}") for n in range(3)]
    for user in users:
        post_create(author=user, content="#wide")
    post_create(author=users[0], content="#narrow #narrow2")
    assert Client().get("/api/v1/trends/tags").json() == []  # not computed yet
    trending_refresh()
    found = Client().get("/api/v1/trends/tags").json()
    assert [t["name"] for t in found] == ["wide", "narrow", "narrow2"]
    assert found[0]["history"][0]["accounts"] == "3"
    assert [t["name"] for t in Client().get("/api/v1/trends/tags", {"limit": 1}).json()] == ["wide"]
    paged = api_for(users[0]).get("/api/v1/trends/tags", {"limit": 1, "offset": 1}).json()
    assert [t["name"] for t in paged] == ["narrow"]
    assert [t["name"] for t in Client().get("/api/v1/trends").json()] == [
        "wide",
        "narrow",
        "narrow2",
    ]
    assert Client().get("/api/v1/trends/tags", {"offset": "-2"}).status_code == 400
