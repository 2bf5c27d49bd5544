"""Moderation: reporting posts, the report threshold, the staff review queue and its audit log,
blocking and muting. Every case drives real requests and checks what each user then sees."""

import html
import re
from collections.abc import Callable

import pytest
from django.test import Client
from hypothesis import given

from microblog.accounts.models import User
from microblog.core.errors import Invalid, ServiceError
from microblog.follows.models import Follow
from microblog.follows.services import follow_create
from microblog.moderation.models import Block, ModerationAction, Mute, Report
from microblog.moderation.services import block_create, mute_create, report_create, review
from microblog.posts.models import Post
from tests.conftest import refreshed
from tests.security.test_bad_input import PROPERTY_SETTINGS, TEXTS, acceptable, trimmed

THRESHOLD = 3


@pytest.fixture(autouse=True)
def low_threshold(settings) -> None:
    settings.REPORTS_TO_HIDE = THRESHOLD


def text(response) -> str:
    return html.unescape(response.content.decode())


def shown_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'id="post-(\d+)"', response.content.decode())]


def flashes(response) -> str:
    return " | ".join(str(m) for m in response.context["messages"]) if response.context else ""


@pytest.fixture
def staff(make_user: Callable[..., User]) -> User:
    return make_user("moderator", is_staff=True)


@pytest.fixture
def reporters(make_user: Callable[..., User]) -> list[User]:
    return [make_user(f"reporter{n}") for n in range(THRESHOLD)]


def report_via_form(client: Client, post: Post, reason: str = "spam", note: str = ""):
    return client.post(f"/posts/{post.id}/report", {"reason": reason, "text": note})


# --- reporting ------------------------------------------------------------------------------


def test_report_form_lists_the_reasons_and_saves_one_report(alice, bob, make_post, client_for):
    post = make_post(alice, "buy cheap watches")
    client = client_for(bob)
    page = client.get(f"/posts/{post.id}/report")
    assert page.status_code == 200
    for label in ("Spam or scam", "Harassment or bullying", "Something else"):
        assert label in text(page)

    response = report_via_form(client, post, "spam", "  same text in 40 posts  ")
    assert response.status_code == 302 and response["Location"] == f"/posts/{post.id}"
    follow = client.get(response["Location"])
    assert "The moderators will review this post." in text(follow)
    report = Report.objects.get()
    assert (report.post_id, report.reporter_id, report.reason) == (post.id, bob.id, "spam")
    assert report.text == "same text in 40 posts"
    assert report.resolved_at is None
    post.refresh_from_db()
    assert post.open_reports == 1 and not post.is_hidden


def test_a_second_report_of_the_same_post_is_refused_with_a_message(
    alice, bob, make_post, client_for
):
    post = make_post(alice)
    client = client_for(bob)
    report_via_form(client, post)
    response = report_via_form(client, post, "hate")
    assert "You have already reported this post." in text(response)
    assert Report.objects.count() == 1
    assert refreshed_post(post).open_reports == 1


def test_the_report_page_of_a_post_already_reported_says_so_instead_of_the_form(
    alice, bob, make_post, client_for
):
    post = make_post(alice)
    client = client_for(bob)
    report_via_form(client, post)
    page = client.get(f"/posts/{post.id}/report", headers={"referer": "http://testserver/all"})
    assert page.status_code == 200
    assert "You have already reported this post." in text(page)
    assert "Send report" not in text(page)
    assert 'href="/all">Back</a>' in text(page)


def test_the_report_that_hides_a_post_returns_the_reporter_where_they_were(
    alice, bob, make_post, client_for, make_user
):
    """The form carries the page it was opened from; the reporter goes back there with the
    thanks, not to the post's page, which the report just hid from them."""
    post = make_post(alice, "the last straw")
    for n in range(THRESHOLD - 1):
        report_create(reporter=make_user(f"early{n}"), post_id=post.id, reason="spam")
    client = client_for(bob)
    form = client.get(f"/posts/{post.id}/report", headers={"referer": "http://testserver/all"})
    assert '<input type="hidden" name="next" value="/all">' in text(form)

    response = client.post(f"/posts/{post.id}/report", {"reason": "spam", "next": "/all"})

    assert response.status_code == 302 and response["Location"] == "/all"
    back = client.get("/all")
    assert back.status_code == 200
    assert "Thank you. The moderators will review this post." in text(back)
    assert post.id not in shown_ids(back)


