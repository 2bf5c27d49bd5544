"""Reads of likes and reposts: the per-reader state of a page's post cards, a post's "Liked by"
list, one's own Likes tab, and For You's "reposted by" labels. Who may see which post or
account is asked of timelines.visibility."""

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import QuerySet, Value
from django.db.models.fields import BigIntegerField, CharField, IntegerField

from microblog.accounts.models import User
from microblog.core import sqlcache
from microblog.core.idlist import id_list
from microblog.core.pagination import Page, make_page
from microblog.interactions.models import Like, Repost
from microblog.posts.models import Post
from microblog.timelines import visibility
from microblog.timelines.visibility import Viewer

LIKED, REPOSTED, REPOSTED_BY_HEARD = 0, 1, 2


@dataclass(frozen=True, slots=True)
class InteractionState:
    """What one reader did to the posts of one page: which they like, which they reposted,
    and (For You) who of those they hear reposted each (username, or "" for the reader)."""

    liked: frozenset[int] = frozenset()
    reposted: frozenset[int] = frozenset()
    reposted_by: dict[int, str] = field(default_factory=dict)
    # With `reposters`: the repost that `reposted_by` names, post id -> (repost id, reposter id)
    # (the client API shows it as a Mastodon reblog: its own id, by its reposter).
    reposts: dict[int, tuple[int, int]] = field(default_factory=dict)


NO_STATE = InteractionState()


def state_for(
    viewer: Viewer, post_ids: Iterable[int], *, reposters: bool = False
) -> InteractionState:
    """The reader's likes and reposts among `post_ids` and, with `reposters` (For You), who of
    the accounts they hear reposted each: one query for the page, whatever its size (a UNION
    ALL of probes of the (user_id, post_id) unique indexes, and of the reposts' post index).
    Every page with cards asks this, so the query is compiled once (core.sqlcache), the ids
    bound as one parameter (core.idlist) whatever their number: building it through the ORM on
    each request cost For You more CPU than the rest of its reads (docs/benchmarks.md, "For
    You with reposts"), and binding each id made psycopg convert it anew on every call."""
    ids = sorted(set(post_ids))
    if not viewer.is_authenticated or not ids:
        return NO_STATE
    with_reposters = reposters and isinstance(viewer, User)
    build = _state_rows_with_reposters if with_reposters else _state_rows
    rows = sqlcache.fetch(build, viewer.id, id_list(ids))
    liked: set[int] = set()
    reposted: set[int] = set()
    reposted_by: dict[int, str] = {}
    reposts: dict[int, tuple[int, int]] = {}
    for post_id, kind, username, repost_id, reposter_id in rows:
        if kind == LIKED:
            liked.add(post_id)
        elif kind == REPOSTED:
            reposted.add(post_id)
            if post_id not in reposted_by:  # "You reposted", unless someone heard did
                reposted_by[post_id] = ""
                reposts[post_id] = (repost_id, reposter_id)
        elif not reposted_by.get(post_id) or repost_id < reposts[post_id][0]:
            # Someone heard: the first of them to repost it, the same on every read.
            reposted_by[post_id] = username
            reposts[post_id] = (repost_id, reposter_id)
    if not with_reposters:
        reposted_by, reposts = {}, {}
    return InteractionState(
        liked=frozenset(liked),
        reposted=frozenset(reposted),
        reposted_by=reposted_by,
        reposts=reposts,
    )


StateRow = tuple[int, int, str, int, int]


def _state_rows(viewer_id: int, post_ids: str) -> QuerySet[Like, StateRow]:
    """(post_id, LIKED or REPOSTED, "", repost id, reposter id) rows: the reader's likes (0, 0
    for the last two) and reposts among the posts (`post_ids`: core.idlist.id_list)."""
    nobody = Value("", output_field=CharField())
    no_id = Value(0, output_field=BigIntegerField())
    likes = Like.objects.filter(user_id=viewer_id, post_id__in_ids=post_ids).values_list(
        "post_id", Value(LIKED, output_field=IntegerField()), nobody, no_id, no_id
    )
    own_reposts = Repost.objects.filter(user_id=viewer_id, post_id__in_ids=post_ids).values_list(
        "post_id", Value(REPOSTED, output_field=IntegerField()), nobody, "id", "user_id"
    )
    return likes.union(own_reposts, all=True)


def _state_rows_with_reposters(viewer_id: int, post_ids: str) -> QuerySet[Like, StateRow]:
    """_state_rows and, for For You, (post_id, REPOSTED_BY_HEARD, username, repost id,
    reposter id) rows: who of the accounts the reader hears reposted each post."""
    heard = Repost.objects.filter(
        post_id__in_ids=post_ids, user_id__in=visibility.heard_ids_of(viewer_id)
    ).values_list(
        "post_id",
        Value(REPOSTED_BY_HEARD, output_field=IntegerField()),
        "user__username",
        "id",
        "user_id",
    )
    return _state_rows(viewer_id, post_ids).union(heard, all=True)


def liked_by(post: Post, viewer: Viewer, cursor: int | None = None) -> Page[Like]:
    """Who liked a post, newest like first, paged on the like's id; leaves out accounts the
    viewer blocks (as every list does)."""
    likes = Like.objects.filter(post_id=post.id).select_related("user")
    if viewer.is_authenticated:
        likes = likes.exclude(user_id__in=visibility.blocked_ids(viewer.id))
    return _newest_first(likes, cursor)


def reposted_by(post: Post, viewer: Viewer, cursor: int | None = None) -> Page[Repost]:
    """Who reposted a post, newest repost first, paged on the repost's id; leaves out accounts
    the viewer blocks (as liked_by)."""
    reposts = Repost.objects.filter(post_id=post.id).select_related("user")
    if viewer.is_authenticated:
        reposts = reposts.exclude(user_id__in=visibility.blocked_ids(viewer.id))
    return _newest_first(reposts, cursor)


def likes_of(user: User, cursor: int | None = None) -> Page[Like]:
    """One's own Likes tab: the posts `user` liked, newest like first, as their profile would
    show them (visibility.on_pages_for: hidden posts only their own, nothing by an account they
    block)."""
    shown = Post.objects.filter(
        visibility.on_pages_for(user.id, staff=user.is_staff), is_deleted=False
    ).values("id")
    likes = Like.objects.filter(user_id=user.id, post_id__in=shown).select_related(
        "post__author", "post__parent__author"
    )
    return _newest_first(likes, cursor)


def _newest_first[T: (Like, Repost)](likes: QuerySet[T], cursor: int | None) -> Page[T]:
    if cursor is not None:
        likes = likes.filter(id__lt=cursor)
    size = settings.PAGE_SIZE
    return make_page(list(likes.order_by("-id")[: size + 1]), size)
