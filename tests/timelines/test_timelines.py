"""The feeds: For You (`/`), Following, All, their cursor pagination and "Load more" fragments."""

import html
import re

import pytest
from django.conf import settings

from microblog.follows.services import follow_create, follow_delete
from microblog.posts.services import post_delete

BAD_CURSOR = "That page link is not valid. Go back to the first page and try again."


def text(response) -> str:
    return html.unescape(response.content.decode())


def shown_ids(response) -> list[int]:
    """Ids of the post cards on the page, in page order."""
    return [
        int(i) for i in re.findall(r'<article class="post[^"]*" id="post-(\d+)"', text(response))
    ]


def load_more_cursor(response) -> str | None:
    """The `?cursor=` of the page's "Load more" link (both its href and its hx-get)."""
    body = response.content.decode()
    hrefs = re.findall(r'class="load-more[^"]*" href="\?cursor=(\d+)"', body)
    hx = re.findall(r'hx-get="\?cursor=(\d+)"', body)
    assert hrefs == hx, "the plain link and the htmx link must point at the same page"
    assert len(hrefs) <= 1
    return hrefs[0] if hrefs else None


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def world(alice, bob, carol, make_post):
    """alice follows bob; nobody follows carol. Posts oldest first:
    carol's post, bob's post, alice's post, bob's reply to carol, alice's reply to bob,
    carol's reply to bob."""
    follow_create(follower=alice, followed=bob)
    posts = {}
    posts["carol_post"] = make_post(carol, "carol top-level")
    posts["bob_post"] = make_post(bob, "bob top-level")
    posts["alice_post"] = make_post(alice, "alice top-level")
    posts["bob_reply"] = make_post(bob, "bob replies to carol", parent=posts["carol_post"])
    posts["alice_reply"] = make_post(alice, "alice replies to bob", parent=posts["bob_post"])
    posts["carol_reply"] = make_post(carol, "carol replies to bob", parent=posts["bob_post"])
    return posts


# --- What each feed contains ---------------------------------------------------------------------


def test_for_you_shows_own_and_followed_top_level_posts_newest_first(alice, world, client_for):
    response = client_for(alice).get("/")
    assert response.status_code == 200
    assert shown_ids(response) == [world["alice_post"].id, world["bob_post"].id]
    page = text(response)
    assert "bob replies to carol" not in page  # replies stay out of For You
    assert "carol top-level" not in page  # carol is not followed


def test_for_you_of_a_user_who_follows_nobody_shows_only_their_own_posts(carol, world, client_for):
    response = client_for(carol).get("/")
    assert shown_ids(response) == [world["carol_post"].id]


def test_for_you_is_empty_with_a_hint_for_a_new_user(make_user, world, client_for):
    newcomer = make_user("newcomer")
    response = client_for(newcomer).get("/")
    assert shown_ids(response) == []
    assert "Your feed is empty." in text(response)


def test_for_you_picks_up_a_follow_and_drops_an_unfollow(alice, carol, world, client_for):
    client = client_for(alice)
    follow_create(follower=alice, followed=carol)
    assert world["carol_post"].id in shown_ids(client.get("/"))
    follow_delete(follower=alice, followed=carol)
    assert world["carol_post"].id not in shown_ids(client.get("/"))


def test_for_you_shows_a_new_post_of_a_followed_user(alice, bob, world, make_post, client_for):
    client = client_for(alice)
    client.get("/")
    fresh = make_post(bob, "fresh from bob")
    assert shown_ids(client.get("/"))[0] == fresh.id


def test_for_you_drops_a_deleted_post(alice, bob, world, client_for):
    post_delete(post=world["bob_post"], actor=bob)
    assert shown_ids(client_for(alice).get("/")) == [world["alice_post"].id]


def test_following_shows_posts_and_replies_of_followed_users_only(alice, world, client_for):
    response = client_for(alice).get("/following")
    assert response.status_code == 200
    assert shown_ids(response) == [world["bob_reply"].id, world["bob_post"].id]
    page = text(response)
    assert "alice top-level" not in page  # not your own posts
    assert "alice replies to bob" not in page
    assert "carol top-level" not in page
    assert "carol replies to bob" not in page


def test_following_says_who_a_reply_answers(alice, world, client_for):
    page = text(client_for(alice).get("/following"))
    assert f'Replying to <a href="/posts/{world["carol_post"].id}">@carol</a>' in page


def test_following_needs_log_in(client, db):
    response = client.get("/following")
    assert response.status_code == 302
    assert response["Location"] == "/login?next=/following"


def test_all_shows_every_top_level_post_newest_first(alice, world, client_for):
    expected = [world["alice_post"].id, world["bob_post"].id, world["carol_post"].id]
    assert shown_ids(client_for(alice).get("/all")) == expected


def test_all_works_for_visitors(client, world):
    response = client.get("/all")
    assert response.status_code == 200
    assert shown_ids(response) == [
        world["alice_post"].id,
        world["bob_post"].id,
        world["carol_post"].id,
    ]


def test_signed_out_home_shows_the_all_posts_feed(client, world):
    response = client.get("/")
    assert response.status_code == 200
    assert shown_ids(response) == shown_ids(client.get("/all"))
    page = text(response)
    assert "All posts" in page
    assert "Sign up" in page
    assert "replies to" not in page


def test_signed_out_home_with_no_posts_says_so(client, db):
    assert "No posts yet." in text(client.get("/"))


def test_feeds_show_a_compose_box_and_tabs_only_to_signed_in_users(client, alice, client_for):
    signed_in = text(client_for(alice).get("/"))
    assert 'action="/posts"' in signed_in
    assert '<nav class="tabs"' in signed_in
    assert 'aria-current="page">For You' in signed_in.replace('href="/" ', "")
    visitor = text(client.get("/"))
    assert 'action="/posts"' not in visitor
    assert '<nav class="tabs"' not in visitor