def test_the_report_that_hides_a_post_opened_from_its_own_page_goes_home(
    alice, bob, make_post, client_for, make_user
):
    post = make_post(alice, "the last straw")
    for n in range(THRESHOLD - 1):
        report_create(reporter=make_user(f"early{n}"), post_id=post.id, reason="spam")
    client = client_for(bob)

    response = client.post(
        f"/posts/{post.id}/report", {"reason": "spam", "next": f"/posts/{post.id}"}
    )

    assert response.status_code == 302 and response["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Thank you. The moderators will review this post." in text(home)


def test_report_next_must_stay_on_the_site(alice, bob, make_post, client_for):
    post = make_post(alice)
    response = client_for(bob).post(
        f"/posts/{post.id}/report", {"reason": "spam", "next": "https://evil.example/"}
    )
    assert response["Location"] == f"/posts/{post.id}"


def refreshed_post(post: Post) -> Post:
    post.refresh_from_db()
    return post


def test_reporting_your_own_post_is_refused(alice, make_post, client_for):
    post = make_post(alice)
    client = client_for(alice)
    response = report_via_form(client, post)
    assert "You can't report your own post." in text(client.get(response["Location"]))
    assert not Report.objects.exists()
    with pytest.raises(ServiceError):
        report_create(reporter=alice, post_id=post.id, reason="spam")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Choose a reason from the list."),
        ({"reason": "not-a-reason"}, "Choose a reason from the list."),
        ({"reason": "<script>"}, "Choose a reason from the list."),
        ({"reason": "spam", "text": "x" * 501}, "The report is 501 characters long"),
        ({"reason": "spam", "text": "hi \u202e there"}, "Remove the invisible control characters"),
        ({"reason": "spam", "text": "a\x00b"}, "Null characters are not allowed."),
    ],
)
def test_bad_report_forms_are_400_with_the_message_and_save_nothing(
    alice, bob, make_post, client_for, data, message
):
    post = make_post(alice)
    response = client_for(bob).post(f"/posts/{post.id}/report", data)
    assert response.status_code == 400
    assert message in text(response)
    assert not Report.objects.exists()
    assert refreshed_post(post).open_reports == 0


def test_reporting_needs_log_in_and_a_visible_post(client, alice, bob, make_post, client_for):
    post = make_post(alice)
    response = client.post(f"/posts/{post.id}/report", {"reason": "spam"})
    assert response.status_code == 302 and response["Location"].startswith("/login")
    assert client_for(bob).get("/posts/99999/report").status_code == 404
    Post.objects.filter(id=post.id).update(is_hidden=True)
    assert client_for(bob).post(f"/posts/{post.id}/report", {"reason": "spam"}).status_code == 404
    assert not Report.objects.exists()


def test_report_text_is_shown_escaped_to_staff(alice, bob, make_post, client_for, staff):
    post = make_post(alice)
    report_via_form(client_for(bob), post, "other", "<script>alert(1)</script>")
    page = client_for(staff).get("/staff/moderation").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


@PROPERTY_SETTINGS
@given(note=TEXTS)
def test_report_create_stores_clean_text_or_refuses_and_saves_nothing(
    alice: User, bob: User, note: str
) -> None:
    Report.objects.all().delete()
    post = Post.objects.filter(author=alice).first() or Post.objects.create(
        author=alice, content="x", created_at="2026-01-01T00:00:00Z"
    )
    try:
        report = report_create(reporter=bob, post_id=post.id, reason="other", text=note)
    except Invalid as error:
        assert error.messages and all(error.messages)
        assert not Report.objects.exists()
        assert not acceptable(note, 500, allow_empty=True)
    else:
        assert acceptable(note, 500, allow_empty=True)
        assert Report.objects.get(id=report.id).text == trimmed(note)


# --- the threshold --------------------------------------------------------------------------


