"""Likes and reposts: one row per (user, post), kept unique by the database.

Each row has a time-sortable id (core.ids, like posts), so "newest first" lists (a post's
"Liked by", one's own Likes tab) are keyset-paginated on it. The pair (user, post) is a unique
constraint: a double click is one like, whoever wins the race (interactions.services inserts
with ON CONFLICT DO NOTHING instead of checking first). Both foreign keys cascade in the
database: a removed post or account takes its likes and reposts with it, without Django
collecting them in Python (the services correct the counters first).
"""

from django.conf import settings
from django.db import models

from microblog.core.ids import new_id


class Like(models.Model):
    id = models.BigIntegerField(primary_key=True, default=new_id, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # covered by interactions_like_user_idx
    )
    post = models.ForeignKey(
        "posts.Post",
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # covered by interactions_like_post_idx
    )
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            # One like per user and post; also the index of "did I like these posts?".
            models.UniqueConstraint(fields=["user", "post"], name="interactions_like_once"),
        ]
        indexes = [
            # A post's "Liked by", newest first; deleting a post removes its likes.
            models.Index(fields=["post", "-id"], name="interactions_like_post_idx"),
            # One's own Likes tab, newest first.
            models.Index(fields=["user", "-id"], name="interactions_like_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} likes {self.post_id}"


class Repost(models.Model):
    id = models.BigIntegerField(primary_key=True, default=new_id, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # the unique constraint starts with user_id
    )
    post = models.ForeignKey(
        "posts.Post",
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # covered by interactions_repost_post_idx
    )
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            # One repost per user and post. Its index, (user_id, post_id), is also the range
            # scan of a followed celebrity's reposts merged into For You at read time.
            models.UniqueConstraint(fields=["user", "post"], name="interactions_repost_once"),
        ]
        indexes = [
            # Deleting a post removes its reposts; "reposted by" labels of a feed page.
            models.Index(fields=["post", "user"], name="interactions_repost_post_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} reposts {self.post_id}"
