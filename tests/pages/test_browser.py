"""The app in a real browser: Debian's Chromium driven by Playwright against Django's live server.

Skipped (with a note in the summary) when /usr/bin/chromium is missing, unless REQUIRE_BROWSER=1.
"""

import contextlib
import re
from collections.abc import Callable
from typing import Any

import pytest

from microblog.accounts.services import user_create
from microblog.posts.models import CONTENT_MAX_LENGTH
from microblog.posts.services import post_create
from tests.conftest import PASSWORD, AxeWatch, feed_posts, flash, log_in

pytestmark = pytest.mark.browser

with contextlib.suppress(ImportError):  # the dev extra installs it; the fixture skips without
    from playwright.sync_api import Browser, Page, expect


def test_sign_up_post_follow_reply_delete_log_out_and_in(new_page: Callable[..., "Page"]) -> None:
    # Carol signs up through the form.
    carol = new_page()
    carol.goto("/signup")
    carol.get_by_label("Username").fill("carol")
    carol.get_by_label("Password", exact=True).fill(PASSWORD)
    carol.get_by_label("Confirm password").fill(PASSWORD)
    carol.get_by_role("button", name="Sign up").click()
    expect(carol).to_have_url(re.compile(r"/$"))
    expect(flash(carol)).to_contain_text("Welcome to Microblog, carol!")
    expect(carol.get_by_role("link", name="For You")).to_have_attribute("aria-current", "page")

    # She writes a post; the counter counts down as she types.
    compose = carol.get_by_label("What's happening?")
    counter = carol.locator("output.counter")
    expect(counter).to_have_text(f"{CONTENT_MAX_LENGTH} characters left")
    compose.press_sequentially("Hello from carol")
    expect(counter).to_have_text(f"{CONTENT_MAX_LENGTH - 16} characters left")
    compose.press("Backspace")
    expect(counter).to_have_text(f"{CONTENT_MAX_LENGTH - 15} characters left")
    compose.press("l")
    carol.get_by_role("button", name="Post", exact=True).click()
    expect(flash(carol)).to_contain_text("Your post was published.")
    expect(feed_posts(carol).first).to_contain_text("Hello from carol")

    # Dave, in a browser of his own, logs in and posts.
    user_create(username="dave", password=PASSWORD)
    dave = new_page()
    log_in(dave, "dave")
    dave.get_by_label("What's happening?").fill("Dave's first post")
    dave.get_by_role("button", name="Post", exact=True).click()
    expect(flash(dave)).to_contain_text("Your post was published.")
    expect(feed_posts(dave).first).to_contain_text("Dave's first post")

    # Dave's post is not in Carol's For You until she follows him.
    carol.goto("/")
    expect(feed_posts(carol)).to_have_count(1)
    expect(carol.locator(".feed")).not_to_contain_text("Dave's first post")

    # Carol follows Dave from his profile.
    carol.goto("/@dave")
    counts = carol.locator(".profile-header .counts")
    expect(counts).to_contain_text("1 post")
    expect(counts).to_contain_text("0 followers")
    carol.get_by_role("button", name="Follow", exact=True).click()
    expect(flash(carol)).to_contain_text("You are now following dave.")
    expect(counts).to_contain_text("1 follower")
    expect(counts).not_to_contain_text("followers")
    expect(carol.get_by_role("button", name="Unfollow")).to_be_visible()

    carol.goto("/@carol")
    expect(carol.locator(".profile-header .counts")).to_contain_text("1 following")

    # Dave's post now appears in Carol's For You, above her own.
    carol.goto("/")
    expect(feed_posts(carol)).to_have_count(2)
    expect(feed_posts(carol).first).to_contain_text("Dave's first post")
    expect(feed_posts(carol).nth(1)).to_contain_text("Hello from carol")

    # She replies to it from the thread page.
    feed_posts(carol).first.get_by_role("link", name="0 replies").click()
    expect(carol.locator(".post-featured")).to_contain_text("Dave's first post")
    expect(carol.get_by_label("Your reply")).to_have_attribute("placeholder", "Post your reply")
    carol.get_by_label("Your reply").fill("Welcome aboard, dave!")
    carol.get_by_role("button", name="Reply").click()
    expect(flash(carol)).to_contain_text("Your reply was posted.")
    expect(carol.get_by_role("heading", name="1 reply")).to_be_visible()
    reply = carol.locator(".replies-root .reply")
    expect(reply).to_have_count(1)
    expect(reply).to_contain_text("carol")
    expect(reply).to_contain_text("Welcome aboard, dave!")

    # Dave sees the reply on his thread too.
    dave.goto(carol.url)
    expect(dave.locator(".replies-root .reply")).to_contain_text("Welcome aboard, dave!")
    expect(dave.locator(".replies-root")).not_to_contain_text("Delete")

    # Carol deletes her first post, through the confirm page.
    carol.goto("/@carol")
    expect(carol.locator(".profile-header .counts")).to_contain_text("2 posts")
    own_post = feed_posts(carol).filter(has_text="Hello from carol")
    own_post.get_by_role("link", name="Delete").click()
    expect(carol.get_by_role("heading", name="Delete this post?")).to_be_visible()
    expect(carol.locator("article.post")).to_contain_text("Hello from carol")
    carol.get_by_role("button", name="Delete post").click()
    expect(flash(carol)).to_contain_text("Your post was deleted.")
    expect(carol.locator(".feed")).not_to_contain_text("Hello from carol")
    carol.goto("/@carol")
    expect(carol.locator(".profile-header .counts")).to_contain_text("1 post")
    expect(carol.locator(".profile-header .counts")).not_to_contain_text("posts")

    # She logs out with the button in the top bar...
    carol.get_by_role("button", name="Log out").click()
    expect(flash(carol)).to_contain_text("You have been logged out.")
    topbar = carol.locator(".topbar")
    expect(topbar.get_by_role("link", name="Log in")).to_be_visible()
    expect(topbar.get_by_role("button", name="Log out")).to_have_count(0)
    expect(carol.locator(".hero")).to_contain_text("What's happening")

    # ...and back in.
    log_in(carol, "carol")
    expect(carol.get_by_role("button", name="Log out")).to_be_visible()
    expect(feed_posts(carol).first).to_contain_text("Dave's first post")