def test_enough_reports_hide_a_post_from_everyone_but_its_author(
    alice, bob, make_post, client_for, reporters
):
    """The THRESHOLD-th report hides the post from feeds, lists and its page; the author still
    sees it everywhere, marked as waiting for review."""
    follow_create(follower=bob, followed=alice)
    post = make_post(alice, "a reported post")
    reply = make_post(alice, "a reported reply", parent=make_post(bob, "bob asks"))
    for reporter in reporters:
        for target in (post, reply):
            report_via_form(client_for(reporter), target, "harassment")

    post.refresh_from_db()
    assert post.is_hidden and post.open_reports == THRESHOLD
    log = ModerationAction.objects.get(post_id=post.id)
    assert (log.action, log.actor_id, log.post_content) == ("auto_hide", None, "a reported post")

    as_bob = client_for(bob)
    for path in ("/", "/following", "/all", "/@alice"):
        assert post.id not in shown_ids(as_bob.get(path)), path
        assert reply.id not in shown_ids(as_bob.get(path)), path
    assert as_bob.get(f"/posts/{post.id}").status_code == 404
    assert reply.id not in shown_ids(as_bob.get(f"/posts/{reply.parent_id}"))
    assert post.id not in shown_ids(Client().get("/all"))
    assert Client().get(f"/posts/{post.id}").status_code == 404

    as_alice = client_for(alice)
    for path in ("/", "/all", "/@alice", f"/posts/{post.id}"):
        response = as_alice.get(path)
        assert post.id in shown_ids(response), path
        assert "Hidden: waiting for review" in text(response), path
    assert reply.id in shown_ids(as_alice.get(f"/posts/{reply.parent_id}"))


def test_reports_below_the_threshold_change_nothing_for_readers(
    alice, bob, make_post, client_for, reporters
):
    post = make_post(alice)
    for reporter in reporters[:-1]:
        report_via_form(client_for(reporter), post)
    assert not refreshed_post(post).is_hidden
    assert post.id in shown_ids(client_for(bob).get("/all"))


# --- staff review ---------------------------------------------------------------------------


def hidden_by_reports(post: Post, reporters: list[User]) -> Post:
    for reporter in reporters:
        report_create(reporter=reporter, post_id=post.id, reason="spam")
    return refreshed_post(post)


def test_the_queue_is_for_staff_only_and_its_actions_change_nothing_for_others(
    client, alice, bob, make_post, client_for, reporters
):
    """Visitors are sent to our log-in page; signed-in users who are not staff get our 403
    page, not the admin's log-in form."""
    post = hidden_by_reports(make_post(alice), reporters)
    restore = f"/staff/moderation/posts/{post.id}/restore"
    paths = (
        "/staff/moderation",
        "/staff/moderation/hidden",
        "/staff/moderation/log",
        "/staff/jobs",
    )
    for path in paths:
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == f"/login?next={path}"
    assert client.post(restore)["Location"] == f"/login?next={restore}"
    for who in (client_for(bob), client_for(alice)):
        for path in paths:
            response = who.get(path)
            assert response.status_code == 403, path
            assert "Not allowed" in text(response) and "log in" not in text(response).lower()
        assert who.post(restore).status_code == 403
    post.refresh_from_db()
    assert post.is_hidden and post.open_reports == THRESHOLD
    with pytest.raises(ServiceError):
        review(staff=bob, post_id=post.id, action="restore")
    assert ModerationAction.objects.count() == 1  # the automatic hide only


def test_queue_shows_hidden_posts_first_with_reasons_and_counts(
    alice, bob, make_post, client_for, staff, reporters
):
    reported_once = make_post(bob, "reported once")
    report_create(reporter=alice, post_id=reported_once.id, reason="spam")
    hidden = hidden_by_reports(make_post(alice, "hidden by reports"), reporters)
    page = text(client_for(staff).get("/staff/moderation"))
    assert page.index("hidden by reports") < page.index("reported once")
    assert "2 posts wait for review" in page
    assert f"Spam or scam: {THRESHOLD}" in page
    assert f"{THRESHOLD} open reports: hidden until reviewed" in page
    assert "Keep hidden" in page and "Restore" in page and "Dismiss reports" in page
    assert hidden.id in shown_ids(client_for(staff).get("/staff/moderation"))


