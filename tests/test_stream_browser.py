"""Live updates in a real browser (issue 6's "done when"): two users in separate browser contexts;
the followed user's new post is announced on the other's For You page within 2 seconds, without
reloading, and a click inserts it; a new reply appears on an open thread page.

The app runs as `microblog serve` (pages and /events/ on one port, as under `make run`) against
the test database; the users are created by a writer process (tests/stream_driver.py).
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stream_helpers import Driver, app_process, database_url, free_port, subprocess_env
from tests.test_browser import TIMEOUT_MS, browser, log_in  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

with contextlib.suppress(ImportError):  # the dev extra installs it; test_browser skips without
    from playwright.sync_api import Browser, BrowserContext, Page, expect


@pytest.fixture
def served(db: None, tmp_path: Path) -> Iterator[tuple[str, Driver]]:
    with database_url(tmp_path) as url:
        driver = Driver(url)
        port = free_port()
        command = ["serve", "--port", str(port), "--job-workers", "0", "--stream", "same-port"]
        try:
            with app_process(command, subprocess_env(url), port) as base:
                yield base, driver
        finally:
            driver.close()


@pytest.fixture
def open_page(
    browser: "Browser",  # noqa: F811 (the fixture imported above)
    served: tuple[str, Driver],
) -> Iterator[Callable[..., "Page"]]:
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> "Page":
        context = browser.new_context(base_url=served[0], **options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def test_a_followed_users_post_is_announced_live(
    served: tuple[str, Driver], open_page: Callable[..., "Page"]
) -> None:
    _base, driver = served
    reader, _ = driver.user("reader")
    author, _ = driver.user("author")
    driver.follow(reader, author)
    first = driver.post(author, "An older post")

    reading = open_page()
    log_in(reading, "reader")
    feed = reading.locator(".feed article.post")
    expect(feed).to_have_count(1)
    button = reading.locator("[data-new-posts]")
    expect(button).to_be_hidden()

    writing = open_page()
    log_in(writing, "author")
    writing.get_by_label("What's happening?").fill("Fresh from the author")
    writing.get_by_role("button", name="Post", exact=True).click()
    expect(writing.locator(".flash")).to_contain_text("Your post was published.")

    # Announced within 2 seconds, without reloading.
    expect(button).to_have_text("1 new post", timeout=2_000)
    expect(feed).to_have_count(1)
    button.click()
    expect(feed).to_have_count(2)
    expect(feed.first).to_contain_text("Fresh from the author")
    expect(button).to_be_hidden()

    # A reply appears on the open thread page.
    reading.goto(f"/posts/{first}")
    replies = reading.locator(".replies-root > li.reply")
    expect(replies).to_have_count(0)
    driver.post(author, "A live reply", parent=first)
    expect(replies).to_have_count(1, timeout=3_000)
    expect(replies.first).to_contain_text("A live reply")
