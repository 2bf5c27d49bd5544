"""Recomputes every counter from the rows it counts, reports the drift, and fixes it.

Counters are kept exact by the services (same transaction, F() updates); this is the safety net
for anything that bypassed them (a manual SQL fix, a restored backup), run daily by the worker
and on demand by `microblog reconcile-counters`.
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from microblog.accounts.models import User
from microblog.follows.models import Follow
from microblog.interactions.models import Like, Repost
from microblog.moderation.models import Report as ModerationReport
from microblog.posts.models import Post


@dataclass
class Drift:
    counter: str
    object_id: int
    stored: int
    actual: int


@dataclass
class Report:
    drifts: list[Drift] = field(default_factory=list)
    fixed: bool = False

    def drift_by_counter(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for drift in self.drifts:
            totals[drift.counter] = totals.get(drift.counter, 0) + 1
        return totals


def _count(queryset: object, group: str) -> Coalesce:
    sub = (
        queryset.filter(**{group: OuterRef("pk")})  # type: ignore[attr-defined]
        .order_by()
        .values(group)
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(sub, output_field=IntegerField()), Value(0))


USER_COUNTERS = {
    "followers_count": (Follow.objects.all(), "followed_id"),
    "following_count": (Follow.objects.all(), "follower_id"),
    "posts_count": (Post.objects.all(), "author_id"),
}


def reconcile(*, fix: bool) -> Report:
    report = Report(fixed=fix)
    for counter, (queryset, group) in USER_COUNTERS.items():
        wrong = (
            User.objects.annotate(actual=_count(queryset, group))
            .exclude(**{counter: F("actual")})
            .values_list("id", counter, "actual")
        )
        for user_id, stored, actual in wrong.iterator():
            report.drifts.append(Drift(f"user.{counter}", user_id, stored, actual))
            if fix:
                User.objects.filter(id=user_id).update(**{counter: actual})
    replies = (
        Post.objects.annotate(actual=_count(Post.objects.all(), "parent_id"))
        .exclude(replies_count=F("actual"))
        .values_list("id", "replies_count", "actual")
    )
    for post_id, stored, actual in replies.iterator():
        report.drifts.append(Drift("post.replies_count", post_id, stored, actual))
        if fix:
            Post.objects.filter(id=post_id).update(replies_count=actual)
    # Likes and reposts: only posts that have some, or claim some, can drift.
    for counter, rows in (
        ("likes_count", Like.objects.all()),
        ("reposts_count", Repost.objects.all()),
    ):
        suspects = Post.objects.filter(
            Q(**{f"{counter}__gt": 0}) | Q(id__in=rows.values("post_id"))
        )
        wrong_posts = (
            suspects.annotate(actual=_count(rows, "post_id"))
            .exclude(**{counter: F("actual")})
            .order_by("id")
            .values_list("id", counter, "actual")
        )
        for post_id, stored, actual in wrong_posts.iterator():
            report.drifts.append(Drift(f"post.{counter}", post_id, stored, actual))
            if fix:
                Post.objects.filter(id=post_id).update(**{counter: actual})
    # Open reports: only posts that have reports, or claim some, can drift.
    open_reports = ModerationReport.objects.filter(resolved_at=None)
    suspects = Post.objects.filter(Q(open_reports__gt=0) | Q(id__in=open_reports.values("post_id")))
    reports = (
        suspects.annotate(actual=_count(open_reports, "post_id"))
        .exclude(open_reports=F("actual"))
        .order_by("id")
        .values_list("id", "open_reports", "actual")
    )
    for post_id, stored, actual in reports.iterator():
        report.drifts.append(Drift("post.open_reports", post_id, stored, actual))
        if fix:
            Post.objects.filter(id=post_id).update(open_reports=actual)
    threshold = settings.FANOUT_CELEBRITY_FOLLOWERS
    flags = User.objects.filter(
        Q(is_celebrity=True, followers_count__lte=threshold)
        | Q(is_celebrity=False, followers_count__gt=threshold)
    ).values_list("id", "is_celebrity")
    for user_id, flag in flags.iterator():
        report.drifts.append(Drift("user.is_celebrity", user_id, int(flag), int(not flag)))
        if fix:
            _set_celebrity(user_id, not flag)
    return report


def _set_celebrity(user_id: int, value: bool) -> None:
    from microblog import jobs

    with transaction.atomic():
        User.objects.filter(id=user_id).update(is_celebrity=value)
        if not value:
            jobs.enqueue_with_write(jobs.backfill_author, user_id)
