"""Live updates in a real browser (issue 6's "done when"): two users in separate browser contexts;
the followed user's new post is announced on the other's For You page within 2 seconds, without
reloading, and a click inserts it; a new reply appears on an open thread page; reply counts stay
current on open pages (thread and For You).

The app runs as `microblog serve` (pages and /events/ on one port, as under `make run`) against
the test database; the users are created by a writer process (tests/stream/driver.py).
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import log_in
from tests.stream.helpers import Driver, app_process, database_url, free_port, subprocess_env

pytestmark = pytest.mark.browser

with contextlib.suppress(ImportError):  # the dev extra installs it; test_browser skips without
    from playwright.sync_api import BrowserContext, Page, expect


@pytest.fixture
def served(db: None, tmp_path: Path) -> Iterator[tuple[str, Driver]]:
    with database_url(tmp_path) as url:
        driver = Driver(url)
        port = free_port()
        command = ["serve", "--port", str(port), "--job-workers", "0", "--stream", "same-port"]
        # The production heartbeat: nothing here may depend on a stream waking up often.
        env = subprocess_env(url, STREAM_HEARTBEAT_SECONDS="15")
        try:
            with app_process(command, env, port) as base:
                yield base, driver
        finally:
            driver.close()


@pytest.fixture
def open_page(
    browser_context: Callable[..., "BrowserContext"], served: tuple[str, Driver]
) -> Callable[..., "Page"]:
    def make(**options: Any) -> "Page":
        return browser_context(served[0], **options).new_page()

    return make


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


def test_reply_counts_stay_current_on_open_pages(
    served: tuple[str, Driver], open_page: Callable[..., "Page"]
) -> None:
    _base, driver = served
    reader, _ = driver.user("reader")
    author, _ = driver.user("author")
    driver.user("replier")
    driver.follow(reader, author)
    post = driver.post(author, "Reply to me")

    # The reader has the post open in two tabs: For You, and its thread page.
    reading = open_page()
    log_in(reading, "reader")
    in_feed = reading.locator(f"#post-{post} [data-replies-count]")
    expect(in_feed).to_have_text("0 replies")
    thread = reading.context.new_page()
    thread.goto(f"/posts/{post}")
    featured = thread.locator(f"#post-{post} [data-replies-count]")
    heading = thread.locator("h2[data-replies-count]")
    expect(featured).to_have_text("0 replies")
    expect(heading).to_have_text("0 replies")

    # Someone else replies through the form.
    replying = open_page()
    log_in(replying, "replier")
    replying.goto(f"/posts/{post}")
    replying.get_by_label("Your reply").fill("A reply from elsewhere")
    replying.get_by_role("button", name="Reply", exact=True).click()
    expect(replying.locator(".flash")).to_contain_text("Your reply was posted.")

    # Both tabs count it without reloading; the thread shows the reply.
    expect(featured).to_have_text("1 reply", timeout=3_000)
    expect(heading).to_have_text("1 reply")
    expect(in_feed).to_have_text("1 reply", timeout=3_000)
    reply = thread.locator(".replies-root > li.reply > article.post")
    expect(reply).to_have_count(1)
    expect(reply).to_contain_text("A reply from elsewhere")

    # A reply to that reply: its card on the open thread page counts it too.
    reply_id = int(reply.get_attribute("id").removeprefix("post-"))
    driver.post(author, "Answering the reply", parent=reply_id)
    expect(reply.locator("[data-replies-count]")).to_have_text("1 reply", timeout=3_000)
    expect(featured).to_have_text("1 reply")  # still one direct reply


def test_a_follow_applies_to_the_open_feed_before_the_next_post(
    served: tuple[str, Driver], open_page: Callable[..., "Page"]
) -> None:
    """Issue 11 item 2: Bob has For You open; in another tab he follows carol; carol posts: the
    open page announces it at once (it used to filter with the old follow list until the stream
    woke up), and her next post makes "2 new posts". An unfollow applies the same way (the
    order of events is checked exactly in tests/stream/test_stream.py)."""
    _base, driver = served
    bob, _ = driver.user("bob")
    carol, _ = driver.user("carol")

    feed_tab = open_page()
    log_in(feed_tab, "bob")
    feed = feed_tab.locator(".feed")
    expect(feed).to_have_attribute("data-stream-state", "open")  # the server listens for it
    button = feed_tab.locator("[data-new-posts]")
    posts = feed.locator("article.post")

    profile_tab = feed_tab.context.new_page()
    profile_tab.goto("/@carol")
    profile_tab.get_by_role("button", name="Follow", exact=True).click()
    expect(profile_tab.get_by_role("button", name="Unfollow", exact=True)).to_be_visible()

    driver.post(carol, "Carol right after the follow")
    expect(button).to_have_text("1 new post", timeout=3_000)
    driver.post(carol, "Carol again")
    expect(button).to_have_text("2 new posts", timeout=3_000)
    button.click()
    expect(posts).to_have_count(2)
    expect(posts.first).to_contain_text("Carol again")
    expect(button).to_be_hidden()

    # Unfollowed in the other tab: carol's next post is not announced; Bob's own post is, alone.
    profile_tab.get_by_role("button", name="Unfollow", exact=True).click()
    expect(profile_tab.get_by_role("button", name="Follow", exact=True)).to_be_visible()
    driver.post(carol, "Carol after the unfollow")
    driver.post(bob, "Bob's own post")
    expect(button).to_have_text("1 new post", timeout=3_000)
    button.click()
    expect(posts).to_have_count(3)
    expect(posts.first).to_contain_text("Bob's own post")
    expect(feed).not_to_contain_text("Carol after the unfollow")


def test_a_mention_raises_the_unread_count_live_in_the_other_browser(
    served: tuple[str, Driver], open_page: Callable[..., "Page"]
) -> None:
    """User A mentions user B in the browser; B's top bar shows the unread notification in B's
    own browser context without reloading, and B's notifications page names A."""
    _base, driver = served
    driver.user("writer")
    driver.user("reader")

    reading = open_page()
    log_in(reading, "reader")
    badge = reading.locator("[data-unread-count]")
    expect(badge).to_be_hidden()
    expect(reading.locator(".feed[data-stream]")).to_have_attribute("data-stream-state", "open")

    writing = open_page()
    log_in(writing, "writer")
    writing.get_by_label("What's happening?").fill("Thanks @Reader for the tip")
    writing.get_by_role("button", name="Post", exact=True).click()
    expect(writing.locator(".flash")).to_contain_text("Your post was published.")
    expect(writing.locator("a.mention")).to_have_attribute("href", "/@reader")

    expect(badge).to_be_visible(timeout=2_000)
    expect(badge).to_contain_text("1")
    reading.get_by_role("link", name="Notifications").click()
    expect(reading.locator(".notification")).to_contain_text("writer mentioned you")
    expect(reading.locator(".notification")).to_contain_text("Thanks @Reader for the tip")
    expect(reading.locator("[data-unread-count]")).to_be_hidden()


