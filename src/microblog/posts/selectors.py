"""Reads of posts: the thread page."""

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection, router
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Window, signals
from django.db.models.base import ModelState
from django.db.models.functions import Coalesce, RowNumber

from microblog.accounts.models import User
from microblog.core import sqlcache
from microblog.core.ids import is_id
from microblog.core.pagination import Page, make_page
from microblog.moderation.models import Block
from microblog.posts.models import Post
from microblog.timelines.visibility import (
    Viewer,
    by_viewer_kind,
    can_see,
    on_pages,
    on_pages_for,
)

WITHHELD_HIDDEN = "This post was hidden by the moderators."
WITHHELD_BLOCKED = "This post is by an account you blocked."

MAX_ANCESTORS = 500


@dataclass(slots=True)
class ReplyNode:
    post: Post
    depth: int
    children: list["ReplyNode"] = field(default_factory=list)

    @property
    def hidden_replies(self) -> int:
        """Replies not shown under this node (they are on the post's own page)."""
        return max(0, self.post.reply_count - len(self.children))


@dataclass(slots=True)
class Thread:
    post: Post
    ancestors: list[Post]
    # True when the chain of parents stops at a deleted post before reaching a root.
    ancestors_cut_by_deletion: bool
    replies: Page[ReplyNode]
    # Ancestors shown as a notice instead of their content, by id: hidden by the moderators, or
    # by an account the viewer blocks.
    withheld: dict[int, str] = field(default_factory=dict)

    def reply_posts(self) -> list[Post]:
        """Every reply this page shows, at every depth (their cards are looked up together)."""
        found: list[Post] = []
        stack = list(reversed(self.replies.items))
        while stack:
            node = stack.pop()
            found.append(node.post)
            stack.extend(reversed(node.children))
        return found


# What a post card reads of its author (posts.cards.card_view): the author's other columns (the
# password hash, counters, dates) are left unread, so building a page's authors costs less.
CARD_AUTHOR_COLUMNS = ("author__username",)


def with_card_authors(posts: QuerySet[Post]) -> QuerySet[Post]:
    """Posts with their authors, loading only the author columns a card shows."""
    return posts.select_related("author").defer(
        *(
            f"author__{field.name}"
            for field in User._meta.concrete_fields
            if f"author__{field.name}" not in CARD_AUTHOR_COLUMNS and not field.primary_key
        )
    )


def _with_blocks(posts: QuerySet[Post], viewer: Viewer) -> QuerySet[Post]:
    """Annotates `author_blocked` (the viewer blocks the author) and `author_blocks_viewer`."""
    if not viewer.is_authenticated:
        return posts
    return _annotate_blocks(posts, viewer.id)


def _annotate_blocks(posts: QuerySet[Post], viewer_id: int) -> QuerySet[Post]:
    blocks = Block.objects.all()
    return posts.annotate(
        author_blocked=Exists(
            blocks.filter(blocker_id=viewer_id, blocked_id=OuterRef("author_id"))
        ),
        author_blocks_viewer=Exists(
            blocks.filter(blocker_id=OuterRef("author_id"), blocked_id=viewer_id)
        ),
    )


