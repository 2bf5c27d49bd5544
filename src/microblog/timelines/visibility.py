"""Who may see which post in which list: every visibility rule of the app, and only here.

Lists and their rules (docs/architecture.md, "Moderation"):

- For You: top-level posts of the reader, and the visible ones of the accounts the reader hears;
  and top-level posts reposted by the reader or by an account they hear, visible (or their own),
  not by an author the reader blocks or mutes (a post reposted by several appears once).
- Following: posts and replies, visible ones, of the accounts the reader hears.
- All: top-level posts, visible (or the reader's own), not by an account the reader blocks or
  mutes, not the placeholders of deleted posts.
- Profiles and thread replies: visible posts (staff: all; the reader: their own too), not by an
  account the reader blocks; a deleted post with replies stands in its thread as a placeholder.
- A post's own page: visible posts; hidden ones to their author and staff only. A reply's parent:
  a post whose page the replier may open, not a placeholder.
- The stream: what the page it is open on shows (For You, Following, a thread's direct replies);
  the client API's streams: For You (`user`) and All (`public`).
- Tag pages and search: posts and replies, visible (or the reader's own), not by an account the
  reader blocks or mutes, not the placeholders of deleted posts; search's accounts: active ones
  the reader does not block. Trending counts visible posts that are not placeholders.
- The stream: what the page it is open on shows (For You, Following, a thread's direct replies);
  For You's live filter judges new posts, so a post there only through a repost is not announced.
- Likes and reposts: a post whose page the user may open (`can_see`), not a placeholder;
  liking a post of an author who blocks you is refused with its own message, as replying is.

"Visible" is `not is_hidden` (moderation); "heard" is followed, less muted and blocked. Visitors
see visible posts on profiles, threads and All. Staff read feeds like everyone else.

Where a rule must be written in more than one language, the versions stand side by side below:
the ORM condition (`Q`) for the pages, a Python predicate for the stream's live filter (which
judges one post at a time from its event, with the reader's sets loaded once), and a SQL fragment
for the hand-written hot statements (For You's stored-feed read, the fan-out, the seeder).
tests/timelines/test_visibility.py checks that the versions agree.

Stored feeds (timelines.fanout) hold membership only (own posts and followed authors' top-level
posts, `stored_in_feeds`); moderation and mutes are filtered when a feed is read, so a hide, a
block or a mute acts on the next page load and undoing one needs no backfill.
"""

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Exists, OuterRef, Q, QuerySet

from microblog.accounts.models import User
from microblog.core import sqlcache
from microblog.follows.models import Follow
from microblog.interactions.models import Repost
from microblog.moderation.models import Block, Mute
from microblog.posts.models import Post

Viewer = User | AnonymousUser

# A function that builds a query of posts from ids (core.sqlcache compiles it once per shape).
PostsQuery = Callable[..., QuerySet[Post]]

POSTS = Post._meta.db_table
BLOCKS = Block._meta.db_table
MUTES = Mute._meta.db_table
REPOSTS = Repost._meta.db_table

# --- The reader's relationships ---------------------------------------------------------------


def blocked_ids(viewer_id: int) -> QuerySet[Block, int]:
    """The accounts the viewer blocks: left out of every list they read."""
    return Block.objects.filter(blocker_id=viewer_id).values_list("blocked_id", flat=True)


def muted_ids(viewer_id: int) -> QuerySet[Mute, int]:
    """The accounts the viewer mutes: left out of their feeds only."""
    return Mute.objects.filter(muter_id=viewer_id).values_list("muted_id", flat=True)


def heard_ids(user: User) -> QuerySet[Follow, int]:
    """The accounts whose posts reach the user's feeds: followed, less muted and blocked."""
    return heard_ids_of(user.id)


def heard_ids_of(user_id: int) -> QuerySet[Follow, int]:
    """heard_ids() from the reader's id alone (compiled builders take ids, core.sqlcache)."""
    return (
        Follow.objects.filter(follower_id=user_id)
        .exclude(followed_id__in=muted_ids(user_id))
        .exclude(followed_id__in=blocked_ids(user_id))
        .values_list("followed_id", flat=True)
    )


