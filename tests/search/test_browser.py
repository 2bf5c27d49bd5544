"""Search and a tag page in a real browser (Playwright + Chromium; axe-core checks every page)."""

import contextlib
import re
from collections.abc import Callable

import pytest

from microblog.accounts.services import user_create
from microblog.posts.services import post_create
from microblog.tags.services import trending_refresh
from tests.conftest import PASSWORD, feed_posts, log_in

pytestmark = pytest.mark.browser

with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, expect


def test_search_from_the_top_bar_then_follow_a_hashtag_and_load_more(
    new_page: Callable[..., "Page"], settings
) -> None:
    settings.PAGE_SIZE = 3
    erin = user_create(username="erin", password=PASSWORD)
    user_create(username="erika", password=PASSWORD)
    for n in range(4):
        post_create(author=erin, content=f"Garden diary {n}: tomatoes again #Gardening")
    post_create(author=erin, content="Nothing about plants")
    trending_refresh()

    page = new_page()
    log_in(page, "erika")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Search").click()
    expect(page).to_have_url(re.compile(r"/search$"))
    expect(page.get_by_role("link", name="#gardening")).to_be_visible()  # trending panel

    page.get_by_label("Search posts, people and hashtags").fill("tomatoes")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/search\?q=tomatoes$"))
    expect(feed_posts(page)).to_have_count(3)
    page.get_by_role("link", name="Load more").click()  # htmx, keeping the query
    expect(feed_posts(page)).to_have_count(4)
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)

    # A bad query keeps what was typed and says what to change.
    page.get_by_label("Search posts, people and hashtags").fill("!!!")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("Type a word")
    expect(page.get_by_label("Search posts, people and hashtags")).to_have_value("!!!")

    page.get_by_label("Search posts, people and hashtags").fill("@eri")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="@erin")).to_be_visible()
    expect(page.get_by_role("link", name="@erika")).to_be_visible()

    # A hashtag in a post leads to the tag's page, newest first.
    page.get_by_label("Search posts, people and hashtags").fill("diary")
    page.get_by_role("button", name="Search").click()
    feed_posts(page).first.get_by_role("link", name="#Gardening").click()
    expect(page).to_have_url(re.compile(r"/tags/gardening$"))
    expect(page.get_by_role("heading", name="#gardening")).to_be_visible()
    expect(feed_posts(page)).to_have_count(3)
    expect(feed_posts(page).first).to_contain_text("Garden diary 3")


def test_a_tag_page_works_without_javascript(new_page: Callable[..., "Page"], settings) -> None:
    settings.PAGE_SIZE = 2
    author = user_create(username="noscript", password=PASSWORD)
    for n in range(3):
        post_create(author=author, content=f"Plain #HTML page {n}")
    page = new_page(java_script_enabled=False)
    page.goto("/search?q=%23html")
    page.get_by_role("link", name="#html", exact=True).click()
    expect(feed_posts(page)).to_have_count(2)
    page.get_by_role("link", name="Load more").click()
    expect(page).to_have_url(re.compile(r"/tags/html\?cursor=\d+$"))
    expect(feed_posts(page)).to_have_count(1)
    expect(feed_posts(page).first).to_contain_text("Plain #HTML page 0")
