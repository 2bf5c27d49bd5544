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