def with_reply_counts(posts: QuerySet[Post], visible: Q) -> QuerySet[Post]:
    """Annotates `visible_replies` (read through Post.reply_count): the post's replies that
    `visible`, the reader's on_pages() filter, lets them open. A subquery on the (parent_id, id)
    index, so the page costs no extra query."""
    replies = (
        Post.objects.filter(visible, parent_id=OuterRef("id"))
        .order_by()
        .values("parent_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return posts.annotate(visible_replies=Coalesce(Subquery(replies), 0))


def post_for_display(post_id: int, viewer: Viewer | None = None) -> Post | None:
    """One post with its author and parent, and the replies `viewer` can open; with a signed-in
    viewer, also whether a block stands between them (`author_blocked`, `author_blocks_viewer`).
    Compiled once per process and kind of viewer (core.sqlcache): every thread page starts here."""
    if not is_id(post_id):
        return None  # no such post (and a compiled query would pass the value to the database)
    if viewer is None:
        viewer = AnonymousUser()
    build, viewer_args = by_viewer_kind(
        viewer, visitors=_post, users=_post_for_user, staff=_post_for_staff
    )
    found = sqlcache.fetch(build, post_id, *viewer_args)
    return found[0] if found else None


def _one_post(post_id: int) -> QuerySet[Post]:
    return Post.objects.select_related("author", "parent__author").filter(id=post_id)


def _post(post_id: int) -> QuerySet[Post]:
    return with_reply_counts(_one_post(post_id), on_pages_for(None))[:1]


def _post_for_user(post_id: int, viewer_id: int) -> QuerySet[Post]:
    posts = with_reply_counts(_one_post(post_id), on_pages_for(viewer_id))
    return _annotate_blocks(posts, viewer_id)[:1]


def _post_for_staff(post_id: int, viewer_id: int) -> QuerySet[Post]:
    posts = with_reply_counts(_one_post(post_id), on_pages_for(viewer_id, staff=True))
    return _annotate_blocks(posts, viewer_id)[:1]


def withheld_reason(post: Post, viewer: Viewer) -> str | None:
    """Why `viewer` is shown a notice instead of this post, if they are."""
    if not can_see(viewer, post):
        return WITHHELD_HIDDEN
    if getattr(post, "author_blocked", False):
        return WITHHELD_BLOCKED
    return None


def ancestors(post: Post, viewer: Viewer | None = None) -> tuple[list[Post], bool]:
    """The post's parents up to the root, root first; one recursive query plus one to load them."""
    if post.parent_id is None:
        return [], False
    table = Post._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE chain(id, parent_id, depth) AS (
                SELECT id, parent_id, 1 FROM {table} WHERE id = %s
                UNION ALL
                SELECT p.id, p.parent_id, chain.depth + 1
                FROM {table} p JOIN chain ON p.id = chain.parent_id
                WHERE chain.depth < %s
            )
            SELECT id, parent_id FROM chain ORDER BY depth DESC
            """,
            [post.parent_id, MAX_ANCESTORS],
        )
        chain = cursor.fetchall()
    if not chain:
        return [], True
    loaded = Post.objects.select_related("author")
    if viewer is not None:
        loaded = with_reply_counts(_with_blocks(loaded, viewer), on_pages(viewer))
    by_id = loaded.in_bulk([row[0] for row in chain])
    top_parent_id = chain[0][1]
    return [by_id[row[0]] for row in chain if row[0] in by_id], top_parent_id is not None


# Lists read as rows (values_list) and made into posts by `posts_from_rows`: every column of
# the post first, in this order.
POST_COLUMNS = tuple(field.attname for field in Post._meta.concrete_fields)
_AUTHOR_ID = POST_COLUMNS.index("author_id")
_post_author = Post.author.field

# A thread's first-level reply: the post, the replies the reader can open (with_reply_counts)
# and the author's username (the card's only author column).
_REPLY_COLUMNS = (*POST_COLUMNS, "visible_replies", "author__username")


def _replies(post_id: int, after: int, visible: Q) -> QuerySet[Post, Any]:
    replies = with_reply_counts(Post.objects.filter(visible, parent_id=post_id), visible)
    replies = replies.filter(id__gt=after).order_by("id").values_list(*_REPLY_COLUMNS)
    return replies[: settings.PAGE_SIZE + 1]


def _replies_for_visitors(post_id: int, after: int) -> QuerySet[Post, Any]:
    return _replies(post_id, after, on_pages_for(None))


def _replies_for_users(post_id: int, after: int, viewer_id: int) -> QuerySet[Post, Any]:
    return _replies(post_id, after, on_pages_for(viewer_id))


def _replies_for_staff(post_id: int, after: int, viewer_id: int) -> QuerySet[Post, Any]:
    return _replies(post_id, after, on_pages_for(viewer_id, staff=True))


def posts_from_rows(
    rows: list[Any],
    db: str,
    *,
    annotations: tuple[str, ...] = (),
    author: User | None = None,
    author_names: bool = False,
) -> list[Post]:
    """The posts of rows that hold POST_COLUMNS, then `annotations` (set as attributes), then
    with `author_names` the author's username, as the ORM would load them from database `db`:
    with `author_names`, each post's author (None: a deleted account) with only `id` and
    `username` loaded, the rest deferred (as `with_card_authors`); with `author` (a profile: every
    post is theirs), that user.

    Built as Django builds an unpickled instance (`__new__` and the attributes), not through
    `Model.__init__` and the ORM's iterables: a thread page's 20 replies and their 20 authors
    were a fifth of its CPU (docs/benchmarks.md, "Issue 15: the thread and the profile"). Model
    signals sent on initialisation would be skipped, so with any receiver of them each object
    goes through `from_db`. tests/posts/test_reply_rows.py compares the objects with the ORM's."""
    keys = (*POST_COLUMNS, *annotations)
    cache_name = _post_author.cache_name
    # Neither given: the author is not known here (left to load, as the ORM leaves it), not None,
    # which would show every such post as by a deleted account.
    known_author = author_names or author is not None
    posts = []
    if _init_signals_heard():
        for row in rows:
            post = Post.from_db(db, POST_COLUMNS, row[: len(POST_COLUMNS)])
            for name, value in zip(annotations, row[len(POST_COLUMNS) :], strict=False):
                setattr(post, name, value)
            if author_names:
                author_id = row[_AUTHOR_ID]
                author = (
                    None
                    if author_id is None
                    else User.from_db(db, ("id", "username"), (author_id, row[-1]))
                )
            if known_author:
                _post_author.set_cached_value(post, author)
            posts.append(post)
        return posts
    new_post, new_user = Post.__new__, User.__new__
    for row in rows:
        post = new_post(Post)
        post.__dict__.update(zip(keys, row, strict=False))
        post._state = _loaded(db)
        if author_names:
            author_id = row[_AUTHOR_ID]
            author = None
            if author_id is not None:
                author = new_user(User)
                author.__dict__.update(id=author_id, username=row[-1])
                author._state = _loaded(db)
        if known_author:
            post._state.fields_cache[cache_name] = author
        posts.append(post)
    return posts


def _loaded(db: str) -> ModelState:
    state = ModelState()
    state.adding = False
    state.db = db
    return state


def _init_signals_heard() -> bool:
    return any(
        signal.has_listeners(model)
        for signal in (signals.pre_init, signals.post_init)
        for model in (Post, User)
    )


def replies_since(post_id: int, viewer: Viewer, since: int, limit: int) -> list[Post]:
    """The newest `limit` direct replies to the post newer than `since`, newest first, that the
    thread page shows `viewer` (its first level; the live stream's catch-up reads this)."""
    replies = Post.objects.select_related("author").filter(on_pages(viewer), parent_id=post_id)
    return list(replies.filter(id__gt=since).order_by("-id")[:limit])


def thread(post: Post, viewer: Viewer, cursor: int | None = None) -> Thread:
    """A post with its ancestors and its replies, oldest first, nested to THREAD_MAX_DEPTH.

    The first level is cursor-paginated; each deeper level shows the first few replies of each
    node, loaded for the whole level in one query (a window function), so the page costs a fixed
    number of queries whatever the shape of the thread. Replies the viewer may not see (hidden,
    or by an account they block) are left out at every level, and from every count of replies;
    a deleted post that has replies stands as a placeholder with its replies under it.
    """
    parents, cut = ancestors(post, viewer)
    size = settings.PAGE_SIZE
    # The first level through core.sqlcache: one compiled shape per kind of viewer.
    after = cursor if cursor is not None else 0
    build, viewer_args = by_viewer_kind(
        viewer, visitors=_replies_for_visitors, users=_replies_for_users, staff=_replies_for_staff
    )
    args = (post.id, after, *viewer_args)
    first_level = make_page(
        posts_from_rows(
            sqlcache.fetch(build, *args),
            router.db_for_read(Post),
            annotations=("visible_replies",),
            author_names=True,
        ),
        size,
    )
    nodes = [ReplyNode(post=p, depth=1) for p in first_level.items]

    level = nodes
    visible = None
    for depth in range(2, settings.THREAD_MAX_DEPTH + 1):
        parent_ids = [n.post.id for n in level if n.post.reply_count > 0]
        if not parent_ids:
            break
        if visible is None:
            # Built only for a thread with deeper levels: building this QuerySet (the reader's
            # rule twice, once in the reply-count subquery) was a fifth of the CPU of a thread
            # page whose replies have no replies (docs/benchmarks.md, "Issue 15").
            rule = on_pages(viewer)
            visible = with_reply_counts(Post.objects.select_related("author").filter(rule), rule)
        children = (
            visible.filter(parent_id__in=parent_ids)
            .annotate(
                position=Window(RowNumber(), partition_by=F("parent_id"), order_by=F("id").asc())
            )
            .filter(position__lte=settings.THREAD_CHILDREN_SHOWN)
            .order_by("id")
        )
        by_parent = {n.post.id: n for n in level}
        next_level = []
        for child in children:
            node = ReplyNode(post=child, depth=depth)
            by_parent[child.parent_id].children.append(node)  # type: ignore[index]
            next_level.append(node)
        level = next_level

    return Thread(
        post=post,
        ancestors=parents,
        ancestors_cut_by_deletion=cut,
        replies=Page(items=nodes, next_cursor=first_level.next_cursor),
        withheld={
            parent.id: reason
            for parent in parents
            if (reason := withheld_reason(parent, viewer)) is not None
        },
    )
