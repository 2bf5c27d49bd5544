"""Reads of hashtags: a tag's page of posts, tags by prefix (search), the stored trending list."""

from django.conf import settings

from microblog.core.pagination import Page, make_page
from microblog.posts.models import Post
from microblog.tags.models import Tag, Trend
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


def tags_by_prefix(prefix: str, limit: int) -> list[Tag]:
    """Tags whose name starts with `prefix` (a normalised name), in name order."""
    return list(Tag.objects.filter(name__startswith=prefix).order_by("name")[:limit])


def trending() -> list[Trend]:
    """The trending list as the periodic job last stored it (tags.services.trending_refresh)."""
    return list(Trend.objects.select_related("tag").order_by("rank"))
