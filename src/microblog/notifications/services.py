"""Writes of notifications; every one goes through here (docs/architecture.md, "Notifications").

Doors:
- `notify_post_created`: a reply and the accounts a post mentions, in post_create's transaction.
- `notify_followed`: a new follower, in follow_create's transaction.
- `notify_liked`, `notify_reposted`: called by the like and repost services after their commit.
- `notifications_fold`: the job that folds a group's pending events into its notification.
- `notifications_mark_seen`: the page, once it has shown the newest notifications.
- `notifications_forget_post`: post_delete (a deleted post leaves no notification behind).
- `notification_dismiss`, `notifications_clear`: the client API (a user removes one
  notification, or all of theirs).

Who may notify whom is timelines.visibility's (`notified_by`, `notifies`): no block either way,
not muted by the recipient, never oneself. Lock order: a pending group's row, then its
notification; no user or post rows are locked here (post_create's own locks come first).
Unread counts are computed when read (notifications.selectors.unread_count), so no counter is
kept and nothing here can make one drift.
"""

from datetime import UTC, datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db.models import F, OuterRef, QuerySet
from django.utils import timezone

from microblog import jobs
from microblog.core import sqlcache
from microblog.core.ids import new_id
from microblog.notifications.models import (
    Kind,
    Notification,
    NotificationMarker,
    PendingNotification,
)
from microblog.posts.models import Post
from microblog.stream import events
from microblog.timelines import visibility


def notify_post_created(
    *, post: Post, parent_author_id: int | None, mentioned_ids: list[int]
) -> None:
    """A reply notifies the parent's author; a mention notifies the account mentioned (the
    parent's author is told once, of the reply). Called in the post's transaction: the rows
    commit with the post, and a rolled-back post notifies nobody."""
    assert post.author_id is not None
    wanted: dict[int, str] = {user_id: Kind.MENTION for user_id in mentioned_ids}
    if parent_author_id is not None:
        wanted[parent_author_id] = Kind.REPLY
    recipients = visibility.notified_by(actor_id=post.author_id, recipient_ids=list(wanted))
    if not recipients:
        return
    Notification.objects.bulk_create(
        Notification(
            recipient_id=recipient_id,
            kind=wanted[recipient_id],
            group_key=post.id,
            post_id=post.id,
            actor_id=post.author_id,
            count=1,
            sort_id=post.id,  # the post's id is time-sortable too
            updated_at=post.created_at,
        )
        for recipient_id in sorted(recipients)
    )
    for recipient_id in recipients:
        events.publish_unread_changed_after_commit(user_id=recipient_id)


def notify_followed(*, follower_id: int, followed_id: int) -> None:
    """A new follower; grouped per day ("alice and 3 others followed you")."""
    _pend(
        recipient_id=followed_id,
        actor_id=follower_id,
        kind=Kind.FOLLOW,
        group_key=day_of(timezone.now()),
        checked=False,
    )


def notify_liked(*, post_id: int, actor_id: int) -> None:
    """`actor_id` liked post `post_id`: its author is told, grouped per post. For the like
    service, after its commit; a like of a deleted post or by a silenced account notifies
    nobody. One write in the common case (the group's pending row), whatever the rate."""
    _notify_about_post(post_id=post_id, actor_id=actor_id, kind=Kind.LIKE)


def notify_reposted(*, post_id: int, actor_id: int) -> None:
    """`actor_id` reposted post `post_id`: as notify_liked, for reposts."""
    _notify_about_post(post_id=post_id, actor_id=actor_id, kind=Kind.REPOST)


def _notify_about_post(*, post_id: int, actor_id: int, kind: str) -> None:
    # The request that liked pays for this: one query, compiled once per process (core.sqlcache).
    found = sqlcache.fetch(_post_recipient, post_id, actor_id, using=DEFAULT_DB_ALIAS)
    if found:
        _pend(
            recipient_id=found[0], actor_id=actor_id, kind=kind, group_key=post_id, post_id=post_id
        )


def _post_recipient(post_id: int, actor_id: int) -> QuerySet[Post, int]:
    """The author of the post, if the post is there (not a placeholder, author not deleted), is
    not the actor and does not silence them (timelines.visibility.silences)."""
    return (
        Post.objects.filter(id=post_id, is_deleted=False, author__isnull=False)
        .exclude(author_id=actor_id)
        .exclude(visibility.silences(OuterRef("author_id"), actor_id))
        .values_list("author_id", flat=True)[:1]
    )


