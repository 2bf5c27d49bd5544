"""Hybrid fan-out: the writes that keep every For You feed equal to the pull query.

The invariant, per reader R with horizon H (R.feed_horizon): for every top-level post P with
id >= H whose author is R, or an ordinary (non-celebrity) author R follows, the feed holds (R, P);
it holds nothing else except posts of followed celebrities. Posts of followed celebrities are
merged in at read time (timelines.selectors.for_you), and below H reads use the pull query.
Reposts alike, in their own table (RepostEntry): for every repost of a top-level post P with
id >= H by R or by an ordinary account X that R follows, the feed holds (R, P, X); reposts of
followed celebrities are merged at read time. A repost places the post at its own id (the
time it was written), like every feed entry: ids stay the cursor and the sort key.
Readers not seen for FANOUT_INACTIVE_DAYS are skipped and read the pull query until they return,
when their feed is rebuilt by a job (`rebuild`; meanwhile their horizon stands above every id).

Every statement here is set-based SQL and idempotent (ON CONFLICT DO NOTHING on the primary key),
so a job that crashes half-way can simply run again; a post's fan-out also records its progress
(FanOut) in each chunk's transaction, so running it again starts after the last committed chunk.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from microblog.accounts.models import User
from microblog.follows.models import Follow
from microblog.interactions.models import Repost
from microblog.posts.models import Post
from microblog.timelines import visibility
from microblog.timelines.models import FanOut, FeedEntry, RepostEntry

FEED = FeedEntry._meta.db_table
REPOST_FEED = RepostEntry._meta.db_table
REPOSTS = Repost._meta.db_table
POSTS = Post._meta.db_table
FOLLOWS = Follow._meta.db_table
USERS = User._meta.db_table


def active_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.FANOUT_INACTIVE_DAYS)


def is_active(user: User, now: datetime | None = None) -> bool:
    return user.last_seen_at is not None and user.last_seen_at >= active_cutoff(now)


def _lock_follows_clause(posts: str | None = None) -> str:
    # On PostgreSQL the chunk's follow rows are share-locked until the chunk commits, so an
    # unfollow that commits meanwhile waits, then removes what this chunk inserted. SQLite runs
    # one writer at a time, so it needs no lock.
    if connection.vendor != "postgresql":
        return ""
    return "FOR SHARE OF f" + (f" {_lock_posts_clause(posts)}" if posts else "")


def _lock_posts_clause(posts: str | None = None) -> str:
    # The posts copied into feeds are key-share locked as they are read: a post deleted by a
    # transaction that committed since this statement began is skipped (not copied, which would
    # leave an entry for a post that no longer exists), and a delete that starts later waits,
    # then removes the copies (posts.services.post_delete).
    if connection.vendor != "postgresql":
        return ""
    return f"FOR KEY SHARE OF {posts}" if posts else "FOR KEY SHARE"


def add_own_post(post: Post) -> None:
    """The author's own post enters their feed in the same transaction as the post."""
    author_id = post.author_id
    assert author_id is not None
    FeedEntry.objects.bulk_create(
        [FeedEntry(user_id=author_id, post_id=post.id, author_id=author_id)],
        ignore_conflicts=True,
    )


def record_fan_out(post: Post) -> None:
    """In the post's transaction: its fan-out is pending until its last chunk commits."""
    FanOut.objects.create(post_id=post.id)