def test_feed_pages_only_answer_get(alice, client_for):
    client = client_for(alice)
    for path in ("/", "/following", "/all"):
        assert client.post(path).status_code == 405


# --- Pagination ----------------------------------------------------------------------------------

FEEDS = {
    "for_you": ("/", True),
    "following": ("/following", True),
    "all_signed_in": ("/all", True),
    "all_visitor": ("/all", False),
    "home_visitor": ("/", False),
    "profile": ("/@bob", False),
}


@pytest.fixture
def forty_five(alice, bob, make_post):
    """alice follows bob, who has written 45 posts; returns their ids newest first."""
    follow_create(follower=alice, followed=bob)
    return [make_post(bob, f"post number {n}").id for n in range(45)][::-1]


@pytest.mark.parametrize("feed", list(FEEDS), ids=list(FEEDS))
def test_load_more_links_walk_the_feed_in_pages_of_20_20_5(
    client, alice, forty_five, client_for, feed
):
    path, signed_in = FEEDS[feed]
    browser = client_for(alice) if signed_in else client
    assert settings.PAGE_SIZE == 20

    first = browser.get(path)
    cursor1 = load_more_cursor(first)
    second = browser.get(f"{path}?cursor={cursor1}")
    cursor2 = load_more_cursor(second)
    third = browser.get(f"{path}?cursor={cursor2}")

    pages = [shown_ids(first), shown_ids(second), shown_ids(third)]
    assert [len(p) for p in pages] == [20, 20, 5]
    assert pages[0] + pages[1] + pages[2] == forty_five  # no duplicates, no gaps, newest first
    assert cursor1 == str(pages[0][-1])
    assert cursor2 == str(pages[1][-1])
    assert load_more_cursor(third) is None
    assert "Load more" not in text(third)


@pytest.mark.parametrize("feed", list(FEEDS), ids=list(FEEDS))
def test_load_more_with_htmx_returns_a_fragment_without_the_page_chrome(
    client, alice, forty_five, client_for, feed
):
    path, signed_in = FEEDS[feed]
    browser = client_for(alice) if signed_in else client
    cursor = forty_five[19]

    response = browser.get(f"{path}?cursor={cursor}", headers={"HX-Request": "true"})

    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert "<header" not in body.replace('<header class="post-meta">', "")
    assert "Microblog · a self-hostable microblog" not in body
    assert 'action="/posts"' not in body  # no compose box
    assert shown_ids(response) == forty_five[20:40]
    assert load_more_cursor(response) == str(forty_five[39])
    assert "HX-Request" in response["Vary"]


def test_htmx_last_page_has_no_load_more_and_no_empty_feed_message(client, forty_five):
    response = client.get(f"/all?cursor={forty_five[-1]}", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert shown_ids(response) == []
    assert "Load more" not in text(response)
    assert "No posts yet" not in text(response)


def test_exactly_one_page_of_posts_has_no_load_more(client, bob, make_post):
    for n in range(settings.PAGE_SIZE):
        make_post(bob, f"post {n}")
    response = client.get("/all")
    assert len(shown_ids(response)) == settings.PAGE_SIZE
    assert load_more_cursor(response) is None


@pytest.mark.parametrize("path", ["/", "/following", "/all", "/@alice"])
@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "1" * 30, "%00", "9223372036854775808"])
def test_malformed_cursor_is_a_clear_400(alice, client_for, path, cursor):
    response = client_for(alice).get(f"{path}?cursor={cursor}")
    assert response.status_code == 400
    assert BAD_CURSOR in text(response)


@pytest.mark.parametrize("cursor", ["abc", "%00"])
def test_malformed_cursor_is_a_clear_400_for_visitors_and_htmx(client, db, cursor):
    assert BAD_CURSOR in text(client.get(f"/?cursor={cursor}"))
    response = client.get(f"/all?cursor={cursor}", headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert BAD_CURSOR in text(response)


def test_unknown_cursor_gives_the_posts_older_than_it(client, bob, make_post):
    ids = [make_post(bob, f"post {n}").id for n in range(5)]
    between = ids[2] + 1
    assert between not in ids  # ids are sparse: this number is no post's id
    response = client.get(f"/all?cursor={between}")
    assert response.status_code == 200
    assert shown_ids(response) == [ids[2], ids[1], ids[0]]


def test_cursor_older_than_every_post_gives_an_empty_page(client, bob, make_post):
    make_post(bob)
    response = client.get("/all?cursor=1")
    assert response.status_code == 200
    assert shown_ids(response) == []
    assert "No posts yet" not in text(response)


def test_largest_cursor_gives_the_first_page(client, bob, make_post):
    ids = [make_post(bob, f"post {n}").id for n in range(3)]
    response = client.get("/all?cursor=9223372036854775807")
    assert shown_ids(response) == ids[::-1]


def test_empty_cursor_is_the_first_page(client, bob, make_post):
    post = make_post(bob)
    assert shown_ids(client.get("/all?cursor=")) == [post.id]


def test_for_you_cursor_pages_never_mix_in_unfollowed_posts(
    alice, bob, carol, make_post, client_for
):
    follow_create(follower=alice, followed=bob)
    expected = []
    for n in range(25):
        expected.append(make_post(bob, f"bob {n}").id)
        make_post(carol, f"carol {n}")
    expected.reverse()
    client = client_for(alice)
    first = client.get("/")
    second = client.get(f"/?cursor={load_more_cursor(first)}")
    assert shown_ids(first) + shown_ids(second) == expected