def _twenty_five_posts() -> None:
    author = user_create(username="prolific", password=PASSWORD)
    for number in range(1, 26):
        post_create(author=author, content=f"Numbered post {number}")


def test_load_more_appends_the_next_page_with_htmx(new_page: Callable[..., "Page"]) -> None:
    _twenty_five_posts()
    page = new_page()
    page.goto("/")
    expect(feed_posts(page)).to_have_count(20)
    expect(feed_posts(page).first).to_contain_text("Numbered post 25")
    url = page.url
    # A marker on the window survives an htmx swap but not a page load.
    page.evaluate("window.stillTheSamePage = true")

    page.get_by_role("link", name="Load more").click()
    expect(feed_posts(page)).to_have_count(25)
    expect(feed_posts(page).last).to_contain_text("Numbered post 1")
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    assert page.url == url
    assert page.evaluate("window.stillTheSamePage") is True
    # Each post is shown once.
    texts = feed_posts(page).locator(".post-content").all_inner_texts()
    assert sorted(texts) == sorted(f"Numbered post {n}" for n in range(1, 26))


def test_load_more_works_without_javascript(new_page: Callable[..., "Page"]) -> None:
    _twenty_five_posts()
    page = new_page(java_script_enabled=False)
    page.goto("/")
    expect(feed_posts(page)).to_have_count(20)

    page.get_by_role("link", name="Load more").click()
    expect(page).to_have_url(re.compile(r"/\?cursor=\d+$"))
    expect(feed_posts(page)).to_have_count(5)
    expect(feed_posts(page).first).to_contain_text("Numbered post 5")
    expect(feed_posts(page).last).to_contain_text("Numbered post 1")
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    # A full page, not a fragment: the layout is there.
    expect(page.get_by_role("link", name="Microblog")).to_be_visible()