def test_restore_makes_the_post_visible_and_logs_who_did_it(
    alice, bob, make_post, client_for, staff, reporters
):
    post = hidden_by_reports(make_post(alice, "restored later"), reporters)
    response = client_for(staff).post(f"/staff/moderation/posts/{post.id}/restore", follow=True)
    assert "The post is visible again." in text(response)
    post.refresh_from_db()
    assert not post.is_hidden and post.open_reports == 0
    assert set(Report.objects.values_list("resolution", flat=True)) == {"dismissed"}
    assert Report.objects.filter(resolved_at=None).count() == 0
    assert post.id in shown_ids(client_for(bob).get("/all"))
    assert post.id not in shown_ids(client_for(staff).get("/staff/moderation"))

    log = text(client_for(staff).get("/staff/moderation/log"))
    assert "moderator" in log and "Restored" in log and "automatic (report threshold)" in log
    assert log.index("Restored") < log.index("Hidden automatically")  # newest first


def test_hide_keeps_it_hidden_closes_the_reports_and_lists_it(
    alice, bob, make_post, client_for, staff, reporters
):
    post = make_post(alice, "staff hide this")
    report_create(reporter=bob, post_id=post.id, reason="violence")
    client_for(staff).post(f"/staff/moderation/posts/{post.id}/hide")
    post.refresh_from_db()
    assert post.is_hidden and post.open_reports == 0
    assert Report.objects.get().resolution == "hidden"
    assert post.id not in shown_ids(client_for(bob).get("/all"))
    mine = client_for(alice).get("/@alice")
    assert post.id in shown_ids(mine) and "Hidden by moderators" in text(mine)
    hidden_list = client_for(staff).get("/staff/moderation/hidden")
    assert post.id in shown_ids(hidden_list)
    # The staff see the hidden post's page, marked.
    assert "Hidden by moderators" in text(client_for(staff).get(f"/posts/{post.id}"))
    # A new report cannot reach a hidden post.
    late = client_for(reporters[0]).post(f"/posts/{post.id}/report", {"reason": "spam"})
    assert late.status_code == 404
    entry = ModerationAction.objects.get(action="hide")
    assert (entry.actor_id, entry.reports_closed) == (staff.id, 1)


def test_dismiss_closes_the_reports_and_the_post_stays(alice, bob, make_post, client_for, staff):
    post = make_post(alice, "fine post")
    report_create(reporter=bob, post_id=post.id, reason="misinformation")
    response = client_for(staff).post(f"/staff/moderation/posts/{post.id}/dismiss", follow=True)
    assert "The reports were dismissed." in text(response)
    post.refresh_from_db()
    assert not post.is_hidden and post.open_reports == 0
    assert "Nothing to review." in text(client_for(staff).get("/staff/moderation"))
    # A second dismiss has nothing to close: a message, no log entry.
    again = client_for(staff).post(f"/staff/moderation/posts/{post.id}/dismiss", follow=True)
    assert "That post has no open reports." in text(again)
    assert ModerationAction.objects.filter(action="dismiss").count() == 1


def test_review_of_unknown_posts_or_actions_is_404_and_get_is_405(
    alice, make_post, client_for, staff
):
    post = make_post(alice)
    client = client_for(staff)
    assert client.post(f"/staff/moderation/posts/{post.id}/delete").status_code == 404
    assert client.get(f"/staff/moderation/posts/{post.id}/hide").status_code == 405
    missing = client.post("/staff/moderation/posts/123456/hide", follow=True)
    assert "That post no longer exists." in text(missing)
    assert not ModerationAction.objects.exists()


def test_the_audit_log_outlives_the_post(alice, bob, make_post, client_for, staff):
    from microblog.posts.services import post_delete

    post = make_post(alice, "soon deleted")
    report_create(reporter=bob, post_id=post.id, reason="spam")
    review(staff=staff, post_id=post.id, action="hide")
    post_delete(post=post, actor=alice)
    assert not Report.objects.exists()
    log = text(client_for(staff).get("/staff/moderation/log"))
    assert "soon deleted" in log and "Hidden" in log


# --- blocking -------------------------------------------------------------------------------


