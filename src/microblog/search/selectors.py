"""Search reads: posts by words (PostgreSQL full-text search on a GIN index; SQLite FTS5),
accounts by username prefix, tags by name prefix. Who may be listed: timelines.visibility."""

from typing import Any

from django.conf import settings
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, F, Func, QuerySet
from django.db.models.functions import Collate, Upper
from django.db.models.sql.compiler import SQLCompiler

from microblog.accounts.models import User
from microblog.core.pagination import Page, make_page
from microblog.posts.models import Post
from microblog.search.query import SearchQuery
from microblog.tags import selectors as tags
from microblog.tags.models import Tag
from microblog.timelines import visibility
from microblog.timelines.selectors import posts_for_display
from microblog.timelines.visibility import Viewer

ACCOUNTS_SHOWN = 5
TAGS_SHOWN = 5
FTS_TABLE = "search_post_fts"  # search/migrations/0001_initial.py (SQLite)


class PostMatches(Func):
    """A condition on posts: their text holds every one of `words`. The words are one bound
    parameter and reach the engines as plain terms only (search.query), never as query syntax.
    Compiled from the posts' own columns, so it holds in a subquery under any alias."""

    output_field = BooleanField()

    def __init__(self, words: tuple[str, ...]) -> None:
        super().__init__(F("id"), F("content"))
        self.words = words

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[str | int, ...]]:
        post_id, content = (compiler.compile(e) for e in self.get_source_expressions())
        if connection.vendor == "postgresql":
            # The expression of the GIN index search_posts_fts_idx, exactly.
            sql = f"search_post_document({content[0]}) @@ plainto_tsquery('simple'::regconfig, %s)"
            return sql, (*content[1], " ".join(self.words))
        # FTS5: each word a quoted string (words hold no quotes), all required.
        match = " ".join(f'"{word}"' for word in self.words)
        sql = f"{post_id[0]} IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s)"
        return sql, (*post_id[1], match)


def posts(
    query: SearchQuery,
    viewer: Viewer,
    cursor: int | None = None,
    *,
    size: int | None = None,
    offset: int = 0,
) -> Page[Post]:
    """Posts and replies holding every word of the query that `viewer` may see in lists,
    newest first: `size` (default PAGE_SIZE) below `cursor`, skipping the first `offset` (the
    client API pages search by offset, as Mastodon does)."""
    found: QuerySet[Post] = Post.objects.filter(
        PostMatches(query.words), visibility.in_lists(viewer)
    )
    if cursor is not None:
        found = found.filter(id__lt=cursor)
    size = size or settings.PAGE_SIZE
    # The page's ids in a subquery, then the cards' joins for those rows only (not for every
    # match before the sort; as tags.selectors.tag_posts).
    ids = found.order_by("-id").values("id")[offset : offset + size + 1]
    return make_page(list(posts_for_display().filter(id__in=ids).order_by("-id")), size)


def accounts(
    query: SearchQuery, viewer: Viewer, *, limit: int = ACCOUNTS_SHOWN, offset: int = 0
) -> list[User]:
    """Accounts whose username starts with the query (any case), in name order (ignoring
    case): `limit` of them after the first `offset`."""
    if query.username_prefix is None:
        return []
    # Upper-cased under a bytewise collation: the `LIKE 'AB%'` range and the order are then both
    # an index range scan of search_users_username_prefix_idx on PostgreSQL (usernames are
    # ASCII, so upper-casing is exact and bytewise order is alphabetical).
    key = Collate(Upper("username"), "C" if connection.vendor == "postgresql" else "BINARY")
    return list(
        User.objects.alias(search_key=key)
        .filter(
            visibility.accounts_listed_for(viewer),
            search_key__startswith=query.username_prefix.upper(),
        )
        .order_by("search_key")[offset : offset + limit]
    )


def hashtags(query: SearchQuery, *, limit: int = TAGS_SHOWN, offset: int = 0) -> list[Tag]:
    if query.tag_prefix is None:
        return []
    return tags.tags_by_prefix(query.tag_prefix, limit, offset=offset)
