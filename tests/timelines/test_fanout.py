"""The hybrid fan-out: stored feeds, celebrities merged at read time, inactive readers, the cap."""

from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from microblog import jobs
from microblog.accounts.models import User
from microblog.accounts.services import user_mark_seen
from microblog.follows.services import follow_create, follow_delete
from microblog.posts.services import post_delete
from microblog.timelines import fanout
from microblog.timelines.models import FeedEntry
from tests.conftest import refreshed
from tests.feeds import feed_ids, pull_ids


def stored(user: User) -> set[int]:
    return set(FeedEntry.objects.filter(user_id=user.id).values_list("post_id", flat=True))


def test_own_post_enters_own_feed_at_once(alice, make_post):
    post = make_post(alice, "mine")
    assert stored(alice) == {post.id}
    assert feed_ids(alice) == [post.id]


def test_post_is_fanned_out_to_followers_but_replies_are_not(alice, bob, make_post):
    follow_create(follower=bob, followed=alice)
    post = make_post(alice, "for my followers")
    reply = make_post(alice, "a reply", parent=post)
    assert post.id in stored(bob)
    assert reply.id not in stored(bob)
    assert feed_ids(bob) == pull_ids(bob) == [post.id]


def test_follow_backfills_and_unfollow_removes(alice, bob, make_post):
    posts = [make_post(alice, f"p{i}") for i in range(3)]
    follow_create(follower=bob, followed=alice)
    assert {p.id for p in posts} <= stored(bob)
    follow_delete(follower=bob, followed=alice)
    assert stored(bob) == set()
    assert feed_ids(bob) == []


def test_deleting_a_post_removes_it_from_every_feed(alice, bob, make_post):
    follow_create(follower=bob, followed=alice)
    post = make_post(alice, "soon gone")
    post_delete(post=post, actor=alice)
    assert FeedEntry.objects.filter(post_id=post.id).count() == 0


def test_celebrity_posts_are_merged_at_read_time(settings, make_user, make_post):
    settings.FANOUT_CELEBRITY_FOLLOWERS = 2
    star = make_user("star")
    fans = [make_user(f"fan{i}") for i in range(3)]
    for fan in fans:
        follow_create(follower=fan, followed=star)
    assert refreshed(star).is_celebrity
    post = make_post(star, "hello fans")
    own = make_post(fans[0], "my own")
    assert post.id not in stored(fans[0])  # not fanned out
    assert feed_ids(fans[0]) == pull_ids(fans[0]) == [own.id, post.id]


def test_author_dropping_below_threshold_is_backfilled(settings, make_user, make_post):
    settings.FANOUT_CELEBRITY_FOLLOWERS = 2
    star = make_user("star")
    fans = [make_user(f"fan{i}") for i in range(3)]
    for fan in fans:
        follow_create(follower=fan, followed=star)
    post = make_post(star, "while famous")
    follow_delete(follower=fans[2], followed=star)
    assert not refreshed(star).is_celebrity
    assert post.id in stored(fans[0])  # the backfill job ran after commit
    assert feed_ids(fans[0]) == pull_ids(fans[0])


def test_inactive_readers_are_skipped_and_rebuilt_when_they_return(settings, alice, bob, make_post):
    follow_create(follower=bob, followed=alice)
    User.objects.filter(id=bob.id).update(last_seen_at=timezone.now() - timedelta(days=31))
    post = make_post(alice, "while bob was away")
    assert post.id not in stored(bob)
    assert feed_ids(bob) == pull_ids(bob)  # read from the pull query meanwhile
    user_mark_seen(user=refreshed(bob), now=timezone.now())
    assert post.id in stored(bob)
    assert feed_ids(bob) == pull_ids(bob)


