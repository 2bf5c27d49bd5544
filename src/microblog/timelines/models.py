from django.conf import settings
from django.db import models


class FeedEntry(models.Model):
    """One post in one reader's For You feed: ids only, never a copy of the post.

    Written by fan-out (timelines.fanout); read with an index range scan on the primary key:
    `WHERE user_id = ? AND post_id < ? ORDER BY post_id DESC LIMIT 21`.
    """

    pk = models.CompositePrimaryKey("user_id", "post_id")
    # No foreign-key constraints: checking them costs one trigger call per inserted row, more than
    # half of a fan-out's time (docs/benchmarks.md). What they would guarantee is kept by the
    # services instead: post_delete and user_erase delete the entries, and every path that copies
    # posts into feeds key-share locks those posts, so a concurrent delete waits for it and then
    # removes the copies (timelines.fanout).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,  # the primary key starts with user_id
    )
    post = models.ForeignKey(
        "posts.Post",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=True,  # deleting a post deletes its entries
    )
    # Lets an unfollow remove one author's entries from one feed without touching posts.
    author_id = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "feed entries"

    def __str__(self) -> str:
        return f"feed {self.user_id}: {self.post_id}"


class FanOut(models.Model):
    """How far one post's fan-out has got, written in the post's transaction and then in each
    chunk's: a fan-out cut by a stop or a crash resumes after its last committed chunk, and one
    whose job was lost is found and run again (timelines.fanout, jobs.fanouts_resume).

    `done_through`: every follower id up to it has been handled. `finished_at`: the last chunk
    committed (finished rows are pruned with finished jobs).
    """

    post_id = models.BigIntegerField(primary_key=True)  # no constraint, like FeedEntry's
    done_through = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["post_id"],
                name="timelines_fanout_pending_idx",
                condition=models.Q(finished_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        state = "finished" if self.finished_at else f"done through follower {self.done_through}"
        return f"fan-out of {self.post_id}: {state}"


class RepostEntry(models.Model):
    """One repost in one reader's For You feed: `post_id` is there because `reposter_id` (an
    account the reader follows, or the reader) reposted it. Ids only, like FeedEntry.

    A post reposted by several followed accounts has a row per reposter, so undoing one
    repost or unfollowing one reposter leaves the others; the feed read takes the post once
    (timelines.selectors.for_you). Kept apart from FeedEntry so its (user_id, post_id) key and
    its unfollow-by-author delete stay as they are. `author_id` is the post's author: mutes and
    blocks apply to the author and to the reposter, checked when the feed is read.
    """

    pk = models.CompositePrimaryKey("user_id", "post_id", "reposter_id")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,  # the primary key starts with user_id
    )
    post = models.ForeignKey(
        "posts.Post",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,  # covered by timelines_repostentry_post_idx
    )
    reposter_id = models.BigIntegerField()
    author_id = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "repost entries"
        indexes = [
            # An undone repost or a deleted post leaves every feed.
            models.Index(fields=["post", "reposter_id"], name="timelines_repostentry_post_idx"),
        ]

    def __str__(self) -> str:
        return f"feed {self.user_id}: {self.post_id} reposted by {self.reposter_id}"