def test_blocking_asks_first_then_ends_follows_both_ways(alice, bob, client_for):
    follow_create(follower=alice, followed=bob)
    follow_create(follower=bob, followed=alice)
    client = client_for(alice)
    confirm = client.get("/@bob/block")
    assert confirm.status_code == 200 and "They will not be able to follow you" in text(confirm)
    assert not Block.objects.exists()

    response = client.post("/@bob/block", follow=True)
    assert "You blocked bob." in text(response)
    assert Block.objects.filter(blocker=alice, blocked=bob).exists()
    assert not Follow.objects.exists()
    for user in (refreshed(alice), refreshed(bob)):
        assert (user.followers_count, user.following_count) == (0, 0)
    assert "You have blocked bob." in text(client.get("/@bob"))
    assert "Unblock" in text(client.get("/@bob"))


def test_a_blocked_user_cannot_follow_or_reply(alice, bob, make_post, client_for):
    block_create(blocker=alice, blocked=bob)
    post = make_post(alice, "no replies from bob")
    as_bob = client_for(bob)
    response = as_bob.post("/@alice/follow", follow=True)
    assert "You can't follow alice: they have blocked you." in text(response)
    assert not Follow.objects.exists()
    assert "alice has blocked you." in text(as_bob.get("/@alice"))

    page = text(as_bob.get(f"/posts/{post.id}"))
    assert "You can't reply to this post: its author has blocked you." in page
    response = as_bob.post("/posts", {"content": "sneaky reply", "parent_id": post.id})
    assert response.status_code == 400
    assert "You can't reply to this post: its author has blocked you." in text(response)
    assert not Post.objects.filter(content="sneaky reply").exists()
    assert refreshed_post(post).replies_count == 0
    # The blocker cannot follow either, until they unblock.
    response = client_for(alice).post("/@bob/follow", follow=True)
    assert "You have blocked bob. Unblock them to follow." in text(response)
    assert not Follow.objects.exists()


def test_the_blocker_sees_none_of_the_blocked_users_posts(
    alice, bob, make_user, make_post, client_for
):
    carol = make_user("carol")
    follow_create(follower=alice, followed=bob)
    follow_create(follower=alice, followed=carol)
    bobs = make_post(bob, "bob's post")
    thread = make_post(carol, "carol asks")
    bobs_reply = make_post(bob, "bob answers", parent=thread)
    carols_reply = make_post(carol, "carol answers bob", parent=bobs)
    block_create(blocker=alice, blocked=bob)

    client = client_for(alice)
    for path in ("/", "/following", "/all", "/@bob"):
        ids = shown_ids(client.get(path))
        assert bobs.id not in ids and bobs_reply.id not in ids, path
    assert thread.id in shown_ids(client.get("/"))
    thread_page = client.get(f"/posts/{thread.id}")
    assert bobs_reply.id not in shown_ids(thread_page)
    own_page = text(client.get(f"/posts/{bobs.id}"))
    assert "This post is by an account you blocked." in own_page and "bob's post" not in own_page
    reply_page = client.get(f"/posts/{carols_reply.id}")
    assert "This post is by an account you blocked." in text(reply_page)
    assert bobs.id not in shown_ids(reply_page)
    # Others are unaffected.
    assert bobs.id in shown_ids(Client().get("/all"))

    settings_page = text(client.get("/settings"))
    assert "Blocked accounts" in settings_page and "bob" in settings_page
    client.post("/@bob/unblock", {"next": "/settings"})
    assert not Block.objects.exists()
    assert bobs.id in shown_ids(client.get("/all"))
    assert "You haven't blocked anyone." in text(client.get("/settings"))


def test_blocking_yourself_or_nobody_is_refused(alice, client_for):
    client = client_for(alice)
    response = client.post("/@alice/block", follow=True)
    assert "You can't block yourself." in text(response)
    assert client.post("/@nobody/block").status_code == 404
    assert client.get("/@bob/unblock").status_code == 405
    assert not Block.objects.exists()


# --- muting ---------------------------------------------------------------------------------


