from django.conf import settings
from django.db import models

from microblog.core.ids import new_id

CONTENT_MAX_LENGTH = 200


class Post(models.Model):
    # Time-sortable: the id is the cursor and the sort key, so no (created_at, id) pairs anywhere.
    id = models.BigIntegerField(primary_key=True, default=new_id, editable=False)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,  # NULL once the author deletes the account; the post stays as "Deleted user".
        on_delete=models.DB_SET_NULL,
        related_name="posts",
        db_index=False,  # covered by posts_author_id_idx
    )
    content = models.CharField(max_length=CONTENT_MAX_LENGTH)
    # No database constraint: a reply keeps its parent_id after the parent is deleted, so it can
    # say "replying to a deleted post" instead of silently becoming a top-level post.
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="replies",
        db_index=False,  # covered by posts_parent_id_idx
    )
    replies_count = models.PositiveIntegerField(default=0)
    # Exact counts of the post's likes and reposts (microblog.interactions), changed in the
    # transaction that adds or removes one. Database defaults, so the seeder's COPY need not
    # name them.
    likes_count = models.PositiveIntegerField(default=0, db_default=0)
    reposts_count = models.PositiveIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField()
    # Moderation (microblog.moderation): a hidden post is shown only to its author and staff.
    # It is hidden by staff, or automatically once `open_reports` (reports not yet reviewed)
    # reaches REPORTS_TO_HIDE; a review closes the open reports. Database defaults, so bulk
    # loaders (the seeder's COPY) need not name these columns.
    is_hidden = models.BooleanField(default=False, db_default=False)
    open_reports = models.PositiveIntegerField(default=0, db_default=0)
    # A deleted post that still has replies stays as a placeholder (no author, no text), so its
    # replies keep their place in the thread; it goes when its last reply goes (post_delete).
    is_deleted = models.BooleanField(default=False, db_default=False)
    # The accounts the text mentions, resolved when the post was written (post_create):
    # their usernames, space-separated, as the card links them (core.jinja.link_mentions). Kept
    # on the row so a card is drawn from the post alone (no query per card, and a cached card
    # depends only on the post); the Mention rows below are the same set, for queries.
    mention_names = models.TextField(blank=True, default="", db_default="")

    class Meta:
        indexes = [
            # Profile pages and the pull feed: one author's top-level posts, newest first.
            models.Index(
                fields=["author", "-id"],
                name="posts_author_toplevel_idx",
                condition=models.Q(parent__isnull=True),
            ),
            # Any post of an author (the Following page includes replies; account deletion).
            models.Index(fields=["author", "-id"], name="posts_author_id_idx"),
            # The public timeline: every top-level post, newest first.
            models.Index(
                fields=["-id"], name="posts_toplevel_idx", condition=models.Q(parent__isnull=True)
            ),
            # A thread's replies, oldest first.
            models.Index(fields=["parent", "id"], name="posts_parent_id_idx"),
            # Hidden posts are rare: feeds check "is this entry hidden?" against this small
            # index instead of fetching every post row, and staff list them from it.
            models.Index(
                fields=["id"], name="posts_hidden_idx", condition=models.Q(is_hidden=True)
            ),
            # The review queue: posts with reports waiting for staff, most reported first.
            models.Index(
                fields=["-open_reports", "id"],
                name="posts_reported_idx",
                condition=models.Q(open_reports__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return f"Post {self.id}"

    @property
    def is_reply(self) -> bool:
        return self.parent_id is not None

    @property
    def reply_count(self) -> int:
        """The replies a reader can open: counted for them when the query that loaded the post
        annotated `visible_replies` (posts.selectors), else the stored counter."""
        return getattr(self, "visible_replies", self.replies_count)


MENTIONS_MAX = 10  # accounts resolved per post: bounds post_create's work and a mention spree


class Mention(models.Model):
    """An account a post mentions (`@username`), resolved when the post was written; it goes with
    the post or the account (database cascades), and with the text when the post becomes a
    deleted post's placeholder (post_delete)."""

    pk = models.CompositePrimaryKey("post_id", "user_id")
    post = models.ForeignKey(
        Post,
        on_delete=models.DB_CASCADE,
        related_name="mentions",
        db_index=False,  # the primary key starts with post_id
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="mentioned_in",
        db_index=False,  # covered by posts_mention_user_idx
    )

    class Meta:
        indexes = [models.Index(fields=["user", "-post"], name="posts_mention_user_idx")]

    def __str__(self) -> str:
        return f"Post {self.post_id} mentions {self.user_id}"