# --- Stored feeds: which posts a feed may hold (the fan-out, rebuilds, backfills, the seeder) --


def stored_in_feeds(*, parent_id: int | None, is_deleted: bool) -> bool:
    """A post that stored feeds may hold: top-level, not a deleted post's placeholder."""
    return parent_id is None and not is_deleted


def stored_in_feeds_sql(post: str) -> str:
    """stored_in_feeds() on the posts table aliased `post`."""
    return f"{post}.parent_id IS NULL AND NOT {post}.is_deleted"


# --- For You ----------------------------------------------------------------------------------


def for_you(user: User) -> Q:
    """For You's posts: top-level, the reader's own (hidden or not) and the visible posts of the
    accounts they hear, and the posts reposted by the reader or an account they hear
    (reposted_for_you). Written into the author condition: as separate conditions on the posts,
    the planner misjudged them and read every post (Following: 23 ms instead of 2.3 ms at the
    seed preset; docs/benchmarks.md)."""
    return for_you_of(user.id)


def for_you_of(user_id: int) -> Q:
    """for_you() from the reader's id alone (compiled builders take ids, core.sqlcache)."""
    return Q(parent__isnull=True) & (for_you_authored_of(user_id) | reposted_for_you_of(user_id))


def for_you_authored(user: User) -> Q:
    """The authored part of for_you(): the reader's own posts (hidden or not) and the visible
    posts of the accounts they hear (what the stream's for_you_shows judges)."""
    return for_you_authored_of(user.id)


def for_you_authored_of(user_id: int) -> Q:
    return Q(author_id=user_id) | Q(author_id__in=heard_ids_of(user_id), is_hidden=False)


def reposters_heard(user: User) -> QuerySet[Repost, int]:
    """Posts reposted by the reader or by an account they hear (muted and blocked reposters
    left out)."""
    return reposters_heard_of(user.id)


def reposters_heard_of(user_id: int) -> QuerySet[Repost, int]:
    return Repost.objects.filter(
        Q(user_id=user_id) | Q(user_id__in=heard_ids_of(user_id))
    ).values_list("post_id", flat=True)


def reposted_for_you(user: User) -> Q:
    """The repost part of for_you(): reposted by someone heard (or the reader), visible or the
    reader's own, by an author who still has an account and whom the reader neither blocks nor
    mutes (mutes and blocks apply to the reposter and to the author)."""
    return reposted_for_you_of(user.id)


def reposted_for_you_of(user_id: int) -> Q:
    return (
        Q(id__in=reposters_heard_of(user_id), is_deleted=False, author__isnull=False)
        & (Q(is_hidden=False) | Q(author_id=user_id))
        & ~Q(author_id__in=blocked_ids(user_id))
        & ~Q(author_id__in=muted_ids(user_id))
    )


def for_you_shows(
    reader_id: int, heard: frozenset[int], *, author: int | None, parent: int | None, hidden: bool
) -> bool:
    """for_you() for one post, with heard_ids() loaded as a set (the stream)."""
    return (
        parent is None
        and author is not None
        and (author == reader_id or (author in heard and not hidden))
    )


def stored_entry_shown_sql(entry: str) -> str:
    """for_you() on a stored feed entry aliased `entry` (user_id, post_id, author_id): the feed
    holds own and followed posts, so what is left is moderation and the reader's mutes and blocks.
    The hidden check is a scalar subquery, not NOT EXISTS, so it stays one probe of the small
    partial index of hidden posts per entry read: as an anti join, the planner may read every
    hidden post instead, a cost that grows with their number."""
    return f"""(SELECT h.id FROM {POSTS} h
               WHERE h.id = {entry}.post_id AND h.is_hidden AND h.author_id <> {entry}.user_id)
               IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM {MUTES} m
              WHERE m.muter_id = {entry}.user_id AND m.muted_id = {entry}.author_id)
          AND NOT EXISTS (
              SELECT 1 FROM {BLOCKS} b
              WHERE b.blocker_id = {entry}.user_id AND b.blocked_id = {entry}.author_id)"""


