"""Reads of moderation: relationships between accounts, the review queue, the audit log.

Who may see which post (hidden posts, blocks, mutes) is decided in timelines.visibility; `can_see`
is imported here for the views that ask it through this module.
"""

from dataclasses import dataclass
from typing import Any, Literal

from django.db.models import Exists, OuterRef, Q, QuerySet

from microblog.accounts.models import User
from microblog.core.pagination import Page, make_page
from microblog.follows.models import Follow
from microblog.moderation.models import Block, ModerationAction, Mute, Report
from microblog.posts.models import Post
from microblog.timelines.visibility import Viewer
from microblog.timelines.visibility import can_see as can_see  # for the views that ask here

QUEUE_PAGE_SIZE = 20
LOG_PAGE_SIZE = 50


def has_reported(*, reporter_id: int, post_id: int) -> bool:
    """Whether the user has reported this post already (one report per user and post)."""
    return Report.objects.filter(reporter_id=reporter_id, post_id=post_id).exists()


def block_between(user_id: int, other_id: int) -> Literal["blocking", "blocked_by"] | None:
    """Whether `user_id` blocks `other_id` ("blocking") or is blocked by them ("blocked_by")."""
    pair = Block.objects.filter(
        Q(blocker_id=user_id, blocked_id=other_id) | Q(blocker_id=other_id, blocked_id=user_id)
    ).values_list("blocker_id", flat=True)
    blockers = set(pair)
    if user_id in blockers:
        return "blocking"
    if other_id in blockers:
        return "blocked_by"
    return None


def blocks_replies(*, parent_id: int, replier_id: int) -> bool:
    """Whether the author of post `parent_id` blocks `replier_id`."""
    return Block.objects.filter(
        blocker_id=Post.objects.filter(id=parent_id).values("author_id")[:1],
        blocked_id=replier_id,
    ).exists()


def author_blocks(replier_id: Any) -> Exists:
    """On a post query: whether the post's author blocks `replier_id` (blocks_replies, as an
    expression of the post row, so a query that reads the post answers it too)."""
    return Exists(Block.objects.filter(blocker_id=OuterRef("author_id"), blocked_id=replier_id))


@dataclass(frozen=True, slots=True)
class Relationship:
    following: bool = False
    blocking: bool = False
    blocked_by: bool = False
    muting: bool = False
    # Filled by `relationships` (the client API); the profile page does not show it.
    followed_by: bool = False


def relationship(viewer: Viewer, other: User) -> Relationship:
    """How `viewer` stands to `other`, for a profile's buttons. `other` was read through
    `with_relationship` for this viewer (the profile page's user query, compiled once per
    process: no query of its own); a visitor and the user themself have none."""
    if not viewer.is_authenticated or viewer.id == other.id:
        return Relationship()
    return Relationship(
        following=other.rel_following,  # type: ignore[attr-defined]
        blocking=other.rel_blocking,  # type: ignore[attr-defined]
        blocked_by=other.rel_blocked_by,  # type: ignore[attr-defined]
        muting=other.rel_muting,  # type: ignore[attr-defined]
    )


def with_relationship(users: QuerySet[User], viewer_id: int) -> QuerySet[User]:
    """`users`, each annotated with how `viewer_id` stands to them (read by `relationship`;
    a plain "following" would clash with the users' reverse relations): four EXISTS probes of
    primary keys."""
    other = OuterRef("id")
    return users.annotate(
        rel_following=Exists(Follow.objects.filter(follower_id=viewer_id, followed_id=other)),
        rel_blocking=Exists(Block.objects.filter(blocker_id=viewer_id, blocked_id=other)),
        rel_blocked_by=Exists(Block.objects.filter(blocker_id=other, blocked_id=viewer_id)),
        rel_muting=Exists(Mute.objects.filter(muter_id=viewer_id, muted_id=other)),
    )


