"""Writes to accounts. Every change to a user goes through one of these functions."""

from datetime import datetime

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from microblog import jobs
from microblog.accounts.models import DESCRIPTION_MAX_LENGTH, User, username_validator
from microblog.core.errors import Conflict, Invalid, NotAllowed
from microblog.core.ids import MAX_ID
from microblog.core.text import clean_text
from microblog.follows.models import Follow
from microblog.interactions import services as interactions
from microblog.timelines import fanout

USERNAME_TAKEN = "That username is taken."


def username_clean(username: str) -> str:
    username = username.strip()
    if not username:
        raise Invalid("Choose a username.", field="username", code="required")
    if len(username) > 50:
        raise Invalid(
            "A username can be at most 50 characters long.", field="username", code="max_length"
        )
    try:
        username_validator(username)
    except ValidationError as error:
        raise Invalid.from_validation(error, field="username") from None
    return username


def user_create(*, username: str, password: str) -> User:
    """Sign-up. Raises Invalid for a malformed name or a weak password, Conflict for a taken
    name."""
    username = username_clean(username)
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(USERNAME_TAKEN, field="username", code="unique")
    _password_check(password, User(username=username), field="password")
    try:
        with transaction.atomic():
            return User.objects.create_user(
                username=username, password=password, last_seen_at=timezone.now()
            )
    except IntegrityError:
        # Two sign-ups for the same name at once: the unique index decides.
        raise Conflict(USERNAME_TAKEN, field="username", code="unique") from None


def _password_check(password: str, user: User, *, field: str) -> None:
    """Django's password validators (settings.AUTH_PASSWORD_VALIDATORS), every reason they give."""
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise Invalid.from_validation(error, field=field) from None


def user_update_profile(*, user: User, description: str) -> User:
    user.description = clean_text(
        description,
        max_length=DESCRIPTION_MAX_LENGTH,
        allow_empty=True,
        label="bio",
        field="description",
    )
    user.save(update_fields=["description", "updated_at"])
    return user


def user_change_password(*, user: User, current_password: str, new_password: str) -> User:
    """Changing the password changes the session hash, which signs out every other session."""
    if not user.check_password(current_password):
        raise NotAllowed(
            "Your current password is not correct.", field="current_password", code="password"
        )
    _password_check(new_password, user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password", "updated_at"])
    return user


def user_delete(*, user: User, password: str) -> None:
    """Deletes the account. Posts stay (author becomes NULL: "Deleted user"); follows go, and the
    counters of everyone on the other side of those follows are corrected in the same transaction.
    """
    if not user.check_password(password):
        raise NotAllowed(
            "That password is not correct, so the account was not deleted.",
            field="password",
            code="password",
        )
    user_erase(user=user)


def user_erase(*, user: User) -> None:
    """The deletion itself, for `user_delete` and for staff in the admin."""
    with transaction.atomic():
        # Locked first: a follow, post or backfill involving this account waits, then finds it gone.
        list(User.objects.select_for_update().filter(id=user.id).values("id"))
        followed_ids = Follow.objects.filter(follower_id=user.id).values("followed_id")
        follower_ids = Follow.objects.filter(followed_id=user.id).values("follower_id")
        User.objects.filter(id__in=followed_ids).update(followers_count=F("followers_count") - 1)
        User.objects.filter(id__in=follower_ids).update(following_count=F("following_count") - 1)
        no_longer_celebrities = list(
            User.objects.filter(
                id__in=followed_ids,
                is_celebrity=True,
                followers_count__lte=settings.FANOUT_CELEBRITY_FOLLOWERS,
            ).values_list("id", flat=True)
        )
        User.objects.filter(id__in=no_longer_celebrities).update(is_celebrity=False)
        # Follows go first: a fan-out chunk in flight holds their rows, so this waits for it, and
        # no chunk starting later finds a follower; then the author's posts leave every feed.
        Follow.objects.filter(follower_id=user.id).delete()
        Follow.objects.filter(followed_id=user.id).delete()
        # The posts this account liked or reposted count one less; its reposts leave feeds.
        interactions.user_gone(user_id=user.id)
        fanout.remove_author(user)
        fanout.remove_reader(user)
        user.delete()
        for author_id in no_longer_celebrities:
            jobs.enqueue_with_write(jobs.backfill_author, author_id)


def user_mark_seen(*, user: User, now: datetime) -> None:
    """Records a visit. A reader back after FANOUT_INACTIVE_DAYS had no fan-out meanwhile, so
    their feed is rebuilt by the `rebuild_feed` job, not in the request: the job commits with
    the visit, so fan-out jobs from then on include them and the rebuild sees every post those
    jobs skipped. Until it has run, the feed's horizon stands above every id, so their For You
    comes from the pull query (timelines.selectors.for_you) and is right meanwhile."""
    if fanout.is_active(user, now):
        User.objects.filter(id=user.id).update(last_seen_at=now)
    else:
        with transaction.atomic():
            User.objects.filter(id=user.id).update(last_seen_at=now, feed_horizon=MAX_ID)
            jobs.enqueue_with_write(jobs.rebuild_feed, user.id)
        user.feed_horizon = MAX_ID
    user.last_seen_at = now
