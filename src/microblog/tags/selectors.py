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
    posts = posts_for_display().filter(visibility.in_lists(viewer), tag_links__tag_id=tag.id)
    if cursor is not None:
        posts = posts.filter(id__lt=cursor)
    size = settings.PAGE_SIZE
    return make_page(list(posts.order_by("-id")[: size + 1]), size)


def tags_by_prefix(prefix: str, limit: int) -> list[Tag]:
    """Tags whose name starts with `prefix` (a normalised name), in name order."""
    return list(Tag.objects.filter(name__startswith=prefix).order_by("name")[:limit])


def trending() -> list[Trend]:
    """The trending list as the periodic job last stored it (tags.services.trending_refresh)."""
    return list(Trend.objects.select_related("tag").order_by("rank"))