def test_a_like_a_repost_and_a_mention_reach_the_author_live_in_another_browser(
    served: tuple[str, Driver], open_page: Callable[..., "Page"]
) -> None:
    """Issue 16's browser test: a fan likes and reposts the author's post and mentions the
    author, all through the browser; the author, with For You open in a browser context of their
    own, sees the unread count rise with each without reloading (the like and the repost arrive
    through the job that folds grouped notifications, run by the app as a worker would), then
    opens the notifications page and finds all three."""
    _base, driver = served
    author, _ = driver.user("author")
    driver.user("fan")
    post = driver.post(author, "Something worth passing on")

    reading = open_page()
    log_in(reading, "author")
    badge = reading.locator("[data-unread-count]")
    expect(badge).to_be_hidden()
    expect(reading.locator(".feed[data-stream]")).to_have_attribute("data-stream-state", "open")

    writing = open_page()
    log_in(writing, "fan")
    writing.goto("/all")
    card = writing.locator(f"#post-{post}")
    card.get_by_role("button", name="Like").click()
    expect(card.get_by_role("button", name="Unlike")).to_be_visible()
    expect(badge).to_be_visible(timeout=3_000)
    expect(badge).to_have_text(", unread: 1", timeout=3_000)

    card.get_by_role("button", name="Repost").click()
    expect(card.get_by_role("button", name="Undo repost")).to_be_visible()
    expect(badge).to_have_text(", unread: 2", timeout=3_000)

    writing.goto("/")
    writing.get_by_label("What's happening?").fill("You should all follow @author")
    writing.get_by_role("button", name="Post", exact=True).click()
    expect(writing.locator(".flash")).to_contain_text("Your post was published.")
    expect(badge).to_have_text(", unread: 3", timeout=3_000)
    expect(reading.locator(".feed article.post")).to_have_count(1)  # the page was not reloaded

    reading.get_by_role("link", name="Notifications").click()
    notes = reading.locator(".notification .notification-text")
    expect(notes).to_have_count(3)
    expect(notes.nth(0)).to_contain_text("fan mentioned you")
    expect(notes.nth(1)).to_contain_text("fan reposted your post")
    expect(notes.nth(2)).to_contain_text("fan liked your post")
    expect(reading.locator(".notification").nth(0)).to_contain_text("You should all follow @author")
    expect(reading.locator("[data-unread-count]")).to_be_hidden()
