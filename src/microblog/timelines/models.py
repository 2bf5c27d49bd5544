from django.conf import settings
from django.db import models


class FeedEntry(models.Model):
    """One post in one reader's For You feed: ids only, never a copy of the post.

    Written by fan-out (timelines.fanout); read with an index range scan on the primary key:
    `WHERE user_id = ? AND post_id < ? ORDER BY post_id DESC LIMIT 21`.
    """

    pk = models.CompositePrimaryKey("user_id", "post_id")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # the primary key starts with user_id
    )
    # Cascades in the database, so a deleted post leaves every feed at once, and an entry can
    # never be inserted for a post that a concurrent transaction has just deleted.
    post = models.ForeignKey(
        "posts.Post", on_delete=models.DB_CASCADE, related_name="+", db_index=True
    )
    # Lets an unfollow remove one author's entries from one feed without touching posts.
    author_id = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "feed entries"

    def __str__(self) -> str:
        return f"feed {self.user_id}: {self.post_id}"
