"""The timelines, each named after the page that shows it.

Views call only these functions, so how a feed is built (pull query today, fan-out later) can
change without touching them. Each is one index range scan plus the authors, joined.
"""

from django.conf import settings
from django.db.models import Q, QuerySet

from microblog.accounts.models import User
from microblog.core.pagination import Page, make_page
from microblog.follows.models import Follow
from microblog.posts.models import Post


def posts_for_display() -> QuerySet[Post]:
    """Posts with everything a post card shows, in one query: author, parent and parent author."""
    return Post.objects.select_related("author", "parent__author")


def _newest_first(queryset: QuerySet[Post], cursor: int | None) -> Page[Post]:
    if cursor is not None:
        queryset = queryset.filter(id__lt=cursor)
    size = settings.PAGE_SIZE
    return make_page(list(queryset.order_by("-id")[: size + 1]), size)


def followed_ids(user: User) -> QuerySet[Follow, int]:
    return Follow.objects.filter(follower_id=user.id).values_list("followed_id", flat=True)


def for_you(user: User, cursor: int | None = None) -> Page[Post]:
    """Home: your own posts and the top-level posts of everyone you follow, newest first."""
    queryset = posts_for_display().filter(
        Q(author_id=user.id) | Q(author_id__in=followed_ids(user)), parent__isnull=True
    )
    return _newest_first(queryset, cursor)


def following(user: User, cursor: int | None = None) -> Page[Post]:
    """The posts, replies included, of the people you follow (the pull query)."""
    return _newest_first(posts_for_display().filter(author_id__in=followed_ids(user)), cursor)


def everyone(cursor: int | None = None) -> Page[Post]:
    """Every top-level post: the public timeline."""
    return _newest_first(posts_for_display().filter(parent__isnull=True), cursor)


def profile(author: User, cursor: int | None = None) -> Page[Post]:
    """One user's top-level posts."""
    return _newest_first(
        posts_for_display().filter(author_id=author.id, parent__isnull=True), cursor
    )