def test_a_returning_readers_feed_is_rebuilt_by_a_job_and_their_page_is_right_meanwhile(
    db_job_backend, alice, bob, make_post, client_for
):
    """The visit does not rebuild the feed inside the GET: it enqueues the `rebuild_feed` job,
    and until the job has run the reader's For You comes from the pull query."""
    run_jobs = db_job_backend
    follow_create(follower=bob, followed=alice)
    User.objects.filter(id=bob.id).update(last_seen_at=timezone.now() - timedelta(days=31))
    posts = [make_post(alice, f"while bob was away {i}") for i in range(3)]
    run_jobs()  # the fan-outs skip bob, who is inactive
    away = {post.id for post in posts}
    assert not away & stored(bob)
    client = client_for(bob)

    page = client.get("/").content.decode()  # the visit (accounts.middleware)

    assert all(f"while bob was away {i}" in page for i in range(3))
    assert not away & stored(bob), "the feed was rebuilt inside the request"
    queued = DBTaskResult.objects.filter(
        task_path=jobs.rebuild_feed.module_path, status=TaskResultStatus.READY
    )
    assert [row.args_kwargs["args"] for row in queued] == [[bob.id]]
    newer = make_post(alice, "posted before the rebuild ran")
    run_jobs()  # the fan-out (which skips bob's pending feed), then the rebuild
    assert away | {newer.id} <= stored(bob)
    assert refreshed(bob).feed_horizon == 0
    assert feed_ids(refreshed(bob)) == pull_ids(bob)
    page = client.get("/").content.decode()
    assert "posted before the rebuild ran" in page and "while bob was away 0" in page


def test_trimmed_feed_falls_back_to_pull_query_past_the_cap(settings, alice, bob, make_post):
    settings.FEED_MAX_ENTRIES = 25
    follow_create(follower=bob, followed=alice)
    for i in range(60):
        make_post(alice, f"post {i}")
    assert fanout.trim([bob.id]) == 35
    assert len(stored(bob)) == 25
    assert refreshed(bob).feed_horizon > 0
    assert feed_ids(bob) == pull_ids(bob)
    assert len(feed_ids(bob)) == 60


def test_follow_backfill_is_capped_and_older_pages_use_the_pull_query(
    settings, alice, bob, make_post
):
    settings.FEED_MAX_ENTRIES = 10
    for i in range(30):
        make_post(alice, f"post {i}")
    follow_create(follower=bob, followed=alice)
    assert len(stored(bob)) == 10
    assert feed_ids(bob) == pull_ids(bob)


@pytest.mark.parametrize("page_size", [3, 20])
def test_pages_never_end_early_or_repeat(settings, page_size, alice, bob, make_post):
    settings.PAGE_SIZE = page_size
    settings.FEED_MAX_ENTRIES = 7
    follow_create(follower=bob, followed=alice)
    for i in range(16):
        make_post(alice if i % 2 else bob, f"post {i}")
    fanout.trim([bob.id])
    ids = feed_ids(bob)
    assert ids == pull_ids(bob)
    assert len(ids) == len(set(ids)) == 16


def test_post_deleted_between_chunks_reaches_no_further_feed(
    alice, bob, make_user, make_post, settings
):
    """A post with replies is kept as a placeholder when deleted; a fan-out still running must
    treat it as gone, not copy the placeholder into the followers it had not reached yet."""
    from microblog.timelines.models import FanOut

    settings.FANOUT_CHUNK_SIZE = 1
    carol = make_user("carol")
    follow_create(follower=bob, followed=alice)
    follow_create(follower=carol, followed=alice)
    post = make_post(alice, "soon deleted")
    make_post(bob, "a reply keeps it as a placeholder", parent=post)
    # Run the fan-out again from the start, deleting the post after its first chunk.
    FeedEntry.objects.filter(post_id=post.id).exclude(user_id=alice.id).delete()
    FanOut.objects.filter(post_id=post.id).update(done_through=0, finished_at=None)

    deleted = []

    def delete_after_first_chunk() -> None:
        if not deleted:
            deleted.append(True)
            post_delete(post=refreshed_post(post.id), actor=alice)

    fanout.fan_out_post(post.id, checkpoint=delete_after_first_chunk)
    assert not FeedEntry.objects.filter(post_id=post.id).exists()
    assert feed_ids(bob) == feed_ids(carol) == []


def refreshed_post(post_id: int):
    from microblog.posts.models import Post

    return Post.objects.get(id=post_id)