def celebrity_follow_heard_sql(follow: str) -> str:
    """for_you() on a follow aliased `follow` whose posts are merged at read time (a followed
    celebrity): not muted (a block ends the follow)."""
    return f"""NOT EXISTS (
        SELECT 1 FROM {MUTES} m
        WHERE m.muter_id = {follow}.follower_id AND m.muted_id = {follow}.followed_id)"""


def celebrity_post_shown_sql(post: str) -> str:
    """for_you() on a followed celebrity's top-level post aliased `post`: visible."""
    return f"NOT {post}.is_hidden"


def stored_repost_shown_sql(entry: str) -> str:
    """reposted_for_you() on a stored repost entry aliased `entry` (user_id, post_id,
    reposter_id, author_id): the feed holds posts reposted by accounts followed (or the reader),
    so what is left is moderation and the reader's mutes and blocks of the reposter and of the
    author (the same probes as stored_entry_shown_sql)."""
    return f"""(SELECT h.id FROM {POSTS} h
               WHERE h.id = {entry}.post_id AND h.is_hidden AND h.author_id <> {entry}.user_id)
               IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM {MUTES} m
              WHERE m.muter_id = {entry}.user_id
                AND m.muted_id IN ({entry}.author_id, {entry}.reposter_id))
          AND NOT EXISTS (
              SELECT 1 FROM {BLOCKS} b
              WHERE b.blocker_id = {entry}.user_id
                AND b.blocked_id IN ({entry}.author_id, {entry}.reposter_id))"""


def celebrity_repost_shown_sql(post: str, reader: str) -> str:
    """reposted_for_you() on a post aliased `post` reposted by a followed celebrity (merged at
    read time; the celebrity's follow passed celebrity_follow_heard_sql), for the reader whose
    id is the SQL expression `reader`."""
    return f"""{post}.author_id IS NOT NULL AND NOT {post}.is_deleted
          AND (NOT {post}.is_hidden OR {post}.author_id = {reader})
          AND NOT EXISTS (
              SELECT 1 FROM {MUTES} m WHERE m.muter_id = {reader} AND m.muted_id = {post}.author_id)
          AND NOT EXISTS (
              SELECT 1 FROM {BLOCKS} b
              WHERE b.blocker_id = {reader} AND b.blocked_id = {post}.author_id)"""


# --- Following --------------------------------------------------------------------------------


def following(user: User) -> Q:
    """The Following page's posts: posts and replies, visible ones, of the accounts heard."""
    return following_of(user.id)


def following_of(user_id: int) -> Q:
    """following() from the reader's id alone (compiled builders take ids, core.sqlcache)."""
    return Q(author_id__in=heard_ids_of(user_id), is_hidden=False)


def following_shows(heard: frozenset[int], *, author: int | None, hidden: bool) -> bool:
    """following() for one post, with heard_ids() loaded as a set (the stream)."""
    return author is not None and author in heard and not hidden


# --- All --------------------------------------------------------------------------------------


def in_feeds(viewer: Viewer) -> Q:
    """What any feed may show `viewer`: visible posts (and their own), nothing by an account they
    block or mute. Staff read feeds like everyone else; they see hidden posts on pages and in the
    review queue."""
    return in_feeds_of(viewer.id if viewer.is_authenticated else None)


def in_feeds_of(viewer_id: int | None) -> Q:
    """in_feeds() from the viewer's id alone, None for a visitor (core.sqlcache's builders)."""
    if viewer_id is None:
        return Q(is_hidden=False)
    return (
        (Q(is_hidden=False) | Q(author_id=viewer_id))
        & ~Q(author_id__in=blocked_ids(viewer_id))
        & ~Q(author_id__in=muted_ids(viewer_id))
    )


def everyone(viewer: Viewer) -> Q:
    """The All page: top-level posts that in_feeds() lets through, not deleted posts'
    placeholders (which stand only in their threads)."""
    return everyone_of(viewer.id if viewer.is_authenticated else None)


def everyone_of(viewer_id: int | None) -> Q:
    """everyone() from the viewer's id alone, None for a visitor."""
    return Q(parent__isnull=True) & in_feeds_of(viewer_id) & Q(is_deleted=False)


