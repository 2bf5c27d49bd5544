"""Reads of notifications: the page, the client API's lists (api.notification_views) and the
unread count."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from microblog.accounts.models import User
from microblog.notifications.models import Notification, NotificationMarker
from microblog.timelines import visibility

PAGE_SIZE = 20
# The top bar counts unread notifications up to this many ("99+"): the count reads at most this
# many index entries, however many a popular account has waiting.
UNREAD_COUNTED_MAX = 100

NOTIFICATIONS = Notification._meta.db_table
MARKERS = NotificationMarker._meta.db_table


def unread_count(users: str = "accounts_user") -> RawSQL:
    """An annotation of users (the table `users`): how many notifications they have not seen,
    up to UNREAD_COUNTED_MAX, counting only those their page would show
    (visibility.notification_shown_sql). Annotated on the signed-in user as it is loaded for
    every request (accounts.backends), so the top bar's count costs no query of its own."""
    # No value from outside goes into this SQL: table names from the models, a constant, and
    # visibility's fragment (noqa: S611).
    return RawSQL(  # noqa: S611
        f"""SELECT COUNT(*) FROM (
              SELECT 1 FROM {NOTIFICATIONS} n
              WHERE n.recipient_id = {users}.id
                AND n.sort_id > COALESCE(
                    (SELECT mk.seen_id FROM {MARKERS} mk WHERE mk.user_id = {users}.id), 0)
                AND {visibility.notification_shown_sql("n")}
              ORDER BY n.sort_id DESC
              LIMIT {UNREAD_COUNTED_MAX}) unread""",
        (),
    )


@dataclass(frozen=True, slots=True)
class NotificationsPage:
    items: Sequence[Notification]  # each annotated with `unread`
    next_cursor: int | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def shown_to(user_id: int) -> QuerySet[Notification]:
    """The notifications the user's page shows, unordered and unpaginated: theirs, as
    timelines.visibility decides (`notifications_for`). The page and the client API read
    through this."""
    return Notification.objects.filter(recipient_id=user_id).filter(
        visibility.notifications_for(user_id)
    )


def notifications_page(*, user_id: int, cursor: int | None = None) -> NotificationsPage:
    """The user's notifications, most recently changed first, PAGE_SIZE at a time (the cursor is
    a `sort_id`), each with `unread` (above the user's marker), its actor and its post: one
    query. What is shown is timelines.visibility's (`notifications_for`)."""
    seen = NotificationMarker.objects.filter(user_id=user_id).values("seen_id")[:1]
    rows = (
        shown_to(user_id)
        .select_related("actor", "post")
        .annotate(
            unread=ExpressionWrapper(
                Q(sort_id__gt=Coalesce(Subquery(seen), Value(0))), output_field=BooleanField()
            )
        )
    )
    if cursor is not None:
        rows = rows.filter(sort_id__lt=cursor)
    found = list(rows.order_by("-sort_id")[: PAGE_SIZE + 1])
    if len(found) > PAGE_SIZE:
        found = found[:PAGE_SIZE]
        return NotificationsPage(items=found, next_cursor=found[-1].sort_id)
    return NotificationsPage(items=found, next_cursor=None)


def notifications_list(
    *,
    user_id: int,
    kinds: Collection[str] | None = None,
    actor_id: int | None = None,
    before: int | None = None,
    after: int | None = None,
    closest_first: bool = False,
    limit: int = PAGE_SIZE,
) -> list[Notification]:
    """Up to `limit` of what shown_to() lets through, by `sort_id` in (after, before), newest
    first: the newest such, or (`closest_first`) those just above `after`, for paging forward.
    Only `kinds` (None: all) and only those whose latest actor is `actor_id`, if given. Each with
    its actor, its post, the post's author and parent: one query.

    The page's ids are chosen in a subquery and only those rows are joined: as one flat query,
    the generic plan of the prepared statement (psycopg prepares it from its 5th run, and
    PostgreSQL then plans for a user of average size) joined the actor, post and parent of every
    notification of the user before sorting: 46 ms for a reader with 1,315 rows at the medium
    preset, now 6.8 ms (1.3 ms with a custom plan; docs/benchmarks.md)."""
    rows = shown_to(user_id)
    if kinds is not None:
        rows = rows.filter(kind__in=list(kinds))
    if actor_id is not None:
        rows = rows.filter(actor_id=actor_id)
    if before is not None:
        rows = rows.filter(sort_id__lt=before)
    if after is not None:
        rows = rows.filter(sort_id__gt=after)
    order = "sort_id" if closest_first else "-sort_id"
    page = rows.order_by(order).values("id")[:limit]
    found = list(
        Notification.objects.filter(id__in=page)
        .select_related("actor", "post__author", "post__parent")
        .order_by(order)
    )
    return found[::-1] if closest_first else found


def notification_shown(*, user_id: int, sort_id: int) -> Notification | None:
    """One notification of the user by its `sort_id` (the client API's id), if shown_to() lets
    it through."""
    return (
        shown_to(user_id)
        .select_related("actor", "post__author", "post__parent")
        .filter(sort_id=sort_id)
        .first()
    )


def unread_count_of(user_id: int) -> int:
    """unread_count() for one user (the client API; the pages read it from the user's row)."""
    found = (
        User.objects.filter(id=user_id)
        .annotate(unread=unread_count())
        .values_list("unread", flat=True)
        .first()
    )
    return int(found or 0)
