import re
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.contrib.sessions.base_session import AbstractBaseSession
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Upper

USERNAME_MAX_LENGTH = 50
DESCRIPTION_MAX_LENGTH = 120

USERNAME_PATTERN = r"^[A-Za-z0-9_]+\Z"
username_validator = RegexValidator(
    USERNAME_PATTERN,
    "A username may contain only letters, digits and underscores.",
    code="invalid_username",
)
_username_re = re.compile(USERNAME_PATTERN)


def username_is_valid(name: str) -> bool:
    """Whether an account could have this name: ASCII letters, digits and underscores, at most
    USERNAME_MAX_LENGTH. Checked before any lookup by a name from a request."""
    return len(name) <= USERNAME_MAX_LENGTH and _username_re.match(name) is not None


class UserManager(DjangoUserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> "User":
        # Usernames are unique ignoring case, so "Alice" signs in as "alice".
        return self.get(username__iexact=username)

    def create_user(
        self, username: str, email: str | None = None, password: str | None = None, **extra: Any
    ) -> "User":
        return super().create_user(username, email, password, **extra)


class User(AbstractUser):
    first_name = None  # type: ignore[assignment]
    last_name = None  # type: ignore[assignment]

    username = models.CharField(
        max_length=USERNAME_MAX_LENGTH,
        unique=True,
        validators=[username_validator],
        error_messages={"unique": "That username is taken."},
    )
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, blank=True, default="")
    # Counters change in the same transaction as the rows they count (services), and
    # `microblog reconcile-counters` can recompute them.
    followers_count = models.PositiveIntegerField(default=0)
    following_count = models.PositiveIntegerField(default=0)
    posts_count = models.PositiveIntegerField(default=0)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Fan-out state (see timelines.fanout). A celebrity's posts are not copied into followers'
    # feeds but merged in when a feed is read. Below `feed_horizon` (a post id) the stored feed
    # may be incomplete (trimmed, or a capped backfill), so reads there use the pull query.
    is_celebrity = models.BooleanField(default=False)
    feed_horizon = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[UserManager] = UserManager()

    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        indexes = [
            models.Index(
                fields=["id"],
                name="accounts_user_celebrity_idx",
                condition=models.Q(is_celebrity=True),
            ),
        ]
        constraints = [
            # Matches Django's `username__iexact` on PostgreSQL (UPPER(username) = UPPER(%s)), so
            # the case-insensitive lookup is an index scan and names differing in case collide.
            models.UniqueConstraint(Upper("username"), name="accounts_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username


class UserSession(AbstractBaseSession):
    """Django's session row plus the signed-in user's id, so a request reads its session and its
    user in one query (accounts.sessions). `user_id` is written from the session's own
    `_auth_user_id` whenever the row is saved; the session data stays the authority (the user is
    still checked against it and against the password hash on every request)."""

    # No database constraint: a session saved while its account is being deleted must not fail
    # the request; such a row joins no user and signs no one in. Deleting an account through
    # the ORM (accounts.services) deletes its sessions.
    user = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
    )

    @classmethod
    def get_session_store_class(cls) -> type[Any]:
        from microblog.accounts.sessions import SessionStore

        return SessionStore