def fan_out_post(post_id: int, checkpoint: Callable[[], None] | None = None) -> int:
    """Copies a top-level post into the feeds of its author's active followers, in chunks of
    FANOUT_CHUNK_SIZE followers, each in its own short transaction that also records how far it
    got, so a second run starts where the first stopped. `checkpoint` is called after each chunk
    commits (a stopping worker interrupts the job there). Returns rows inserted."""
    progress = FanOut.objects.filter(post_id=post_id).values_list("done_through", "finished_at")
    # No row: a post from before fan-outs were recorded; its fan-out runs from the start.
    done_through, finished_at = progress.first() or (0, None)
    if finished_at is not None:
        return 0  # a second run after a crash between the last chunk and the job's end
    post = Post.objects.filter(id=post_id).select_related("author").first()
    if (
        post is None
        or not visibility.stored_in_feeds(parent_id=post.parent_id, is_deleted=post.is_deleted)
        or post.author is None
    ):
        _record_progress(post_id, None)
        return 0
    if post.author.is_celebrity:
        _record_progress(post_id, None)
        return 0  # merged at read time instead
    author_id = post.author.id
    cutoff = active_cutoff()
    chunk = settings.FANOUT_CHUNK_SIZE
    inserted = 0
    after = done_through
    while True:
        with connection.cursor() as cursor:
            # The chunk's upper bound, from the (followed_id, follower_id) index alone.
            cursor.execute(
                f"SELECT follower_id FROM {FOLLOWS} WHERE followed_id = %s AND follower_id > %s "
                f"ORDER BY follower_id LIMIT 1 OFFSET %s",
                [author_id, after, chunk - 1],
            )
            row = cursor.fetchone()
        upper = row[0] if row else None
        bound = "AND f.follower_id <= %s" if upper is not None else ""
        params: list[int | datetime] = [post.id, author_id, author_id, after]
        if upper is not None:
            params.append(upper)
        params.append(cutoff)
        with transaction.atomic(), connection.cursor() as cursor:
            # A post deleted meanwhile is gone, or a placeholder kept for its replies
            # (posts.services.post_delete): either way its entries went with it.
            cursor.execute(
                f"SELECT 1 FROM {POSTS} p WHERE p.id = %s "
                f"AND {visibility.stored_in_feeds_sql('p')} {_lock_posts_clause()}",
                [post.id],
            )
            if cursor.fetchone() is None:
                _record_progress(post_id, None)
                return inserted
            cursor.execute(
                f"""
                INSERT INTO {FEED} (user_id, post_id, author_id)
                SELECT f.follower_id, %s, %s
                FROM {FOLLOWS} f JOIN {USERS} u ON u.id = f.follower_id
                WHERE f.followed_id = %s AND f.follower_id > %s {bound}
                  AND u.last_seen_at >= %s
                {_lock_follows_clause()}
                ON CONFLICT DO NOTHING
                """,
                params,
            )
            inserted += max(cursor.rowcount, 0)
            _record_progress(post_id, upper)
        if upper is None:
            return inserted
        after = upper
        if checkpoint is not None:
            checkpoint()


def _record_progress(post_id: int, done_through: int | None) -> None:
    """Every follower up to `done_through` is handled; None: the fan-out is finished."""
    pending = FanOut.objects.filter(post_id=post_id, finished_at__isnull=True)
    if done_through is None:
        pending.update(finished_at=timezone.now())
    else:
        # Never backwards: two runs of one fan-out may overlap (a job presumed abandoned).
        pending.filter(done_through__lt=done_through).update(done_through=done_through)


def pending_fan_outs(limit: int = 1000) -> list[int]:
    """Post ids whose fan-out has not finished, oldest first."""
    return list(
        FanOut.objects.filter(finished_at__isnull=True)
        .order_by("post_id")
        .values_list("post_id", flat=True)[:limit]
    )


def prune_finished(before: datetime) -> int:
    deleted, _ = FanOut.objects.filter(finished_at__lt=before).delete()
    return deleted