def excluded_from_feeds(viewer_id: int) -> set[int]:
    """The accounts in_feeds() leaves out for a signed-in viewer: blocked and muted ones (the
    set everyone_shows() takes)."""
    return set(blocked_ids(viewer_id)) | set(muted_ids(viewer_id))


def everyone_shows(
    viewer_id: int | None,
    excluded: frozenset[int],
    *,
    author: int | None,
    parent: int | None,
    hidden: bool,
) -> bool:
    """everyone() for one post that is not a placeholder (the client API's public stream), with
    excluded_from_feeds() loaded as a set (empty for a visitor, `viewer_id` None)."""
    visible = not hidden or (viewer_id is not None and author == viewer_id)
    return parent is None and visible and (author is None or author not in excluded)


# --- Tag pages, search, trending --------------------------------------------------------------


def in_lists(viewer: Viewer) -> Q:
    """A tag page's and search's posts: posts and replies that in_feeds() lets through, not
    deleted posts' placeholders (their text and tags are gone from sight)."""
    return in_feeds(viewer) & Q(is_deleted=False)


def trending_post_links() -> Q:
    """The post-tag links (tags.models.PostTag) that count towards trending, which everyone
    sees alike: their post is visible and not a deleted post's placeholder."""
    return Q(post__is_hidden=False, post__is_deleted=False)


def accounts_listed_for(viewer: Viewer) -> Q:
    """Accounts search may list to `viewer`: active ones, not those the viewer blocks."""
    if not viewer.is_authenticated:
        return Q(is_active=True)
    return Q(is_active=True) & ~Q(id__in=blocked_ids(viewer.id))


# --- Profiles, threads, a post's own page -----------------------------------------------------


def on_pages(viewer: Viewer) -> Q:
    """Posts a profile or thread may show `viewer`."""
    if not viewer.is_authenticated:
        return on_pages_for(None)
    return on_pages_for(viewer.id, staff=viewer.is_staff)


def on_pages_for(viewer_id: int | None, *, staff: bool = False) -> Q:
    """on_pages() from the viewer's id (None: a visitor), for queries compiled once: visible
    posts (staff: all; the viewer: their own too), not by an account the viewer blocks."""
    if viewer_id is None:
        return Q(is_hidden=False)
    visible = Q() if staff else Q(is_hidden=False) | Q(author_id=viewer_id)
    return visible & ~Q(author_id__in=blocked_ids(viewer_id))


def on_pages_shows(
    viewer_id: int | None,
    blocked: frozenset[int],
    *,
    staff: bool,
    author: int | None,
    hidden: bool,
) -> bool:
    """on_pages_for() for one post, with blocked_ids() loaded as a set (the stream)."""
    return may_open(viewer_id, staff=staff, author=author, hidden=hidden) and (
        author is None or author not in blocked
    )


def may_open(viewer_id: int | None, *, staff: bool, author: int | None, hidden: bool) -> bool:
    """Whether a viewer (None: a visitor) may open a post's own page: hidden posts are for their
    author and staff only. Posts of blocked accounts open with their content withheld."""
    return not hidden or (viewer_id is not None and (staff or viewer_id == author))


def can_see(viewer: Viewer, post: Post) -> bool:
    """may_open() for a viewer and a loaded post (the views, the stream's thread admission)."""
    if not viewer.is_authenticated:
        return may_open(None, staff=False, author=post.author_id, hidden=post.is_hidden)
    return may_open(viewer.id, staff=viewer.is_staff, author=post.author_id, hidden=post.is_hidden)


def replyable_by(author: User) -> Q:
    """Posts `author` may reply to: those whose page they may open (may_open), not deleted
    posts' placeholders. (A reply to the author of a post who blocks them is refused with its
    own message: moderation.selectors.blocks_replies.)"""
    return replyable_by_id(author.id, staff=author.is_staff)


def replyable_by_id(author_id: Any, *, staff: bool) -> Q:
    """replyable_by() for an author given by id (or an OuterRef) and whether they are staff, for
    queries compiled once per kind of author (core.sqlcache)."""
    visible = Q() if staff else Q(is_hidden=False) | Q(author_id=author_id)
    return visible & Q(is_deleted=False)