def test_muting_removes_posts_from_feeds_only(alice, bob, make_post, client_for):
    follow_create(follower=alice, followed=bob)
    post = make_post(bob, "bob talks a lot")
    client = client_for(alice)
    assert post.id in shown_ids(client.get("/"))
    response = client.post("/@bob/mute", follow=True)
    assert "You muted bob." in text(response)
    assert "You have muted bob." in text(response)

    for path in ("/", "/following", "/all"):
        assert post.id not in shown_ids(client.get(path)), path
    # Nothing else changes: the follow, the profile and the thread.
    assert Follow.objects.filter(follower=alice, followed=bob).exists()
    assert post.id in shown_ids(client.get("/@bob"))
    assert post.id in shown_ids(client.get(f"/posts/{post.id}"))
    assert "Muted accounts" in text(client.get("/settings"))

    client.post("/@bob/unmute")
    assert not Mute.objects.exists()
    assert post.id in shown_ids(client.get("/"))


def test_muting_a_celebrity_removes_their_merged_posts_too(
    alice, bob, make_post, client_for, settings
):
    settings.FANOUT_CELEBRITY_FOLLOWERS = 0  # every followed account is a celebrity
    follow_create(follower=alice, followed=bob)
    assert refreshed(bob).is_celebrity
    post = make_post(bob, "celebrity post")
    client = client_for(alice)
    assert post.id in shown_ids(client.get("/"))
    mute_create(muter=alice, muted=bob)
    assert post.id not in shown_ids(client.get("/"))


def test_muting_yourself_is_refused_and_muting_twice_is_harmless(alice, bob, client_for):
    client = client_for(alice)
    assert "You can't mute yourself." in text(client.post("/@alice/mute", follow=True))
    client.post("/@bob/mute")
    client.post("/@bob/mute")
    assert Mute.objects.count() == 1
    assert client.get("/@bob/mute").status_code == 405


def test_feed_pages_stay_full_when_many_entries_are_filtered(
    alice, make_user, make_post, client_for, settings
):
    """Filtering happens before the page is cut: 20 visible posts below 25 muted ones."""
    loud = make_user("loud")
    quiet = make_user("quiet")
    follow_create(follower=alice, followed=loud)
    follow_create(follower=alice, followed=quiet)
    visible = [make_post(quiet, f"quiet {n}").id for n in range(22)]
    muted = [make_post(loud, f"loud {n}").id for n in range(25)]
    mute_create(muter=alice, muted=loud)
    client = client_for(alice)
    first = client.get("/")
    assert shown_ids(first) == sorted(visible, reverse=True)[:20]
    assert not set(muted) & set(shown_ids(first))


def test_deleting_accounts_keeps_reports_counted_and_the_log(
    alice, bob, make_user, make_post, staff
):
    """A reporter's report stays (anonymous) so the count stays true; blocks and mutes of a
    deleted account go with it; the log keeps the moderator's name."""
    from microblog.accounts.services import user_delete
    from tests.conftest import PASSWORD

    carol = make_user("carol")
    post = make_post(alice, "reported")
    report_create(reporter=bob, post_id=post.id, reason="spam")
    block_create(blocker=bob, blocked=carol)
    mute_create(muter=carol, muted=bob)
    review(staff=staff, post_id=make_post(alice, "other").id, action="hide")

    user_delete(user=bob, password=PASSWORD)
    user_delete(user=staff, password=PASSWORD)

    report = Report.objects.get()
    assert report.reporter_id is None and refreshed_post(post).open_reports == 1
    assert not Block.objects.exists() and not Mute.objects.exists()
    entry = ModerationAction.objects.get(action="hide")
    assert entry.actor_id is None and entry.actor_username == "moderator"


def test_the_admin_lists_reports_and_the_log_read_only(
    alice, bob, make_post, make_user, client_for
):
    root = make_user("root", is_staff=True, is_superuser=True)
    post = make_post(alice, "in the admin")
    report_create(reporter=bob, post_id=post.id, reason="spam")
    review(staff=root, post_id=post.id, action="hide")
    client = client_for(root)
    for path in ("/admin/moderation/report/", "/admin/moderation/moderationaction/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert f"{path}add/" not in response.content.decode()  # no way to add a record
    assert client.get(f"/admin/posts/post/{post.id}/change/").status_code == 200