def relationships(viewer: User, other_ids: list[int]) -> dict[int, Relationship]:
    """How `viewer` stands to each of `other_ids` that exists, in one query (the client API's
    relationships endpoint, which also asks whether they follow the viewer)."""
    rows = (
        User.objects.filter(id__in=other_ids)
        .annotate(
            following=Exists(
                Follow.objects.filter(follower_id=viewer.id, followed_id=OuterRef("id"))
            ),
            followed_by=Exists(
                Follow.objects.filter(follower_id=OuterRef("id"), followed_id=viewer.id)
            ),
            blocking=Exists(Block.objects.filter(blocker_id=viewer.id, blocked_id=OuterRef("id"))),
            blocked_by=Exists(
                Block.objects.filter(blocker_id=OuterRef("id"), blocked_id=viewer.id)
            ),
            muting=Exists(Mute.objects.filter(muter_id=viewer.id, muted_id=OuterRef("id"))),
        )
        .values_list("id", "following", "followed_by", "blocking", "blocked_by", "muting")
    )
    return {
        row[0]: Relationship(
            following=row[1], followed_by=row[2], blocking=row[3], blocked_by=row[4], muting=row[5]
        )
        for row in rows
    }


def blocked_users(viewer: User) -> list[User]:
    """The accounts `viewer` blocks, most recent first (the settings page)."""
    return _listed(Block.objects.filter(blocker_id=viewer.id), "blocked_id")


def muted_users(viewer: User) -> list[User]:
    """The accounts `viewer` mutes, most recent first (the settings page)."""
    return _listed(Mute.objects.filter(muter_id=viewer.id), "muted_id")


def _listed(rows: QuerySet[Any], other: str) -> list[User]:
    """The accounts named by `other` in `rows` (one user's blocks or mutes), newest row first."""
    since = rows.filter(**{other: OuterRef("id")}).values("created_at")[:1]
    return list(
        User.objects.filter(id__in=rows.values(other)).annotate(since=since).order_by("-since")
    )


@dataclass(slots=True)
class QueueItem:
    post: Post
    reports: list[Report]

    @property
    def reasons(self) -> list[tuple[str, int]]:
        """Each reason given, with how many reports gave it, most frequent first."""
        counts: dict[str, int] = {}
        for report in self.reports:
            label = report.get_reason_display()
            counts[label] = counts.get(label, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def review_queue() -> list[QueueItem]:
    """Posts with reports waiting for review: those the reports hid first, then the most
    reported, oldest post first among equals; two queries. No cursor: the queue changes as
    staff work through it, and reviewed posts leave it, so the first page is always the next."""
    posts = list(
        Post.objects.select_related("author")
        .filter(open_reports__gt=0)
        .order_by("-is_hidden", "-open_reports", "id")[:QUEUE_PAGE_SIZE]
    )
    reports: dict[int, list[Report]] = {post.id: [] for post in posts}
    for report in (
        Report.objects.select_related("reporter")
        .filter(post_id__in=list(reports), resolved_at=None)
        .order_by("id")
    ):
        reports[report.post_id].append(report)
    return [QueueItem(post=post, reports=reports[post.id]) for post in posts]


def queue_size() -> int:
    return Post.objects.filter(open_reports__gt=0).count()


def hidden_posts(cursor: int | None = None) -> Page[Post]:
    """Every hidden post, newest first (staff restore them from this list)."""
    posts = Post.objects.select_related("author").filter(is_hidden=True)
    if cursor is not None:
        posts = posts.filter(id__lt=cursor)
    return make_page(list(posts.order_by("-id")[: QUEUE_PAGE_SIZE + 1]), QUEUE_PAGE_SIZE)


def audit_log(cursor: int | None = None) -> Page[ModerationAction]:
    entries = ModerationAction.objects.all()
    if cursor is not None:
        entries = entries.filter(id__lt=cursor)
    return make_page(list(entries.order_by("-id")[: LOG_PAGE_SIZE + 1]), LOG_PAGE_SIZE)
