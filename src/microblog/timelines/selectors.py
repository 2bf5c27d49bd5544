"""The timelines, each named after the page that shows it.

Views call only these functions, so how a feed is built can change without touching them.
Each is an index range scan plus one query that loads the posts with their authors.
"""

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from microblog.accounts.models import User
from microblog.core.pagination import MAX_ID, Page, make_page
from microblog.follows.models import Follow
from microblog.posts.models import Post
from microblog.timelines import fanout
from microblog.timelines.fanout import FEED, FOLLOWS, POSTS, USERS


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
    """Home: your own posts and the top-level posts of everyone you follow, newest first.

    Read from the fan-out feed: one index range scan of the reader's entries, unioned with the
    recent posts of the celebrities they follow (not fanned out), then one query loads the posts.
    Below the reader's feed horizon, and for readers whose feed is not maintained because they
    were inactive, the page comes from the pull query, so scrolling never ends early.
    """
    size = settings.PAGE_SIZE
    upper = cursor if cursor is not None else MAX_ID
    if not fanout.is_active(user):
        return for_you_pull(user, cursor)
    horizon = user.feed_horizon
    ids: list[int] = []
    if upper > horizon:
        ids = _feed_ids(user.id, upper, horizon, size + 1)
    if len(ids) <= size and horizon > 0:
        # The stored feed ends at the horizon; continue below it with the pull query.
        below = for_you_pull_ids(user, min(upper, horizon), size + 1 - len(ids))
        ids += below
    posts = posts_for_display().in_bulk(ids)
    return make_page([posts[i] for i in ids if i in posts], size)


def _feed_ids(user_id: int, upper: int, horizon: int, limit: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT post_id FROM (
                SELECT post_id FROM {FEED}
                WHERE user_id = %s AND post_id < %s AND post_id >= %s
                ORDER BY post_id DESC LIMIT %s
            ) AS stored
            UNION
            SELECT id FROM (
                SELECT p.id FROM {POSTS} p
                WHERE p.parent_id IS NULL AND p.id < %s AND p.id >= %s AND p.author_id IN (
                    SELECT c.id FROM {USERS} c
                    WHERE c.is_celebrity AND EXISTS (
                        SELECT 1 FROM {FOLLOWS} f WHERE f.follower_id = %s AND f.followed_id = c.id
                    )
                )
                ORDER BY p.id DESC LIMIT %s
            ) AS celebrities
            ORDER BY 1 DESC LIMIT %s
            """,
            [user_id, upper, horizon, limit, upper, horizon, user_id, limit, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def for_you_pull_query(user: User) -> QuerySet[Post]:
    """The reference For You: computed from posts and follows alone (the fan-out is tested
    against it, and it serves readers and pages the stored feed does not cover)."""
    return posts_for_display().filter(
        Q(author_id=user.id) | Q(author_id__in=followed_ids(user)), parent__isnull=True
    )


def for_you_pull_ids(user: User, upper: int, limit: int) -> list[int]:
    return list(
        for_you_pull_query(user)
        .filter(id__lt=upper)
        .order_by("-id")
        .values_list("id", flat=True)[:limit]
    )


def for_you_pull(user: User, cursor: int | None = None) -> Page[Post]:
    return _newest_first(for_you_pull_query(user), cursor)


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
