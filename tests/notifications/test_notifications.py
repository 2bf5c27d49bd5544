"""Notifications (issue 16, item 5): replies, mentions, follows, likes and reposts; grouping;
the unread count; the page; who may notify whom; clean-up on deletions."""

import re

import pytest
from django_tasks_db.models import DBTaskResult

from microblog.accounts.services import user_erase
from microblog.follows.services import follow_create
from microblog.moderation.services import block_create, mute_create, review
from microblog.notifications.models import Notification, PendingNotification
from microblog.notifications.selectors import PAGE_SIZE
from microblog.notifications.services import notify_liked, notify_reposted
from microblog.posts.models import Post
from microblog.posts.services import post_create, post_delete
from tests.conftest import is_postgres, refreshed


def unread_badge(html: str) -> str | None:
    """The top bar's unread count as shown, or None when it is hidden."""
    match = re.search(
        r'<span class="unread-count" data-unread-count( hidden)?>(.*?)</span></a>', html
    )
    assert match, "no unread count in the top bar"
    if match.group(1):
        return None
    return re.sub(r"<[^>]+>[^<]*</span>", "", match.group(2)).strip()


def sentences(html: str) -> list[str]:
    texts = re.findall(r'<p class="notification-text">(.*?)<span aria-hidden', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>", "", text).split()) for text in texts]


def test_a_reply_notifies_the_parent_author_and_shows_on_their_page(make_user, client_for) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    post = post_create(author=alice, content="my post")
    post_create(author=bob, content="my reply", parent_id=post.id)
    post_create(author=alice, content="replying to myself", parent_id=post.id)
    client = client_for(alice)
    assert unread_badge(client.get("/").content.decode()) == "1"
    page = client.get("/notifications").content.decode()
    assert sentences(page) == ["New: bob replied to your post"]
    assert "my reply" in page
    # Seen: the count is gone, here and on the next page.
    assert unread_badge(page) is None
    assert unread_badge(client.get("/").content.decode()) is None
    assert sentences(client.get("/notifications").content.decode()) == ["bob replied to your post"]


def test_likes_are_grouped_into_one_notification(
    make_user, client_for, db_job_backend, settings
) -> None:
    """A like spree: one pending row and one job however many likes, then one notification."""
    settings.NOTIFICATIONS_GROUP_DELAY_SECONDS = 0
    star = make_user("star")
    fans = [make_user(f"fan{n}") for n in range(12)]
    post = post_create(author=star, content="popular")
    for fan in fans:
        notify_liked(post_id=post.id, actor_id=fan.id)
    assert PendingNotification.objects.get().count == 12
    assert DBTaskResult.objects.filter(task_path__endswith="fold_notifications").count() == 1
    assert not Notification.objects.exists()  # nothing written by the likes themselves
    db_job_backend()
    assert not PendingNotification.objects.exists()
    note = Notification.objects.get()
    assert (note.recipient_id, note.kind, note.count, note.actor_id) == (
        star.id,
        "like",
        12,
        fans[-1].id,
    )
    page = client_for(star).get("/notifications").content.decode()
    assert sentences(page) == ["New: fan11 and 11 others liked your post"]

    # More likes later join the same notification, which comes back to the top as unread.
    notify_liked(post_id=post.id, actor_id=fans[0].id)
    db_job_backend()
    assert Notification.objects.get().count == 13
    assert unread_badge(client_for(star).get("/").content.decode()) == "1"


def test_reposts_and_follows_are_grouped(make_user, client_for) -> None:
    star, ann, ben = make_user("star"), make_user("ann"), make_user("ben")
    post = post_create(author=star, content="worth passing on")
    notify_reposted(post_id=post.id, actor_id=ann.id)
    notify_reposted(post_id=post.id, actor_id=ben.id)
    follow_create(follower=ann, followed=star)
    follow_create(follower=ben, followed=star)
    page = client_for(star).get("/notifications").content.decode()
    assert sentences(page) == [
        "New: ben and 1 other followed you",
        "New: ben and 1 other reposted your post",
    ]


@pytest.mark.parametrize("how", ["own", "deleted", "placeholder", "unknown"])
def test_likes_that_notify_nobody(make_user, how: str) -> None:
    star, fan = make_user("star"), make_user("fan")
    post = post_create(author=star, content="x")
    actor = star if how == "own" else fan
    post_id = post.id
    if how == "deleted":
        post_delete(post=post, actor=star)
    elif how == "placeholder":
        post_create(author=fan, content="a reply", parent_id=post.id)
        Notification.objects.all().delete()
        post_delete(post=post, actor=star)
    elif how == "unknown":
        post_id = 2**62
    notify_liked(post_id=post_id, actor_id=actor.id)
    assert not PendingNotification.objects.exists()
    assert not Notification.objects.exists()


@pytest.mark.parametrize("silence", ["block", "blocked_by", "mute"])
def test_blocked_and_muted_accounts_produce_no_notifications(make_user, silence: str) -> None:
    star, other = make_user("star"), make_user("other")
    post = post_create(author=star, content="x")
    if silence == "block":
        block_create(blocker=star, blocked=other)
    elif silence == "blocked_by":
        block_create(blocker=other, blocked=star)
    else:
        mute_create(muter=star, muted=other)
    notify_liked(post_id=post.id, actor_id=other.id)
    post_create(author=other, content="hi @star")
    if silence == "mute":  # a muted account can still reply and follow; neither notifies
        post_create(author=other, content="a reply", parent_id=post.id)
        follow_create(follower=other, followed=star)
    assert not Notification.objects.exists()
    assert not PendingNotification.objects.exists()


def test_a_block_or_mute_after_the_fact_hides_the_notification(make_user, client_for) -> None:
    star, rude, fan = make_user("star"), make_user("rude"), make_user("fan")
    post_create(author=rude, content="hey @star")
    post_create(author=fan, content="hello @star")
    client = client_for(star)
    assert unread_badge(client.get("/").content.decode()) == "2"
    mute_create(muter=star, muted=rude)
    assert unread_badge(client.get("/").content.decode()) == "1"
    assert sentences(client.get("/notifications").content.decode()) == ["New: fan mentioned you"]


def test_a_hidden_post_leaves_the_notifications_of_others(make_user, client_for) -> None:
    staff = make_user("staff", is_staff=True)
    star, troll = make_user("star"), make_user("troll")
    mention = post_create(author=troll, content="look @star")
    review(staff=staff, post_id=mention.id, action="hide")
    client = client_for(star)
    assert unread_badge(client.get("/").content.decode()) is None
    assert sentences(client.get("/notifications").content.decode()) == []
    # The star's own hidden post still tells of its likes: they may see it.
    own = post_create(author=star, content="mine")
    review(staff=staff, post_id=own.id, action="hide")
    notify_liked(post_id=own.id, actor_id=troll.id)
    assert sentences(client.get("/notifications").content.decode()) == [
        "New: troll liked your post"
    ]


def test_account_deletion_removes_the_notifications_that_name_it(make_user, client_for) -> None:
    star, gone = make_user("star"), make_user("gone")
    post = post_create(author=star, content="x")
    post_create(author=gone, content="hi @star")
    post_create(author=gone, content="a reply", parent_id=post.id)
    notify_liked(post_id=post.id, actor_id=gone.id)
    follow_create(follower=gone, followed=star)
    assert Notification.objects.filter(actor=gone).count() == 4
    user_erase(user=gone)
    assert not Notification.objects.exists()
    page = client_for(star).get("/notifications").content.decode()
    assert "gone" not in page
    # And the account's own notifications go with it.
    post_create(author=star, content="hi @gone2", parent_id=None)
    other = make_user("gone2")
    post_create(author=star, content="hi @gone2")
    user_erase(user=other)
    assert not Notification.objects.filter(recipient_id=other.id).exists()


def test_deleting_a_liked_post_removes_its_notification(make_user, client_for) -> None:
    star, fan = make_user("star"), make_user("fan")
    post = post_create(author=star, content="secret text")
    notify_liked(post_id=post.id, actor_id=fan.id)
    post_create(author=fan, content="a reply keeps it as a placeholder", parent_id=post.id)
    post_delete(post=post, actor=star)
    page = client_for(star).get("/notifications").content.decode()
    assert "secret text" not in page
    assert sentences(page) == ["New: fan replied to your post"]


def test_the_page_is_cursor_paged(make_user, client_for) -> None:
    star = make_user("star")
    fans = [make_user(f"fan{n}") for n in range(PAGE_SIZE + 5)]
    for fan in fans:
        post_create(author=fan, content=f"hi @star from {fan.username}")
    client = client_for(star)
    first = client.get("/notifications").content.decode()
    assert len(sentences(first)) == PAGE_SIZE
    cursor = re.search(r'href="\?cursor=(\d+)"', first).group(1)
    second = client.get(f"/notifications?cursor={cursor}", HTTP_HX_REQUEST="true").content.decode()
    shown = sentences(first) + sentences(second)
    assert len(shown) == PAGE_SIZE + 5
    assert shown[0] == f"New: {fans[-1].username} mentioned you"
    assert shown[-1] == "fan0 mentioned you"  # read: the first page marked everything seen


@pytest.mark.parametrize("cursor", ["abc", "-1", "9" * 30, "1\x00", "\uff11\uff12"])
def test_a_bad_cursor_is_a_clear_400(make_user, client_for, cursor: str) -> None:
    response = client_for(make_user("star")).get("/notifications", {"cursor": cursor})
    assert response.status_code == 400
    assert "page link is not valid" in response.content.decode()


def test_the_page_needs_a_signed_in_user(client) -> None:
    response = client.get("/notifications")
    assert response.status_code == 302 and "/login" in response["Location"]


def test_the_unread_count_shows_99_plus(make_user, client_for) -> None:
    star = make_user("star")
    fan = make_user("fan")
    post = post_create(author=star, content="x")
    for n in range(101):
        post_create(author=fan, content=f"reply {n}", parent_id=post.id)
    assert unread_badge(client_for(star).get("/").content.decode()) == "99+"
    assert refreshed(star).id == star.id


def test_notifications_page_query_count(make_user, client_for, django_assert_num_queries) -> None:
    """The page costs the same with 3 and with 20 notifications of every kind."""
    star = make_user("star")
    post = post_create(author=star, content="x")
    client = client_for(star)
    made = 0
    for wanted in (3, 20):
        while made < wanted:
            fan = make_user(f"fan{made}")
            kind = made % 4
            if kind == 0:
                post_create(author=fan, content="hi @star")
            elif kind == 1:
                post_create(author=fan, content="a reply", parent_id=post.id)
            elif kind == 2:
                follow_create(follower=fan, followed=star)
            else:
                notify_liked(post_id=Post.objects.filter(author=star).first().id, actor_id=fan.id)
                post = post_create(author=star, content=f"another {made}")
            made += 1
        # Queries: 1 the session with the signed-in user (and the unread count), 2 the
        # notifications with their actors and posts (and whether each is unread), 3 moving the
        # read marker, 4 the marker's first row (an insert that ignores an existing one) on the
        # first visit; PostgreSQL: the NOTIFY that clears the count on the reader's other open
        # pages.
        notify = 1 if is_postgres() else 0
        with django_assert_num_queries((4 if wanted == 3 else 3) + notify):
            response = client.get("/notifications")
        assert response.status_code == 200
        # Nothing new since: the marker stays, one query less.
        with django_assert_num_queries(2):
            client.get("/notifications")


def test_the_fold_waits_for_the_delay(make_user, db_job_backend, settings) -> None:
    """The job that folds a group in runs NOTIFICATIONS_GROUP_DELAY_SECONDS after its first
    event: a worker running now leaves it (and the likes of that time join its pending row)."""
    settings.NOTIFICATIONS_GROUP_DELAY_SECONDS = 60
    star, fan = make_user("star"), make_user("fan")
    post = post_create(author=star, content="x")
    notify_liked(post_id=post.id, actor_id=fan.id)
    db_job_backend()
    job = DBTaskResult.objects.get(task_path__endswith="fold_notifications")
    assert job.status == "READY" and job.run_after is not None
    assert PendingNotification.objects.get().count == 1
    assert not Notification.objects.exists()
