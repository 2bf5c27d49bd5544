"""Moderation end to end in a real browser: a reader reports a post until it is hidden, its
author sees it marked, a moderator restores it from the queue and finds it in the audit log;
then the reader blocks and mutes accounts and undoes both from the settings page."""

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from microblog.accounts.models import User
from microblog.accounts.services import user_create
from microblog.follows.services import follow_create
from microblog.moderation.services import report_create
from microblog.posts.services import post_create
from tests.conftest import PASSWORD, flash, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the dev extra installs it
    expect = None

pytestmark = pytest.mark.browser


def card(page: "Page", content: str):  # type: ignore[no-untyped-def]
    return page.locator("article.post", has_text=content)


def test_report_hide_review_restore_block_and_mute(
    new_page: Callable[..., "Page"],
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.REPORTS_TO_HIDE = 3
    alice = user_create(username="alice", password=PASSWORD)
    bob = user_create(username="bob", password=PASSWORD)
    carol = user_create(username="carol", password=PASSWORD)  # followed by Bob, then muted
    staff = User.objects.create_user(username="moderator", password=PASSWORD, is_staff=True)
    follow_create(follower=bob, followed=alice)
    follow_create(follower=bob, followed=carol)
    post = post_create(author=alice, content="A borderline post")
    post_create(author=carol, content="Carol posts all day")
    for n in range(2):
        reporter = user_create(username=f"reporter{n}", password=PASSWORD)
        report_create(reporter=reporter, post_id=post.id, reason="spam")

    # Bob sees the post in For You and reports it: the third report hides it.
    reader = new_page()
    log_in(reader, "bob")
    expect(card(reader, "A borderline post")).to_be_visible()
    card(reader, "A borderline post").get_by_role("link", name="Report").click()
    expect(reader.get_by_role("heading", name="Report this post")).to_be_visible()
    reader.get_by_label("Spam or scam").check()
    reader.get_by_label("Anything the moderators should know?").fill("Same link <b>everywhere</b>")
    reader.get_by_role("button", name="Send report").click()
    # Back on For You, where the report was made (the post's own page is now a 404 for Bob).
    expect(flash(reader)).to_contain_text("Thank you. The moderators will review this post.")
    expect(reader.get_by_role("heading", name="For You")).to_be_attached()
    assert reader.url.endswith("/"), reader.url
    reader.goto("/")
    expect(card(reader, "Carol posts all day")).to_be_visible()
    expect(card(reader, "A borderline post")).to_have_count(0)

    # Alice still sees her post, marked.
    author = new_page()
    log_in(author, "alice")
    author.goto("/@alice")
    expect(card(author, "A borderline post")).to_contain_text("Hidden: waiting for review")

    # The moderator finds it first in the queue, with the reasons and Bob's note, and restores it.
    moderator = new_page()
    log_in(moderator, staff.username)
    moderator.get_by_role("link", name="Moderation").click()
    item = moderator.locator(".queue-item", has_text="A borderline post")
    expect(item).to_contain_text("3 open reports: hidden until reviewed")
    expect(item).to_contain_text("Spam or scam: 3")
    expect(item).to_contain_text("Same link <b>everywhere</b>")  # shown as text, not markup
    item.get_by_role("button", name="Restore").click()
    expect(flash(moderator)).to_contain_text("The post is visible again.")
    expect(moderator.get_by_text("Nothing to review.")).to_be_visible()
    moderator.get_by_role("link", name="Audit log").click()
    rows = moderator.locator("table.log tbody tr")
    expect(rows.nth(0)).to_contain_text("moderator")
    expect(rows.nth(0)).to_contain_text("Restored")
    expect(rows.nth(1)).to_contain_text("Hidden automatically")

    reader.goto("/")
    expect(card(reader, "A borderline post")).to_be_visible()
    author.goto("/@alice")
    expect(card(author, "A borderline post")).not_to_contain_text("Hidden")

    # Bob blocks Alice (after a confirmation page): her posts leave every list he sees.
    reader.goto("/@alice")
    reader.get_by_role("link", name="Block").click()
    expect(reader.get_by_role("heading", name="Block alice?")).to_be_visible()
    reader.get_by_role("button", name="Block alice").click()
    expect(flash(reader)).to_contain_text("You blocked alice.")
    expect(reader.get_by_text("You have blocked alice.")).to_be_visible()
    reader.goto("/all")
    expect(card(reader, "Carol posts all day")).to_be_visible()
    expect(card(reader, "A borderline post")).to_have_count(0)

    # ... and mutes Carol: her posts leave his feeds, her profile still shows them.
    reader.goto("/@carol")
    reader.get_by_role("button", name="Mute").click()
    expect(flash(reader)).to_contain_text("You muted carol.")
    expect(card(reader, "Carol posts all day")).to_be_visible()
    reader.goto("/")
    expect(card(reader, "Carol posts all day")).to_have_count(0)

    # Both are listed in settings, and undone there.
    reader.goto("/settings")
    blocked = reader.locator("section", has=reader.get_by_role("heading", name="Blocked accounts"))
    muted = reader.locator("section", has=reader.get_by_role("heading", name="Muted accounts"))
    expect(blocked).to_contain_text("alice")
    expect(muted).to_contain_text("carol")
    blocked.get_by_role("button", name="Unblock").click()
    expect(flash(reader)).to_contain_text("You unblocked alice.")
    muted.get_by_role("button", name="Unmute").click()
    expect(flash(reader)).to_contain_text("You unmuted carol.")
    expect(blocked).to_contain_text("You haven't blocked anyone.")
    expect(muted).to_contain_text("You haven't muted anyone.")
    reader.goto("/all")
    expect(card(reader, "A borderline post")).to_be_visible()
    expect(card(reader, "Carol posts all day")).to_be_visible()
