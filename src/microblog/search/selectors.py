"""Search reads: posts by words (PostgreSQL full-text search on a GIN index; SQLite FTS5),
accounts by username prefix, tags by name prefix. Who may be listed: timelines.visibility."""

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

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
POSTS = Post._meta.db_table
FTS_TABLE = "search_post_fts"  # search/migrations/0001_initial.py (SQLite)


def _matching(words: tuple[str, ...]) -> RawSQL:
    """A condition on posts: their text holds every word. The words are bound parameters and
    reach the engines as plain terms only (search.query), never as query syntax."""
    if connection.vendor == "postgresql":
        # The expression of the GIN index search_posts_fts_idx, exactly.
        return RawSQL(  # noqa: S611 (table name from the model, the words bound)
            f"to_tsvector('simple'::regconfig, {POSTS}.content) "
            "@@ plainto_tsquery('simple'::regconfig, %s)",
            [" ".join(words)],
            output_field=BooleanField(),
        )
    # FTS5: each word a quoted string (words hold no quotes), all required.
    match = " ".join(f'"{word}"' for word in words)
    return RawSQL(  # noqa: S611 (table names from the model and migration, the match bound)
        f"{POSTS}.id IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s)",
        [match],
        output_field=BooleanField(),
    )


def posts(query: SearchQuery, viewer: Viewer, cursor: int | None = None) -> Page[Post]:
    """Posts and replies holding every word of the query that `viewer` may see in lists,
    newest first."""
    found: QuerySet[Post] = posts_for_display().filter(
        _matching(query.words), visibility.in_lists(viewer)
    )
    if cursor is not None:
        found = found.filter(id__lt=cursor)
    size = settings.PAGE_SIZE
    return make_page(list(found.order_by("-id")[: size + 1]), size)


def accounts(query: SearchQuery, viewer: Viewer) -> list[User]:
    """Accounts whose username starts with the query (any case), in name order."""
    if query.username_prefix is None:
        return []
    return list(
        User.objects.filter(
            visibility.accounts_listed_for(viewer), username__istartswith=query.username_prefix
        ).order_by("username")[:ACCOUNTS_SHOWN]
    )


def hashtags(query: SearchQuery) -> list[Tag]:
    if query.tag_prefix is None:
        return []
    return tags.tags_by_prefix(query.tag_prefix, TAGS_SHOWN)
