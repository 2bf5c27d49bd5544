"""Notifications: one row per group of events a user is told about (docs/architecture.md,
"Notifications").

A reply or a mention is a group of one (its post). Likes and reposts of a post group per post,
new followers per day: each group is one row, updated with a count and its latest actor, and
bumped to the top (a new `sort_id`) whenever events join it. Those events reach the row through
a pending group (`PendingNotification`) that a job folds in after a short delay, so a like spree
on a popular post updates one pending row per like and writes the notification once per delay,
never a row per like in the request that liked.
"""

from django.conf import settings
from django.db import models

from microblog.posts.models import Post


class Kind(models.TextChoices):
    REPLY = "reply", "reply"
    MENTION = "mention", "mention"
    FOLLOW = "follow", "follow"
    LIKE = "like", "like"
    REPOST = "repost", "repost"


# Kinds whose events are grouped and folded in by a job (the others are written with the post).
GROUPED_KINDS = (Kind.FOLLOW, Kind.LIKE, Kind.REPOST)


class Notification(models.Model):
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="notifications",
        db_index=False,  # the unique key and notifications_recipient_idx start with it
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # What the events are grouped by: the post (reply, mention: the reply or mentioning post;
    # like, repost: the liked post), or the day for new followers (days since 1970-01-01).
    group_key = models.BigIntegerField()
    # The post it is about (none for follows). Goes with the post; post_delete also removes the
    # notifications of a post that stays as a deleted post's placeholder.
    post = models.ForeignKey(
        Post,
        null=True,
        blank=True,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # notifications_post_idx
    )
    # The latest account that acted: shown by name ("alice and 3 others liked your post"). A
    # deleted account's notifications go with it (database cascade), so none names it.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # notifications_actor_idx
    )
    # Events in the group (likes counted as they happen: an unlike does not take one back).
    count = models.PositiveIntegerField(default=1)
    # The cursor and sort key: a time-sortable id (core.ids) drawn when the group last changed,
    # so a group that grows comes back to the top and counts as unread again.
    sort_id = models.BigIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The page (newest first) and the unread count (sort_id above the reader's marker).
            models.Index(fields=["recipient", "-sort_id"], name="notifications_recipient_idx"),
            models.Index(fields=["post"], name="notifications_post_idx"),
            models.Index(fields=["actor"], name="notifications_actor_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "kind", "group_key"], name="notifications_one_per_group"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient_id} ({self.count})"

    @property
    def others(self) -> int:
        return max(0, self.count - 1)


class PendingNotification(models.Model):
    """Events of a group not yet folded into its notification: created by the first event (with
    the job that folds it in, enqueued in the same transaction, to run after
    NOTIFICATIONS_GROUP_DELAY_SECONDS), updated by the next ones (count, latest actor), deleted
    by the job. One row per group at a time whatever the number of events."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DB_CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    group_key = models.BigIntegerField()
    post = models.ForeignKey(
        Post, null=True, blank=True, on_delete=models.DB_CASCADE, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DB_CASCADE, related_name="+"
    )
    count = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "kind", "group_key"], name="notifications_one_pending_group"
            ),
        ]

    def __str__(self) -> str:
        return f"pending {self.kind} for {self.recipient_id} ({self.count})"


class NotificationMarker(models.Model):
    """How far a user has read: notifications with a `sort_id` above `seen_id` are unread."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.DB_CASCADE,
        related_name="+",
    )
    seen_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id} has seen up to {self.seen_id}"
