"""Like and repost in Chromium: with htmx (the buttons and counts change in place, the page is
not reloaded) and without JavaScript (plain forms); the repost reaches a follower's For You."""

import contextlib
from collections.abc import Callable

import pytest

from microblog.accounts.services import user_create
from microblog.follows.services import follow_create
from microblog.posts.services import post_create
from tests.conftest import PASSWORD, feed_posts, flash, log_in

pytestmark = pytest.mark.browser

with contextlib.suppress(ImportError):  # the dev extra installs it; the fixture skips without
    from playwright.sync_api import Page, expect


def test_like_and_repost_with_htmx_then_a_follower_sees_the_repost(
    new_page: Callable[..., "Page"],
) -> None:
    author = user_create(username="author", password=PASSWORD)
    carol = user_create(username="carol", password=PASSWORD)
    dave = user_create(username="dave", password=PASSWORD)
    follow_create(follower=dave, followed=carol)
    post_create(author=author, content="Pass this on")
    del carol

    page = new_page()
    log_in(page, "carol")
    page.goto("/all")
    page.evaluate("window.stillTheSamePage = true")
    card = feed_posts(page).filter(has_text="Pass this on")
    card.get_by_role("button", name="Like").click()
    expect(card.get_by_role("button", name="Unlike")).to_have_attribute("aria-pressed", "true")
    expect(card.locator(".interaction-counts")).to_contain_text("1 like")
    card.get_by_role("button", name="Repost").click()
    expect(card.get_by_role("button", name="Undo repost")).to_be_visible()
    expect(card.locator(".interaction-counts")).to_contain_text("1 repost")
    assert page.evaluate("window.stillTheSamePage") is True  # swapped in place, no reload

    # Dave follows carol: the post is in his For You, once, marked as her repost.
    follower = new_page()
    log_in(follower, "dave")
    follower.goto("/")
    shown = feed_posts(follower).filter(has_text="Pass this on")
    expect(shown).to_have_count(1)
    expect(shown.locator(".repost-label")).to_have_text("Reposted by carol")

    # Carol undoes it (and unlikes): gone from dave's feed on his next load.
    card.get_by_role("button", name="Undo repost").click()
    expect(card.get_by_role("button", name="Repost")).to_be_visible()
    card.get_by_role("button", name="Unlike").click()
    expect(card.get_by_role("button", name="Like")).to_be_visible()
    expect(card.locator(".interaction-counts")).to_have_text("")
    follower.reload()
    expect(feed_posts(follower).filter(has_text="Pass this on")).to_have_count(0)


def test_like_and_repost_work_without_javascript(new_page: Callable[..., "Page"]) -> None:
    author = user_create(username="author", password=PASSWORD)
    user_create(username="carol", password=PASSWORD)
    post_create(author=author, content="No script needed")
    page = new_page(java_script_enabled=False)
    log_in(page, "carol")
    page.goto("/all")
    card = feed_posts(page).filter(has_text="No script needed")
    card.get_by_role("button", name="Like").click()
    expect(flash(page)).to_contain_text("You liked this post.")
    card = feed_posts(page).filter(has_text="No script needed")
    expect(card.get_by_role("button", name="Unlike")).to_be_visible()
    card.get_by_role("button", name="Repost").click()
    expect(flash(page)).to_contain_text("You reposted this post")
    expect(page.get_by_role("link", name="Microblog")).to_be_visible()  # a whole page
    page.goto("/@carol/likes")
    expect(feed_posts(page)).to_have_count(1)
    page.get_by_role("link", name="1 like").click()
    expect(page.locator(".people .author")).to_have_text(["carol"])