def test_long_names_and_deep_threads_fit_a_phone_screen(new_page: Callable[..., "Page"]) -> None:
    long_name = "a_really_long_username_that_goes_on_and_on_forever"
    author = user_create(username=long_name, password=PASSWORD)
    post = post_create(author=author, content="https://example.com/" + "no-spaces-" * 15)
    parent = post
    for depth in range(5):
        parent = post_create(author=author, content=f"Reply at depth {depth}", parent_id=parent.id)

    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    for path in ("/", f"/@{long_name}", f"/posts/{post.id}"):
        page.goto(path)
        expect(page.locator("article.post").first).to_be_visible()
        # (Not window.innerWidth: a phone zooms out to show a page that is too wide.)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide, wider than a 390px phone screen"
    # On the thread (the last page): the deepest reply fits across the screen, its time
    # visible beside the cut-off name.
    deepest = page.locator("article.post", has_text="Reply at depth 4")
    deepest.scroll_into_view_if_needed()
    expect(deepest.locator(".post-time")).to_be_in_viewport()
    for part in (deepest, deepest.locator(".post-time")):
        box = part.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390


# --- the Content Security Policy in a real browser (issue 5, item 3) ------------------------------

# Every violation Chromium reports is sent to the console, where the test collects it. (Init
# scripts run through the DevTools protocol, outside the page's policy.)
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + event.blockedURI
    + " at " + event.sourceFile + ":" + event.lineNumber);
});
"""


def watch_csp(page: "Page") -> tuple[list[str], list[str]]:
    """(CSP violations, uncaught script errors) seen by the page from now on, over navigations."""
    violations: list[str] = []
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text or message.text.startswith("CSP violation"):
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    page.add_init_script(CSP_LISTENER)
    return violations, errors


def visit(page: "Page", path: str) -> None:
    response = page.goto(path)
    assert response is not None
    assert response.status in {200, 404}, (path, response.status)
    assert "script-src 'self'" in (response.header_value("content-security-policy") or ""), path
    page.wait_for_load_state("load")


def assert_the_watch_works(page: "Page") -> None:
    """A positive control: an inline style attribute is refused and reported."""
    with page.expect_console_message(lambda m: m.text.startswith("CSP violation")):
        page.evaluate(
            "document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')"
        )


def test_main_pages_run_under_the_policy_with_no_violation(
    new_page: Callable[..., "Page"],
) -> None:
    _twenty_five_posts()
    alice = user_create(username="alice", password=PASSWORD)
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    post = post_create(author=alice, content="A <b>thread</b> to look at")
    post_create(author=alice, content="A reply", parent_id=post.id)

    page = new_page()
    violations, errors = watch_csp(page)
    post_create(author=alice, content="A #tagged post")
    for path in ("/", "/all", "/login", "/signup", "/@prolific", f"/posts/{post.id}", "/nope"):
        visit(page, path)
    for path in ("/search", "/search?q=thread", "/tags", "/tags/tagged"):
        visit(page, path)
    # htmx runs with the settings that keep it inside the policy, and injected no <style>.
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    assert page.evaluate("htmx.config.allowEval") is False
    assert page.evaluate("document.querySelectorAll('style, [style]').length") == 0

    # Load more (htmx) still appends the next page in place.
    visit(page, "/all")
    expect(feed_posts(page)).to_have_count(20)
    page.get_by_role("link", name="Load more").click()
    expect(feed_posts(page).nth(20)).to_be_visible()
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)

    # Signed in: the compose box's live counter (app.js) still counts, and posting works.
    log_in(page, "alice")
    for path in ("/following", "/settings", "/@alice", f"/posts/{post.id}/delete", "/staff/jobs"):
        visit(page, path)
    visit(page, "/")
    counter = page.locator("output.counter")
    expect(counter).to_have_text(f"{CONTENT_MAX_LENGTH} characters left")
    page.get_by_label("What's happening?").press_sequentially("Under CSP")
    expect(counter).to_have_text(f"{CONTENT_MAX_LENGTH - 9} characters left")
    page.get_by_role("button", name="Post", exact=True).click()
    expect(flash(page)).to_contain_text("Your post was published.")
    visit(page, f"/posts/{post.id}")
    page.get_by_label("Your reply").press_sequentially("ok")
    expect(page.locator("output.counter")).to_contain_text("characters left")
    assert page.evaluate("document.querySelectorAll('style, [style]').length") == 0

    assert violations == []
    assert errors == []
    assert_the_watch_works(page)
    assert violations  # Chromium's own report and the listener's


def test_the_admin_works_under_the_policy(new_page: Callable[..., "Page"]) -> None:
    admin = user_create(username="root", password=PASSWORD)
    admin.is_staff = admin.is_superuser = True
    admin.save(update_fields=["is_staff", "is_superuser"])
    post = post_create(author=admin, content="Moderate me")

    page = new_page()
    violations, errors = watch_csp(page)
    visit(page, "/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    # The change list's scripts (they carry the nonce) run: "select all" checks every row.
    visit(page, "/admin/accounts/user/")
    page.locator("#action-toggle").check()
    expect(page.locator("input.action-select").first).to_be_checked()
    expect(page.locator(".action-counter")).to_contain_text("1 of 1 selected")

    # The change form's filter widgets are built by the admin's JavaScript.
    visit(page, f"/admin/accounts/user/{admin.id}/change/")
    expect(page.locator(".selector").first).to_be_visible()
    for path in (
        "/admin/",
        "/admin/accounts/user/add/",
        f"/admin/accounts/user/{admin.id}/password/",
        "/admin/posts/post/",
        "/admin/posts/post/?q=Moderate",
        f"/admin/posts/post/{post.id}/change/",
        f"/admin/posts/post/{post.id}/delete/",
    ):
        visit(page, path)

    assert violations == []
    assert errors == []
    assert_the_watch_works(page)


def test_the_counter_says_how_far_over_and_sign_up_starts_in_the_username(
    new_page: Callable[..., "Page"],
) -> None:
    user_create(username="alice", password=PASSWORD)
    page = new_page()
    page.goto("/signup")
    expect(page.get_by_label("Username")).to_be_focused()

    log_in(page, "alice")
    box = page.get_by_label("What's happening?")
    counter = page.locator("output.counter")
    post = page.get_by_role("button", name="Post", exact=True)
    box.fill("x" * (CONTENT_MAX_LENGTH + 1))
    expect(counter).to_have_text("1 character over")
    expect(post).to_be_disabled()
    box.fill("x" * (CONTENT_MAX_LENGTH + 2))
    expect(counter).to_have_text("2 characters over")
    box.fill("x" * (CONTENT_MAX_LENGTH - 1))
    expect(counter).to_have_text("1 character left")
    expect(post).to_be_enabled()


def test_the_accessibility_check_catches_a_violation(browser: "Browser", live_server: Any) -> None:
    """A positive control for the axe-core check every browser test runs: a page with an image
    without alt text and no language is reported, and a click on it is held until the scan."""
    context = browser.new_context(base_url=live_server.url)
    try:
        watch = AxeWatch(context)
        page = context.new_page()
        bad = "<!doctype html><title>x</title><main><h1>x</h1><img src='/x.png'></main>"
        page.route(
            "**/axe-control", lambda route: route.fulfill(body=bad, content_type="text/html")
        )
        page.goto("/axe-control")
        watch.finish_all()
    finally:
        context.close()
    found = "\n".join(watch.violations)
    assert "image-alt (critical)" in found
    assert "html-has-lang (serious)" in found
    assert watch.scanned == [f"{live_server.url}/axe-control"]
