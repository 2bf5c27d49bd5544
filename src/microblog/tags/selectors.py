"""Reads of hashtags: a tag's page of posts, tags by prefix (search), the stored trending list,
a tag's use per day (the client API's history)."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from microblog.core.ids import first_id_at_ms
from microblog.core.pagination import Page, make_page
from microblog.posts.models import Post
from microblog.tags.models import PostTag, Tag, Trend
from microblog.timelines import visibility
from microblog.timelines.selectors import posts_for_display
from microblog.timelines.visibility import Viewer


def tag_named(name: str) -> Tag | None:
    """The tag of a normalised name (core.text.hashtag_name), or None."""
    return Tag.objects.filter(name=name).first()


def tag_posts(tag: Tag, viewer: Viewer, cursor: int | None = None) -> Page[Post]:
    """The posts and replies carrying `tag` that `viewer` may see in lists, newest first: a
    backward range scan of the tag's links (the key (tag_id, post_id)), each probing its post,
    until a page is full."""
    size = settings.PAGE_SIZE
    tagged = Post.objects.filter(visibility.in_lists(viewer), tag_links__tag_id=tag.id)
    if cursor is not None:
        tagged = tagged.filter(id__lt=cursor)
    # The page's ids in a subquery, then the cards' joins for those rows only: with the author
    # and parent joins in the same query the planner walked the posts backwards for a rarer
    # tag (19 ms for #python at the medium preset) instead of the tag's 21 newest links (0.4 ms).
    ids = tagged.order_by("-tag_links__post_id").values("id")[: size + 1]
    return make_page(list(posts_for_display().filter(id__in=ids).order_by("-id")), size)


def tag_posts_query(tag: Tag, viewer: Viewer) -> QuerySet[Post]:
    """The posts of tag_posts(), unpaginated (the client API's since_id and min_id)."""
    return posts_for_display().filter(visibility.in_lists(viewer), tag_links__tag_id=tag.id)


def tags_by_prefix(prefix: str, limit: int, *, offset: int = 0) -> list[Tag]:
    """Tags whose name starts with `prefix` (a normalised name), in name order: `limit` of them
    after the first `offset`."""
    return list(
        Tag.objects.filter(name__startswith=prefix).order_by("name")[offset : offset + limit]
    )


@dataclass(frozen=True, slots=True)
class TagDay:
    day: datetime  # its start, UTC midnight
    uses: int  # posts that carry the tag, counted as trending counts them
    accounts: int  # their distinct authors


def tags_history(tag_ids: Collection[int], *, days: int = 7) -> dict[int, list[TagDay]]:
    """Each tag's use over the last `days` UTC days, today first (the client API's Tag history):
    the posts that count towards trending (visibility.trending_post_links) and their authors.
    One aggregate over the tags' links in the window (a range of post ids: ids are times)."""
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=n) for n in range(days)]
    bounds = [first_id_at_ms(int(start.timestamp() * 1000)) for start in starts]
    aggregates: dict[str, Count] = {}
    for n, low in enumerate(bounds):
        in_day = Q(post_id__gte=low) if n == 0 else Q(post_id__gte=low, post_id__lt=bounds[n - 1])
        aggregates[f"uses_{n}"] = Count("post_id", filter=in_day)
        aggregates[f"accounts_{n}"] = Count("post__author_id", distinct=True, filter=in_day)
    found: dict[int, dict[str, Any]] = {
        row["tag_id"]: dict(row)
        for row in PostTag.objects.filter(tag_id__in=list(tag_ids), post_id__gte=bounds[-1])
        .filter(visibility.trending_post_links())
        .values("tag_id")
        .annotate(**aggregates)
        .order_by()
    }
    history = {}
    for tag_id in tag_ids:
        row: dict[str, Any] = found.get(tag_id, {})
        history[tag_id] = [
            TagDay(day=start, uses=row.get(f"uses_{n}", 0), accounts=row.get(f"accounts_{n}", 0))
            for n, start in enumerate(starts)
        ]
    return history


def trending() -> list[Trend]:
    """The trending list as the periodic job last stored it (tags.services.trending_refresh)."""
    return list(Trend.objects.select_related("tag").order_by("rank"))
