"""The timelines, each named after the page that shows it.

Views call only these functions, so how a feed is built can change without touching them.
Each is an index range scan plus one query that loads the posts with their authors.
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, router
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from microblog.accounts.models import User
from microblog.core import sqlcache
from microblog.core.pagination import MAX_ID, Page, make_page
from microblog.posts.models import Post
from microblog.posts.selectors import POST_COLUMNS, posts_from_rows, with_card_authors
from microblog.timelines import fanout, visibility
from microblog.timelines.fanout import FEED, FOLLOWS, POSTS, REPOST_FEED, REPOSTS, USERS
from microblog.timelines.visibility import Viewer, by_viewer_kind, on_pages_for


def posts_for_display() -> QuerySet[Post]:
    """Posts with everything a post card shows, in one query: author, parent and parent author."""
    return Post.objects.select_related("author", "parent__author")


def top_level_posts() -> QuerySet[Post]:
    """Top-level posts with their authors: no parent to join (two joins fewer to build and run
    on every For You, All and profile page)."""
    return with_card_authors(Post.objects.filter(parent__isnull=True))


def _newest_first(queryset: QuerySet[Post], cursor: int | None) -> Page[Post]:
    if cursor is not None:
        queryset = queryset.filter(id__lt=cursor)
    size = settings.PAGE_SIZE
    return make_page(list(queryset.order_by("-id")[: size + 1]), size)


def for_you(user: User, cursor: int | None = None, *, whole_authors: bool = False) -> Page[Post]:
    """Home: your own posts and the top-level posts of everyone you follow, newest first.

    Read from the fan-out feed in one query: the page's ids (an index range scan of the
    reader's entries, unioned with the newest posts of each celebrity they follow, which are
    not fanned out) as a subquery of the query that loads the posts with their authors.
    Below the reader's feed horizon, and for readers whose feed is not maintained because they
    were inactive, the page comes from the pull query, so scrolling never ends early.

    The page's cards show only the authors' usernames, so their other columns are left unread;
    `whole_authors` reads them too (the client API's Status embeds the whole Account).
    """
    size = settings.PAGE_SIZE
    upper = cursor if cursor is not None else MAX_ID
    if not fanout.is_active(user):
        return for_you_pull(user, cursor, whole_authors=whole_authors)
    horizon = user.feed_horizon
    posts: list[Post] = []
    if upper > horizon:
        # Compiled once per process (core.sqlcache): building and compiling this QuerySet cost
        # more CPU than PostgreSQL spends running it.
        posts = _fetch_posts(
            whole_authors, _feed_page, _feed_page_whole_authors, user.id, upper, horizon
        )
    if len(posts) <= size and horizon > 0:
        # The stored feed ends at the horizon; continue below it with the pull query. Compiled
        # too: a reader whose stored feed holds less than a page (few follows) comes here on
        # every first page, and building it through the ORM cost more than the rest of the
        # page's reads (docs/benchmarks.md, "Issue 15: For You").
        below = min(upper, horizon)
        posts += _fetch_posts(whole_authors, _pull_page, _pull_page_whole_authors, user.id, below)[
            : size + 1 - len(posts)
        ]
    return make_page(posts, size)


# A card's post read as a row: the post's columns and its author's username, the card's only
# author column (posts.selectors.posts_from_rows makes the objects).
_CARD_ROW = (*POST_COLUMNS, "author__username")


def _fetch_posts(
    whole_authors: bool,
    cards: Callable[..., QuerySet[Post, Any]],
    whole: Callable[..., QuerySet[Post]],
    *args: int,
) -> list[Post]:
    """A compiled page of posts: with their authors whole (`whole`, the client API's Status
    embeds the Account), or read as rows for cards (`cards`: rows of _CARD_ROW, made into posts
    without the ORM's iterables, which cost For You a tenth of its CPU for 20 posts and 20
    authors; docs/benchmarks.md "Issue 15: For You")."""
    if whole_authors:
        return sqlcache.fetch(whole, *args)
    rows = sqlcache.fetch(cards, *args)
    return posts_from_rows(rows, router.db_for_read(Post), author_names=True)


def _feed_posts(user_id: int, upper: int, horizon: int) -> QuerySet[Post]:
    sql, params = _feed_ids_sql(user_id, upper, horizon, settings.PAGE_SIZE + 1)
    ids = RawSQL(sql, params)  # noqa: S611 (table names from models, values bound)
    # Stored entries and celebrities' merged posts are top-level posts only: no parent joins.
    return Post.objects.filter(id__in=ids).order_by("-id")


def _feed_page(user_id: int, upper: int, horizon: int) -> QuerySet[Post, Any]:
    return _feed_posts(user_id, upper, horizon).values_list(*_CARD_ROW)


def _feed_page_whole_authors(user_id: int, upper: int, horizon: int) -> QuerySet[Post]:
    return _feed_posts(user_id, upper, horizon).select_related("author")


def _feed_ids_sql(user_id: int, upper: int, horizon: int, limit: int) -> tuple[str, list[int]]:
    """The ids of the reader's newest `limit` feed posts in [horizon, upper): their stored
    entries, their stored reposts, and their followed celebrities' posts and reposts. A post
    there several ways (reposted by several, or also followed) comes once: UNION. `limit` is
    written into the SQL (it is the same on every call), so a prepared statement's generic
    plan knows it."""
    limit = int(limit)
    # Who sees what (moderation, mutes, blocks) on each entry and merged post: timelines.visibility.
    stored = f"""
        SELECT e.post_id FROM {FEED} e
        WHERE e.user_id = %s AND e.post_id < %s AND e.post_id >= %s
          AND {visibility.stored_entry_shown_sql("e")}
        ORDER BY e.post_id DESC LIMIT {limit}
    """
    # DISTINCT: a post reposted by several followed accounts has an entry per reposter, and
    # `limit` rows must be `limit` posts.
    stored_reposts = f"""
        SELECT DISTINCT r.post_id FROM {REPOST_FEED} r
        WHERE r.user_id = %s AND r.post_id < %s AND r.post_id >= %s
          AND {visibility.stored_repost_shown_sql("r")}
        ORDER BY r.post_id DESC LIMIT {limit}
    """
    heard = visibility.celebrity_follow_heard_sql("f")
    shown = visibility.celebrity_post_shown_sql("p")
    if connection.vendor == "postgresql":
        reposted_shown = visibility.celebrity_repost_shown_sql("p", "f.follower_id")
        # Driven from the reader's follows: each followed celebrity costs one index probe that
        # reads at most `limit` of its posts (and one of its reposts), and none older than the
        # page's oldest stored entry when the stored entries alone fill the page (older ones
        # cannot make the page).
        sql = f"""
            WITH stored AS ({stored}),
            floor AS MATERIALIZED (
                SELECT CASE WHEN COUNT(*) = {limit} THEN MIN(post_id) ELSE %s END AS lo
                FROM stored
            ),
            celebrities AS MATERIALIZED (
                SELECT f.follower_id, f.followed_id FROM {FOLLOWS} f
                JOIN {USERS} c ON c.id = f.followed_id
                WHERE f.follower_id = %s AND c.is_celebrity AND {heard}
            )
            SELECT post_id FROM stored
            UNION
            SELECT post_id FROM ({stored_reposts}) AS stored_reposts
            UNION
            SELECT cp.id FROM floor, celebrities f
            CROSS JOIN LATERAL (
                SELECT p.id FROM {POSTS} p
                WHERE p.author_id = f.followed_id AND p.parent_id IS NULL
                  AND p.id < %s AND p.id >= floor.lo AND {shown}
                ORDER BY p.id DESC LIMIT {limit}
            ) AS cp
            UNION
            SELECT cr.post_id FROM floor, celebrities f
            CROSS JOIN LATERAL (
                SELECT r.post_id FROM {REPOSTS} r JOIN {POSTS} p ON p.id = r.post_id
                WHERE r.user_id = f.followed_id AND r.post_id < %s AND r.post_id >= floor.lo
                  AND p.parent_id IS NULL AND {reposted_shown}
                ORDER BY r.post_id DESC LIMIT {limit}
            ) AS cr
            ORDER BY 1 DESC LIMIT {limit}
        """
        return sql, [
            *(user_id, upper, horizon),  # stored
            horizon,  # floor
            user_id,  # celebrities
            *(user_id, upper, horizon),  # stored reposts
            upper,  # celebrities' posts
            upper,  # celebrities' reposts
        ]
    # SQLite has no LATERAL: the followed celebrities' posts and reposts in one range scan each.
    reposted_shown = visibility.celebrity_repost_shown_sql("p", "reader.id")
    celebrities = f"""
        SELECT f.followed_id FROM {FOLLOWS} f
        JOIN {USERS} c ON c.id = f.followed_id
        WHERE f.follower_id = %s AND c.is_celebrity AND {heard}
    """
    sql = f"""
        SELECT post_id FROM ({stored}) AS stored
        UNION
        SELECT post_id FROM ({stored_reposts}) AS stored_reposts
        UNION
        SELECT id FROM (
            SELECT p.id FROM {POSTS} p
            WHERE p.parent_id IS NULL AND p.id < %s AND p.id >= %s AND {shown}
              AND p.author_id IN ({celebrities})
            ORDER BY p.id DESC LIMIT {limit}
        ) AS celebrity_posts
        UNION
        SELECT post_id FROM (
            SELECT r.post_id FROM (SELECT %s AS id) AS reader, {REPOSTS} r
            JOIN {POSTS} p ON p.id = r.post_id
            WHERE p.parent_id IS NULL AND r.post_id < %s AND r.post_id >= %s
              AND {reposted_shown} AND r.user_id IN ({celebrities})
            ORDER BY r.post_id DESC LIMIT {limit}
        ) AS celebrity_reposts
        ORDER BY 1 DESC LIMIT {limit}
    """
    return sql, [
        *(user_id, upper, horizon),  # stored
        *(user_id, upper, horizon),  # stored reposts
        *(upper, horizon, user_id),  # celebrities' posts
        *(user_id, upper, horizon, user_id),  # celebrities' reposts
    ]


def for_you_pull_query(user: User) -> QuerySet[Post]:
    """The reference For You: computed from posts and follows alone (the fan-out is tested
    against it, and it serves readers and pages the stored feed does not cover)."""
    return Post.objects.select_related("author").filter(visibility.for_you(user))


def for_you_pull(
    user: User, cursor: int | None = None, *, whole_authors: bool = False
) -> Page[Post]:
    """For You from the pull query (readers whose stored feed is not kept), compiled once per
    process (core.sqlcache): a returning reader's pages come from here until the rebuild job
    has run."""
    upper = cursor if cursor is not None else MAX_ID
    posts = _fetch_posts(whole_authors, _pull_page, _pull_page_whole_authors, user.id, upper)
    return make_page(posts, settings.PAGE_SIZE)


def _pull_posts(user_id: int, upper: int) -> QuerySet[Post]:
    return Post.objects.filter(visibility.for_you_of(user_id), id__lt=upper).order_by("-id")


def _pull_page(user_id: int, upper: int) -> QuerySet[Post, Any]:
    return _pull_posts(user_id, upper).values_list(*_CARD_ROW)[: settings.PAGE_SIZE + 1]


def _pull_page_whole_authors(user_id: int, upper: int) -> QuerySet[Post]:
    return _pull_posts(user_id, upper).select_related("author")[: settings.PAGE_SIZE + 1]


def following(user: User, cursor: int | None = None) -> Page[Post]:
    """The posts, replies included, of the people you follow (the pull query), compiled once
    per process (core.sqlcache) as For You is."""
    upper = cursor if cursor is not None else MAX_ID
    return make_page(sqlcache.fetch(_following_page, user.id, upper), settings.PAGE_SIZE)


def _following_page(user_id: int, upper: int) -> QuerySet[Post]:
    return (
        posts_for_display()
        .filter(visibility.following_of(user_id), id__lt=upper)
        .order_by("-id")[: settings.PAGE_SIZE + 1]
    )


def following_query(user: User) -> QuerySet[Post]:
    """The Following page's posts (the live stream's catch-up reads them too)."""
    return posts_for_display().filter(visibility.following(user))


# The most posts `?since=` returns at once (the "N new posts" button, stream/app.py).
NEW_POSTS_LIMIT = 100


def for_you_since(user: User, since: int, limit: int = NEW_POSTS_LIMIT) -> Page[Post]:
    """For You posts newer than `since`, newest first (the pull query: same rows as the feed).
    The page's `?since=` and the live stream's catch-up both read this."""
    posts = for_you_pull_query(user).filter(id__gt=since).order_by("-id")[:limit]
    return Page(items=list(posts), next_cursor=None)


def following_since(user: User, since: int, limit: int = NEW_POSTS_LIMIT) -> Page[Post]:
    """Following posts newer than `since`, newest first (`?since=` and the stream's catch-up)."""
    posts = following_query(user).filter(id__gt=since).order_by("-id")[:limit]
    return Page(items=list(posts), next_cursor=None)


def everyone(viewer: Viewer, cursor: int | None = None) -> Page[Post]:
    """Every top-level post: the public timeline (not the placeholders of deleted ones), with
    whole authors (the client API's public timeline reads this too). Compiled once per process
    and kind of viewer (core.sqlcache): it is the signed-out home page."""
    upper = cursor if cursor is not None else MAX_ID
    if viewer.is_authenticated:
        posts = sqlcache.fetch(_everyone_for_users, upper, viewer.id)
    else:
        posts = sqlcache.fetch(_everyone_for_visitors, upper)
    return make_page(posts, settings.PAGE_SIZE)


def _everyone_posts(upper: int, visible: Q) -> QuerySet[Post]:
    posts = Post.objects.select_related("author").filter(visible, id__lt=upper)
    return posts.order_by("-id")[: settings.PAGE_SIZE + 1]


def _everyone_for_visitors(upper: int) -> QuerySet[Post]:
    return _everyone_posts(upper, visibility.everyone_of(None))


def _everyone_for_users(upper: int, viewer_id: int) -> QuerySet[Post]:
    return _everyone_posts(upper, visibility.everyone_of(viewer_id))


def profile(author: User, viewer: Viewer, cursor: int | None = None) -> Page[Post]:
    """One user's top-level posts, as `viewer` may see them.

    Compiled once per process and kind of viewer (core.sqlcache): the query's shape depends on
    whether the viewer is a visitor, staff or anyone else, its values on who they are."""
    size = settings.PAGE_SIZE
    upper = cursor if cursor is not None else MAX_ID
    build, viewer_args = by_viewer_kind(
        viewer, visitors=_profile_for_visitors, users=_profile_for_users, staff=_profile_for_staff
    )
    args = (author.id, upper, *viewer_args)
    # Read as rows and made into posts directly (posts.selectors.posts_from_rows), each with
    # the user already read as its author: no author join, no 20 user objects per page.
    posts = posts_from_rows(sqlcache.fetch(build, *args), router.db_for_read(Post), author=author)
    return make_page(posts, size)


def _profile_posts(author_id: int, upper: int, visible: Q) -> QuerySet[Post, Any]:
    posts = Post.objects.filter(visible, parent__isnull=True, author_id=author_id, id__lt=upper)
    return posts.order_by("-id").values_list(*POST_COLUMNS)[: settings.PAGE_SIZE + 1]


def _profile_for_visitors(author_id: int, upper: int) -> QuerySet[Post, Any]:
    return _profile_posts(author_id, upper, on_pages_for(None))


def _profile_for_users(author_id: int, upper: int, viewer_id: int) -> QuerySet[Post, Any]:
    return _profile_posts(author_id, upper, on_pages_for(viewer_id))


def _profile_for_staff(author_id: int, upper: int, viewer_id: int) -> QuerySet[Post, Any]:
    return _profile_posts(author_id, upper, on_pages_for(viewer_id, staff=True))


# --- Newer than an id (the client API's since_id and min_id) --------------------------------


def everyone_query(viewer: Viewer) -> QuerySet[Post]:
    """The All page's posts, unpaginated."""
    return Post.objects.select_related("author").filter(visibility.everyone(viewer))


def profile_query(author: User, viewer: Viewer) -> QuerySet[Post]:
    """A profile's posts, unpaginated (the same rule as `profile`)."""
    return top_level_posts().filter(visibility.on_pages(viewer), author_id=author.id)


def newer_than(
    posts: QuerySet[Post], after: int, *, before: int | None, limit: int, closest_first: bool
) -> list[Post]:
    """Up to `limit` of `posts` with ids in (after, before), newest first: the newest such
    (`closest_first=False`, Mastodon's since_id) or those just above `after` (min_id, which
    pages forward through a timeline without gaps)."""
    posts = posts.filter(id__gt=after)
    if before is not None:
        posts = posts.filter(id__lt=before)
    if closest_first:
        return list(reversed(posts.order_by("id")[:limit]))
    return list(posts.order_by("-id")[:limit])