def by_viewer_kind(
    viewer: Viewer, *, visitors: PostsQuery, users: PostsQuery, staff: PostsQuery
) -> tuple[PostsQuery, tuple[int, ...]]:
    """For queries compiled once per shape (core.sqlcache): the builder for this kind of viewer
    (their on_pages() filter has one shape per kind) and the viewer's arguments to it."""
    if not viewer.is_authenticated:
        return visitors, ()
    return (staff if viewer.is_staff else users), (viewer.id,)


# --- Notifications ----------------------------------------------------------------------------


def silences(recipient: Any, actor: Any) -> Q:
    """Whether `recipient` is not to be notified of `actor`'s acts: a block either way (so a
    mention of an account that blocked the author notifies nobody), or a mute by the recipient.
    Ids or OuterRef()s, so it joins any query as EXISTS probes of the primary keys."""
    return (
        Q(Exists(Block.objects.filter(blocker_id=recipient, blocked_id=actor)))
        | Q(Exists(Block.objects.filter(blocker_id=actor, blocked_id=recipient)))
        | Q(Exists(Mute.objects.filter(muter_id=recipient, muted_id=actor)))
    )


def notifies(*, recipient_id: int, actor_ids: "list[int]") -> set[int]:
    """Of `actor_ids`, those whose acts may notify `recipient_id`: not the recipient, not
    silenced (silences()). One query."""
    candidates = {actor for actor in actor_ids if actor != recipient_id}
    if not candidates:
        return set()
    return set(
        User.objects.filter(id__in=candidates)
        .exclude(silences(recipient_id, OuterRef("id")))
        .values_list("id", flat=True)
    )


def notified_by(*, actor_id: int, recipient_ids: "list[int]") -> set[int]:
    """Of `recipient_ids`, those an act of `actor_id` may notify (a post's reply and mentions:
    one actor, several recipients). One query."""
    candidates = sorted({recipient for recipient in recipient_ids if recipient != actor_id})
    if not candidates:
        return set()
    # Compiled once per number of recipients (at most a reply's author and MENTIONS_MAX
    # mentions): building it, three EXISTS probes, was a third of a reply's CPU (issue 15).
    return set(sqlcache.fetch(_notified_rows, actor_id, *candidates, using=DEFAULT_DB_ALIAS))


def _notified_rows(actor_id: int, *recipient_ids: int) -> "QuerySet[User, int]":
    return (
        User.objects.filter(id__in=recipient_ids)
        .exclude(silences(OuterRef("id"), actor_id))
        .values_list("id", flat=True)
    )


def notifications_for(recipient_id: int) -> Q:
    """The notifications a user's page shows (on the notification model): nothing from an
    account they block or mute (since it was written), nothing about a hidden post unless it is
    their own (as in feeds: staff too), nothing about a deleted post's placeholder."""
    return (
        ~Q(actor_id__in=blocked_ids(recipient_id))
        & ~Q(actor_id__in=muted_ids(recipient_id))
        & (
            Q(post__isnull=True)
            | (Q(post__is_hidden=False) | Q(post__author_id=recipient_id))
            & Q(post__is_deleted=False)
        )
    )


def notification_shown_sql(notification: str) -> str:
    """notifications_for() on a notification row aliased `notification` (the unread count)."""
    n = notification
    return f"""NOT EXISTS (
              SELECT 1 FROM {BLOCKS} b
              WHERE b.blocker_id = {n}.recipient_id AND b.blocked_id = {n}.actor_id)
          AND NOT EXISTS (
              SELECT 1 FROM {MUTES} m
              WHERE m.muter_id = {n}.recipient_id AND m.muted_id = {n}.actor_id)
          AND NOT EXISTS (
              SELECT 1 FROM {POSTS} p
              WHERE p.id = {n}.post_id AND (p.is_deleted
                  OR (p.is_hidden AND (p.author_id IS NULL OR p.author_id <> {n}.recipient_id))))"""
