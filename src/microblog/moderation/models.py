"""Reports, the staff audit log, and each user's blocks and mutes.

A post's moderation state lives on the post itself (`Post.is_hidden`, `Post.open_reports`), so
feeds filter on a column of a row they read anyway; these tables hold the history behind it.
"""

from django.conf import settings
from django.db import models

REPORT_TEXT_MAX_LENGTH = 500


class Reason(models.TextChoices):
    SPAM = "spam", "Spam or scam"
    HARASSMENT = "harassment", "Harassment or bullying"
    HATE = "hate", "Hateful conduct"
    VIOLENCE = "violence", "Violence or threats"
    SEXUAL = "sexual", "Sexual content"
    SELF_HARM = "self_harm", "Self-harm or suicide"
    MISINFORMATION = "misinformation", "Misleading information"
    OTHER = "other", "Something else"


class Resolution(models.TextChoices):
    HIDDEN = "hidden", "Post hidden"
    DISMISSED = "dismissed", "Dismissed"


class Report(models.Model):
    post = models.ForeignKey("posts.Post", on_delete=models.DB_CASCADE, related_name="reports")
    # Kept (as an anonymous report) when the reporter deletes their account, so the post's
    # open-report count stays true.
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DB_SET_NULL,
        related_name="reports_sent",
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    text = models.CharField(max_length=REPORT_TEXT_MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True)

    class Meta:
        constraints = [
            # One report per user per post; the service turns a second one into a message.
            models.UniqueConstraint(fields=["post", "reporter"], name="reports_one_per_user"),
        ]
        indexes = [
            # The open reports of one post (the review queue shows them; a review closes them).
            models.Index(
                fields=["post"], name="reports_open_idx", condition=models.Q(resolved_at=None)
            ),
            models.Index(fields=["reporter"], name="reports_reporter_idx"),
        ]

    def __str__(self) -> str:
        return f"report {self.id} on post {self.post_id}"


class Action(models.TextChoices):
    AUTO_HIDE = "auto_hide", "Hidden automatically"
    HIDE = "hide", "Hidden"
    RESTORE = "restore", "Restored"
    DISMISS = "dismiss", "Reports dismissed"


class ModerationAction(models.Model):
    """The audit log: one row per change a moderator (or the report threshold) made.

    It names the post by id and keeps a copy of what it said, without a foreign key, so the
    record outlives the post and its author.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # NULL: the system (the report threshold), or a staff account deleted since.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.DB_SET_NULL, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    post_id = models.BigIntegerField(db_index=True)
    post_author_username = models.CharField(max_length=150, blank=True)
    post_content = models.CharField(max_length=200)
    reports_closed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} post {self.post_id}"


class Block(models.Model):
    """`blocker` sees none of `blocked`'s posts; `blocked` cannot follow or reply to `blocker`."""

    pk = models.CompositePrimaryKey("blocker_id", "blocked_id")
    blocker = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # the primary key starts with blocker_id
    )
    blocked = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DB_CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(blocker=models.F("blocked")), name="blocks_no_self_block"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocks {self.blocked_id}"


class Mute(models.Model):
    """`muter`'s feeds leave out `muted`'s posts; nothing else changes."""

    pk = models.CompositePrimaryKey("muter_id", "muted_id")
    muter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_index=False,  # the primary key starts with muter_id
    )
    muted = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DB_CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(muter=models.F("muted")), name="mutes_no_self_mute"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.muter_id} mutes {self.muted_id}"
