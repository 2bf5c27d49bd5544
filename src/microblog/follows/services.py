"""Writes to the follow graph; counters change in the same transaction as the follow row."""

from django.db import IntegrityError, transaction
from django.db.models import F

from microblog import jobs
from microblog.accounts.models import User
from microblog.core.errors import Invalid, NotAllowed, NotFound
from microblog.follows.models import Follow
from microblog.moderation.selectors import block_between
from microblog.notifications import services as notifications
from microblog.stream import events
from microblog.timelines import fanout

ACCOUNT_GONE = "That account no longer exists."


def _bump_counts(*, follower_id: int, followed_id: int, delta: int) -> None:
    # Rows are updated in id order so two users following each other at once cannot deadlock.
    updates = {
        follower_id: {"following_count": F("following_count") + delta},
        followed_id: {"followers_count": F("followers_count") + delta},
    }
    for user_id in sorted(updates):
        User.objects.filter(id=user_id).update(**updates[user_id])


def _lock_accounts(*user_ids: int) -> int:
    """Locks both accounts in id order (the order every counter update uses) before anything
    else, in follow_create and follow_delete alike: a concurrent deletion of either waits, and
    neither mutual follows nor a follow racing an unfollow of the same pair can deadlock (the
    follow row itself is locked only after the accounts). NO KEY UPDATE, like the counter updates:
    it still blocks a deletion but not the foreign-key checks of rows that reference the accounts.
    Returns how many of the accounts exist."""
    locked = User.objects.select_for_update(no_key=True).filter(id__in=user_ids).order_by("id")
    return len(locked.values_list("id", flat=True))


def _refuse_if_blocked(*, follower: User, followed: User) -> None:
    block = block_between(follower.id, followed.id)
    if block == "blocked_by":
        raise NotAllowed(f"You can't follow {followed.username}: they have blocked you.")
    if block == "blocking":
        raise NotAllowed(f"You have blocked {followed.username}. Unblock them to follow.")


def follow_create(*, follower: User, followed: User) -> bool:
    """Follows `followed`. Returns False when the follow already existed (nothing changes)."""
    if follower.id == followed.id:
        raise Invalid("You can't follow yourself.")
    try:
        with transaction.atomic():
            if _lock_accounts(follower.id, followed.id) != 2:
                raise NotFound(ACCOUNT_GONE)
            # Under the account locks, as block_create takes them: no follow slips past a block.
            _refuse_if_blocked(follower=follower, followed=followed)
            Follow.objects.create(follower_id=follower.id, followed_id=followed.id)
            _bump_counts(follower_id=follower.id, followed_id=followed.id, delta=1)
            # A follow can also end celebrity status, when the threshold was raised since the
            # flag was last set; the posts written meanwhile then need their backfill.
            if fanout.update_celebrity(followed.id) is False:
                jobs.enqueue_with_write(jobs.backfill_author, followed.id)
            followed.refresh_from_db(fields=["followers_count", "is_celebrity"])
            fanout.backfill_follow(follower=follower, followed=followed)
            # The followed account is told, grouped per day (after a short delay: a job).
            notifications.notify_followed(follower_id=follower.id, followed_id=followed.id)
            # The follower's open streams reload their follows (stream/app.py).
            events.publish_reader_filters_changed_after_commit(reader_id=follower.id)
    except IntegrityError:
        if not User.objects.filter(id=followed.id).exists():
            raise NotFound(ACCOUNT_GONE) from None
        return False
    return True


def follow_delete(*, follower: User, followed: User) -> bool:
    """Unfollows. Returns False when there was no follow to remove."""
    with transaction.atomic():
        _lock_accounts(follower.id, followed.id)  # before the follow row, as in follow_create
        deleted, _ = Follow.objects.filter(
            follower_id=follower.id, followed_id=followed.id
        ).delete()
        if deleted:
            _bump_counts(follower_id=follower.id, followed_id=followed.id, delta=-1)
            fanout.remove_follow(follower=follower, followed=followed)
            events.publish_reader_filters_changed_after_commit(reader_id=follower.id)
            if fanout.update_celebrity(followed.id) is False:
                jobs.enqueue_with_write(jobs.backfill_author, followed.id)
    return bool(deleted)