def backfill_follow(*, follower: User, followed: User) -> None:
    """After a follow: the followee's recent top-level posts, and their recent reposts, enter
    the follower's feed (at most FEED_MAX_ENTRIES of each; past that the horizon rises so older
    pages read the pull query)."""
    if followed.is_celebrity:
        return
    cap = settings.FEED_MAX_ENTRIES
    horizon = User.objects.filter(id=follower.id).values_list("feed_horizon", flat=True).first()
    if horizon is None:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {FEED} (user_id, post_id, author_id)
            SELECT %s, p.id, p.author_id FROM {POSTS} p
            WHERE p.author_id = %s AND {visibility.stored_in_feeds_sql("p")} AND p.id >= %s
            ORDER BY p.id DESC LIMIT %s {_lock_posts_clause("p")}
            ON CONFLICT DO NOTHING
            """,
            [follower.id, followed.id, horizon, cap],
        )
        cursor.execute(
            f"SELECT id FROM {POSTS} WHERE author_id = %s AND parent_id IS NULL AND id >= %s "
            f"ORDER BY id DESC LIMIT 1 OFFSET %s",
            [followed.id, horizon, cap],
        )
        overflow = cursor.fetchone()
    if overflow is not None:
        # More posts exist than were copied: the feed is complete only from the oldest copied
        # post up, which is the first id above `overflow`.
        _raise_horizon([follower.id], overflow[0] + 1)
        horizon = max(horizon, overflow[0] + 1)
    _copy_reposts(follower.id, reposter_ids=[followed.id], floor=horizon)


def _copy_reposts(user_id: int, *, reposter_ids: list[int], floor: int) -> None:
    """The newest FEED_MAX_ENTRIES reposted posts at or above `floor` of these reposters into
    the reader's feed; when more exist, the reader's horizon rises above the ones left out (all
    reposters of a post are copied, so the feed is complete from the horizon up)."""
    if not reposter_ids:
        return
    placeholders = ",".join(["%s"] * len(reposter_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT post_id FROM {REPOSTS} WHERE user_id IN ({placeholders}) "
            f"AND post_id >= %s ORDER BY post_id DESC LIMIT 1 OFFSET %s",
            [*reposter_ids, floor, settings.FEED_MAX_ENTRIES],
        )
        overflow = cursor.fetchone()
        if overflow is not None:
            floor = max(floor, overflow[0] + 1)
        cursor.execute(
            f"""
            INSERT INTO {REPOST_FEED} (user_id, post_id, reposter_id, author_id)
            SELECT %s, r.post_id, r.user_id, p.author_id
            FROM {REPOSTS} r JOIN {POSTS} p ON p.id = r.post_id
            WHERE r.user_id IN ({placeholders}) AND r.post_id >= %s
              AND {visibility.stored_in_feeds_sql("p")} AND p.author_id IS NOT NULL
            {_lock_posts_clause("r, p")}
            ON CONFLICT DO NOTHING
            """,
            [user_id, *reposter_ids, floor],
        )
    if overflow is not None:
        _raise_horizon([user_id], floor)


def add_own_repost(*, user_id: int, post_id: int, author_id: int) -> None:
    """The reposter's own repost enters their feed in the repost's transaction."""
    RepostEntry.objects.bulk_create(
        [RepostEntry(user_id=user_id, post_id=post_id, reposter_id=user_id, author_id=author_id)],
        ignore_conflicts=True,
    )


def fan_out_repost(
    post_id: int, reposter_id: int, checkpoint: Callable[[], None] | None = None
) -> int:
    """Copies a repost into the feeds of the reposter's active followers (at or above their
    horizon), in chunks of FANOUT_CHUNK_SIZE followers, each its own short transaction. Running
    it again changes nothing (ON CONFLICT DO NOTHING), so it keeps no progress row. Nothing
    for a celebrity reposter (merged at read time) or a repost undone meanwhile."""
    reposter = User.objects.filter(id=reposter_id).values_list("is_celebrity", flat=True).first()
    if reposter is None or reposter:
        return 0
    chunk = settings.FANOUT_CHUNK_SIZE
    cutoff = active_cutoff()
    inserted = 0
    after = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT follower_id FROM {FOLLOWS} WHERE followed_id = %s AND follower_id > %s "
                f"ORDER BY follower_id LIMIT 1 OFFSET %s",
                [reposter_id, after, chunk - 1],
            )
            row = cursor.fetchone()
        upper = row[0] if row else None
        bound = "AND f.follower_id <= %s" if upper is not None else ""
        params: list[int | datetime] = [reposter_id, post_id, after]
        if upper is not None:
            params.append(upper)
        params.append(cutoff)
        with transaction.atomic(), connection.cursor() as cursor:
            # The repost and the post are key-share locked as they are read (a repost undone
            # or a post deleted meanwhile is not copied; an undo or delete that starts later
            # waits, then removes the copies), the follow rows share-locked (an unfollow waits,
            # then removes what this chunk inserted).
            cursor.execute(
                f"""
                INSERT INTO {REPOST_FEED} (user_id, post_id, reposter_id, author_id)
                SELECT f.follower_id, r.post_id, r.user_id, p.author_id
                FROM {REPOSTS} r
                JOIN {POSTS} p ON p.id = r.post_id
                JOIN {FOLLOWS} f ON f.followed_id = r.user_id
                JOIN {USERS} u ON u.id = f.follower_id
                WHERE r.user_id = %s AND r.post_id = %s AND f.follower_id > %s {bound}
                  AND u.last_seen_at >= %s AND r.post_id >= u.feed_horizon
                  AND {visibility.stored_in_feeds_sql("p")} AND p.author_id IS NOT NULL
                {_lock_follows_clause(posts="r, p")}
                ON CONFLICT DO NOTHING
                """,
                params,
            )
            inserted += max(cursor.rowcount, 0)
        if upper is None:
            return inserted
        after = upper
        if checkpoint is not None:
            checkpoint()


def remove_follow(*, follower: User, followed: User) -> None:
    """After an unfollow: the followee's posts and reposts leave the follower's feed (a post
    also reposted by someone else still followed stays, by that entry)."""
    FeedEntry.objects.filter(user_id=follower.id, author_id=followed.id).delete()
    RepostEntry.objects.filter(user_id=follower.id, reposter_id=followed.id).delete()


def remove_post(post_id: int) -> None:
    """A deleted post leaves every feed, with every repost of it."""
    FeedEntry.objects.filter(post_id=post_id).delete()
    RepostEntry.objects.filter(post_id=post_id).delete()


def remove_repost(*, post_id: int, reposter_id: int) -> None:
    """An undone repost leaves every feed it was copied into."""
    RepostEntry.objects.filter(post_id=post_id, reposter_id=reposter_id).delete()


def remove_reposter(user_id: int) -> None:
    """Before an account is deleted: its reposts leave every feed (found through its reposts,
    on the entries' (post_id, reposter_id) index)."""
    RepostEntry.objects.filter(
        post_id__in=Repost.objects.filter(user_id=user_id).values("post_id"),
        reposter_id=user_id,
    ).delete()


def remove_reader(user: User) -> None:
    FeedEntry.objects.filter(user_id=user.id).delete()
    RepostEntry.objects.filter(user_id=user.id).delete()


def remove_author(user: User) -> None:
    """Before an account is deleted: its posts leave every feed, reposted or not."""
    FeedEntry.objects.filter(
        post_id__in=Post.objects.filter(author_id=user.id).values("id")
    ).delete()
    RepostEntry.objects.filter(
        post_id__in=Post.objects.filter(author_id=user.id).values("id")
    ).delete()


def rebuild(user: User) -> None:
    """A returning reader's feed, rebuilt from the pull query (the newest FEED_MAX_ENTRIES); the
    `rebuild_feed` job, enqueued by accounts.services.user_mark_seen.

    Until then the reader's horizon stands above every id: pages read the pull query, and
    fan-outs skip the reader. So the rebuild runs twice: the first pass fills the feed and
    lowers the horizon; the second adds the posts whose fan-out ran while the first pass was
    under way (they committed before that fan-out read the horizon, so before the second pass
    begins). Each pass locks the reader's row first: a follow or unfollow (which locks both
    accounts first) runs wholly before or after it."""
    with transaction.atomic():
        _lock_reader(user.id)
        FeedEntry.objects.filter(user_id=user.id).delete()
        RepostEntry.objects.filter(user_id=user.id).delete()
        _copy_pull_query(user.id, floor=0)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*), MIN(post_id) FROM {FEED} WHERE user_id = %s", [user.id]
            )
            count, oldest = cursor.fetchone() or (0, None)
        horizon = oldest if count >= settings.FEED_MAX_ENTRIES and oldest is not None else 0
        User.objects.filter(id=user.id).update(feed_horizon=horizon)
        # Reposts of the reader and of everyone they follow (may raise the horizon).
        _copy_reposts(user.id, reposter_ids=_reposters_of(user.id), floor=horizon)
        horizon = User.objects.filter(id=user.id).values_list("feed_horizon", flat=True).get()
        user.feed_horizon = horizon
    with transaction.atomic():
        _lock_reader(user.id)
        _copy_pull_query(user.id, floor=horizon)
        _copy_reposts(user.id, reposter_ids=_reposters_of(user.id), floor=horizon)
        user.feed_horizon = (
            User.objects.filter(id=user.id).values_list("feed_horizon", flat=True).get()
        )


