from django.conf import settings
from django.db import models


class Follow(models.Model):
    # The pair is the key: no surrogate id, so 50M follows cost two B-trees, not three.
    pk = models.CompositePrimaryKey("follower_id", "followed_id")
    follower = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="following_set",
        db_index=False,  # the primary key starts with follower_id
    )
    followed = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DB_CASCADE,
        related_name="followers_set",
        db_index=False,  # covered by follows_followed_idx
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Who follows X (fan-out, followers pages), in follower order for keyset paging.
            models.Index(fields=["followed", "follower"], name="follows_followed_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(follower=models.F("followed")), name="follows_no_self_follow"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.follower_id} -> {self.followed_id}"
