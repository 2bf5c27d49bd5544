"""Reads of posts: the thread page."""

from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from microblog.core.pagination import Page, make_page
from microblog.posts.models import Post

MAX_ANCESTORS = 500


@dataclass(slots=True)
class ReplyNode:
    post: Post
    depth: int
    children: list["ReplyNode"] = field(default_factory=list)

    @property
    def hidden_replies(self) -> int:
        """Replies not shown under this node (they are on the post's own page)."""
        return max(0, self.post.replies_count - len(self.children))


@dataclass(slots=True)
class Thread:
    post: Post
    ancestors: list[Post]
    # True when the chain of parents stops at a deleted post before reaching a root.
    ancestors_cut_by_deletion: bool
    replies: Page[ReplyNode]


def post_for_display(post_id: int) -> Post | None:
    return Post.objects.select_related("author", "parent__author").filter(id=post_id).first()


def ancestors(post: Post) -> tuple[list[Post], bool]:
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
    by_id = Post.objects.select_related("author").in_bulk([row[0] for row in chain])
    top_parent_id = chain[0][1]
    return [by_id[row[0]] for row in chain if row[0] in by_id], top_parent_id is not None


def thread(post: Post, cursor: int | None = None) -> Thread:
    """A post with its ancestors and its replies, oldest first, nested to THREAD_MAX_DEPTH.

    The first level is cursor-paginated; each deeper level shows the first few replies of each
    node, loaded for the whole level in one query (a window function), so the page costs a fixed
    number of queries whatever the shape of the thread.
    """
    parents, cut = ancestors(post)
    size = settings.PAGE_SIZE
    top = Post.objects.select_related("author").filter(parent_id=post.id)
    if cursor is not None:
        top = top.filter(id__gt=cursor)
    first_level = make_page(list(top.order_by("id")[: size + 1]), size)
    nodes = [ReplyNode(post=p, depth=1) for p in first_level.items]

    level = nodes
    for depth in range(2, settings.THREAD_MAX_DEPTH + 1):
        parent_ids = [n.post.id for n in level if n.post.replies_count > 0]
        if not parent_ids:
            break
        children = (
            Post.objects.select_related("author")
            .filter(parent_id__in=parent_ids)
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
    )