def _reposters_of(user_id: int) -> list[int]:
    """Whose reposts a reader's stored feed holds: their own and their followees'."""
    followed = Follow.objects.filter(follower_id=user_id).values_list("followed_id", flat=True)
    return [user_id, *followed]


def _lock_reader(user_id: int) -> None:
    list(User.objects.select_for_update(no_key=True).filter(id=user_id).values("id"))


def _copy_pull_query(user_id: int, *, floor: int) -> None:
    """The newest FEED_MAX_ENTRIES top-level posts at or above `floor` of the reader and the
    accounts they follow, into their feed (what is there already stays)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {FEED} (user_id, post_id, author_id)
            SELECT %s, p.id, p.author_id FROM {POSTS} p
            WHERE {visibility.stored_in_feeds_sql("p")} AND p.id >= %s AND (
                p.author_id = %s
                OR p.author_id IN (SELECT followed_id FROM {FOLLOWS} WHERE follower_id = %s)
            )
            ORDER BY p.id DESC LIMIT %s {_lock_posts_clause("p")}
            ON CONFLICT DO NOTHING
            """,
            [user_id, floor, user_id, user_id, settings.FEED_MAX_ENTRIES],
        )


def trim(user_ids: list[int]) -> int:
    """Keeps each feed to its newest FEED_MAX_ENTRIES entries of posts and of reposts; the
    horizon rises to the higher of the two cuts (below it, the pull query). Returns entries
    removed."""
    cap = settings.FEED_MAX_ENTRIES
    removed = 0
    for user_id in user_ids:
        with transaction.atomic(), connection.cursor() as cursor:
            cuts = []
            for table in (FEED, REPOST_FEED):
                cursor.execute(
                    f"SELECT post_id FROM {table} WHERE user_id = %s "
                    f"ORDER BY post_id DESC LIMIT 1 OFFSET %s",
                    [user_id, cap - 1],
                )
                row = cursor.fetchone()
                if row is not None:
                    cuts.append(row[0])
            if not cuts:
                continue
            cut = max(cuts)
            removed_here = 0
            for table in (FEED, REPOST_FEED):
                cursor.execute(
                    f"DELETE FROM {table} WHERE user_id = %s AND post_id < %s", [user_id, cut]
                )
                removed_here += max(cursor.rowcount, 0)
            if removed_here > 0:
                removed += removed_here
                _raise_horizon([user_id], cut)
    return removed