def _pend(
    *,
    recipient_id: int,
    actor_id: int,
    kind: str,
    group_key: int,
    post_id: int | None = None,
    checked: bool = True,
) -> None:
    """Adds an event to its group's pending row: one UPDATE, in autocommit when called outside a
    transaction, so the row is locked only for that statement. The first event of a group
    creates the row and enqueues the job that folds it in after the delay (in one transaction).
    `checked`: the caller has asked visibility whether the actor may notify the recipient."""
    if not checked and not visibility.notifies(recipient_id=recipient_id, actor_ids=[actor_id]):
        return
    pending = PendingNotification.objects.filter(
        recipient_id=recipient_id, kind=kind, group_key=group_key
    )
    if pending.update(count=F("count") + 1, actor_id=actor_id):
        return
    try:
        with transaction.atomic():
            PendingNotification.objects.create(
                recipient_id=recipient_id,
                kind=kind,
                group_key=group_key,
                post_id=post_id,
                actor_id=actor_id,
            )
            delay = settings.NOTIFICATIONS_GROUP_DELAY_SECONDS
            jobs.enqueue_with_write(
                jobs.after_delay(jobs.fold_notifications, delay), recipient_id, kind, group_key
            )
    except IntegrityError:
        # Another event of the group created the row meanwhile (its job is queued): join it.
        # (A recipient, actor or post deleted meanwhile also lands here: nothing to tell then.)
        pending.update(count=F("count") + 1, actor_id=actor_id)


def notifications_fold(*, recipient_id: int, kind: str, group_key: int) -> bool:
    """Folds the group's pending events into its notification (created, or counted up, given the
    latest actor and moved to the top). Idempotent: with no pending row it does nothing."""
    with transaction.atomic():
        pending = (
            PendingNotification.objects.select_for_update()
            .filter(recipient_id=recipient_id, kind=kind, group_key=group_key)
            .first()
        )
        if pending is None:
            return False
        pending.delete()
        group = Notification.objects.filter(
            recipient_id=recipient_id, kind=kind, group_key=group_key
        )
        now = timezone.now()
        changes = {"actor_id": pending.actor_id, "sort_id": new_id(), "updated_at": now}
        if not group.update(count=F("count") + pending.count, **changes):
            Notification.objects.create(
                recipient_id=recipient_id,
                kind=kind,
                group_key=group_key,
                post_id=pending.post_id,
                count=pending.count,
                **changes,
            )
        events.publish_unread_changed_after_commit(user_id=recipient_id)
    return True


def notifications_mark_seen(*, user_id: int, seen_id: int) -> bool:
    """Everything up to `seen_id` (the newest notification the page showed) is read. Never moves
    back: one conditional UPDATE, and on the first visit an INSERT that a concurrent first visit
    cannot duplicate. Returns whether the marker moved (or was created)."""
    moved = NotificationMarker.objects.filter(user_id=user_id, seen_id__lt=seen_id).update(
        seen_id=seen_id
    )
    if not moved:
        # No marker yet (or one already at or past seen_id: then the insert is ignored).
        moved = len(
            NotificationMarker.objects.bulk_create(
                [NotificationMarker(user_id=user_id, seen_id=seen_id)], ignore_conflicts=True
            )
        )
    if moved:
        # The reader's other open pages clear their count (stream/app.py).
        events.publish_unread_changed_after_commit(user_id=user_id)
    return bool(moved)


def notifications_forget_post(*, post_id: int) -> None:
    """A post is deleted (or becomes a placeholder): the notifications about it go, so none
    shows its text or its author (post_delete, in its transaction)."""
    Notification.objects.filter(post_id=post_id).delete()
    PendingNotification.objects.filter(post_id=post_id).delete()


def notification_dismiss(*, user_id: int, sort_id: int) -> bool:
    """The user removes one of their notifications (named by its `sort_id`, the client API's
    id). Events of its group that are still pending are not part of it: they arrive later as a
    new notification. Returns whether there was one to remove."""
    removed, _ = Notification.objects.filter(recipient_id=user_id, sort_id=sort_id).delete()
    if removed:
        events.publish_unread_changed_after_commit(user_id=user_id)
    return bool(removed)


def notifications_clear(*, user_id: int) -> int:
    """The user removes all their notifications; pending events (not yet shown anywhere)
    arrive later, as after a dismissal. Returns how many were removed."""
    removed, _ = Notification.objects.filter(recipient_id=user_id).delete()
    if removed:
        events.publish_unread_changed_after_commit(user_id=user_id)
    return removed


def day_of(moment: datetime) -> int:
    """The group key of a day's new followers."""
    return int(moment.astimezone(UTC).timestamp()) // 86400