def _raise_horizon(user_ids: list[int], horizon: int) -> None:
    User.objects.filter(id__in=user_ids, feed_horizon__lt=horizon).update(feed_horizon=horizon)


def update_celebrity(user_id: int) -> bool | None:
    """Called in the transaction that changed the follower count. Returns the new status when
    it changed, else None."""
    row = User.objects.filter(id=user_id).values_list("followers_count", "is_celebrity").first()
    if row is None:
        return None
    followers, was_celebrity = row
    now_celebrity = followers > settings.FANOUT_CELEBRITY_FOLLOWERS
    if now_celebrity == was_celebrity:
        return None
    User.objects.filter(id=user_id).update(is_celebrity=now_celebrity)
    return now_celebrity


def backfill_author(author_id: int) -> int:
    """After an author stops being a celebrity: their recent top-level posts (written while they
    were merged at read time) are copied into their active followers' feeds."""
    author = User.objects.filter(id=author_id).first()
    if author is None or author.is_celebrity:
        return 0
    cap = settings.FEED_MAX_ENTRIES
    cutoff = active_cutoff()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {POSTS} WHERE author_id = %s AND parent_id IS NULL "
            f"ORDER BY id DESC LIMIT 1 OFFSET %s",
            [author_id, cap],
        )
        overflow = cursor.fetchone()
    floor = overflow[0] + 1 if overflow else 0
    inserted = 0
    follower_ids = list(
        Follow.objects.filter(followed_id=author_id)
        .order_by("follower_id")
        .values_list("follower_id", flat=True)
    )
    for start in range(0, len(follower_ids), settings.FANOUT_CHUNK_SIZE):
        chunk = follower_ids[start : start + settings.FANOUT_CHUNK_SIZE]
        with transaction.atomic(), connection.cursor() as cursor:
            placeholders = ",".join(["%s"] * len(chunk))
            cursor.execute(
                f"""
                INSERT INTO {FEED} (user_id, post_id, author_id)
                SELECT f.follower_id, p.id, p.author_id
                FROM {FOLLOWS} f
                JOIN {USERS} u ON u.id = f.follower_id
                JOIN {POSTS} p ON p.author_id = f.followed_id
                WHERE f.followed_id = %s AND f.follower_id IN ({placeholders})
                  AND u.last_seen_at >= %s
                  AND {visibility.stored_in_feeds_sql("p")}
                  AND p.id >= %s AND p.id >= u.feed_horizon
                {_lock_follows_clause(posts="p")}
                ON CONFLICT DO NOTHING
                """,
                [author_id, *chunk, cutoff, floor],
            )
            inserted += max(cursor.rowcount, 0)
            if floor:
                _raise_horizon(chunk, floor)
    # Their reposts made while they were a celebrity (merged at read time until now).
    for follower_id in User.objects.filter(
        id__in=follower_ids, last_seen_at__gte=cutoff
    ).values_list("id", flat=True):
        horizon = User.objects.filter(id=follower_id).values_list("feed_horizon", flat=True).get()
        _copy_reposts(follower_id, reposter_ids=[author_id], floor=horizon)
    return inserted
