"""Writes to likes and reposts: `like_create`, `like_delete`, `repost_create`, `repost_delete`
are the only doors.

Each one changes the row and the post's exact counter (`likes_count`, `reposts_count`) in one
transaction. Idempotent: the row is inserted with ON CONFLICT DO NOTHING on the unique
(user, post) constraint, and the counter moves only when a row was inserted or deleted, so two
clicks (or two requests racing) make one like. Lock order: the post row first (a no-key
update lock, taken by the statement that checks that the post may be liked), then the like or
repost row; no user row is locked (no user counter changes), so this cannot deadlock with the
services that lock user rows before posts.
"""

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from microblog import jobs
from microblog.accounts.models import User
from microblog.core.errors import Invalid, NotAllowed, NotFound
from microblog.core.ids import new_id
from microblog.interactions.models import Like, Repost
from microblog.moderation.selectors import blocks_replies
from microblog.notifications import services as notifications
from microblog.posts.models import Post
from microblog.timelines import fanout, visibility

POST_MISSING = "This post doesn't exist, or you can't see it."
POST_DELETED = "This post was deleted."
LIKE_BLOCKED = "You can't like this post: its author has blocked you."
REPOST_BLOCKED = "You can't repost this post: its author has blocked you."
REPOST_ORPHAN = "This post's author deleted their account: it can't be reposted."
REPOST_REPLY = "Replies can't be reposted; you can repost the post that started the thread."

LIKES = Like._meta.db_table
REPOSTS = Repost._meta.db_table


def _lock_interactable(*, user: User, post_id: int, blocked_message: str) -> Post:
    """The post, locked against a concurrent delete or hide until the caller commits; raises
    when `user` may not like or repost it: NotFound (missing, or hidden from them),
    Invalid (a deleted post's placeholder), NotAllowed (its author blocks them)."""
    post = (
        Post.objects.select_for_update(no_key=True)
        .filter(id=post_id)
        .only("id", "author_id", "parent_id", "is_hidden", "is_deleted")
        .first()
    )
    # Who may see the post: the rule of its own page (a hidden post: its author and staff).
    if post is None or not visibility.can_see(user, post):
        raise NotFound(POST_MISSING, code="post_missing")
    if post.is_deleted:
        raise Invalid(POST_DELETED, code="post_deleted")
    if blocks_replies(parent_id=post_id, replier_id=user.id):
        raise NotAllowed(blocked_message, code="blocked")
    return post


def _insert_once(table: str, *, user_id: int, post_id: int) -> bool:
    """Inserts (user, post) unless it is there; True when a row was inserted. ON CONFLICT on
    the unique pair: a concurrent insert of the same pair waits for the first and then does
    nothing, so the counter moves once."""
    for attempt in range(3):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} (id, user_id, post_id, created_at) "
                    f"VALUES (%s, %s, %s, %s) ON CONFLICT (user_id, post_id) DO NOTHING",
                    [new_id(), user_id, post_id, timezone.now()],
                )
                return cursor.rowcount == 1
        except IntegrityError:
            # Two processes drew the same id in the same millisecond: draw again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def like_create(*, user: User, post_id: int) -> bool:
    """Likes a post; True if it was not liked yet (a second like changes nothing). Raises
    NotFound, Invalid or NotAllowed (see _lock_interactable); nothing is written then."""
    with transaction.atomic():
        post = _lock_interactable(user=user, post_id=post_id, blocked_message=LIKE_BLOCKED)
        if not _insert_once(LIKES, user_id=user.id, post_id=post_id):
            return False
        Post.objects.filter(id=post_id).update(likes_count=F("likes_count") + 1)
        del post
        # The author is told only once the like commits; the notification is a pending row
        # folded by a job, so a like spree costs one small write per like, not a page of rows.
        transaction.on_commit(lambda: notifications.notify_liked(post_id=post_id, actor_id=user.id))
    return True


def like_delete(*, user: User, post_id: int) -> bool:
    """Removes a like; True if there was one (unliking a post not liked changes nothing). A
    post that is gone or hidden can still be unliked: it is the user's own row."""
    with transaction.atomic():
        # The post row first (the lock order of like_create), if it is still there.
        list(Post.objects.select_for_update(no_key=True).filter(id=post_id).values("id"))
        deleted, _ = Like.objects.filter(user_id=user.id, post_id=post_id).delete()
        if not deleted:
            return False
        Post.objects.filter(id=post_id).update(likes_count=F("likes_count") - 1)
    return True


def repost_create(*, user: User, post_id: int) -> bool:
    """Reposts a top-level post into the user's followers' For You (and the user's own);
    True if it was not reposted yet. Raises like like_create, and Invalid for a reply or a
    post whose author deleted their account."""
    with transaction.atomic():
        post = _lock_interactable(user=user, post_id=post_id, blocked_message=REPOST_BLOCKED)
        if post.parent_id is not None:
            raise Invalid(REPOST_REPLY, code="repost_reply")
        if post.author_id is None:
            # Feeds drop a deleted account's posts (timelines.fanout.remove_author).
            raise Invalid(REPOST_ORPHAN, code="repost_orphan")
        if not _insert_once(REPOSTS, user_id=user.id, post_id=post_id):
            return False
        Post.objects.filter(id=post_id).update(reposts_count=F("reposts_count") + 1)
        # The reposter's own feed in this transaction (like an own post); followers' feeds by
        # the fan-out job, which commits with the repost (celebrities' reposts are merged at
        # read time instead: the job does nothing for them).
        fanout.add_own_repost(user_id=user.id, post_id=post_id, author_id=post.author_id)
        jobs.enqueue_with_write(jobs.fan_out_repost, post_id, user.id)
        transaction.on_commit(
            lambda: notifications.notify_reposted(post_id=post_id, actor_id=user.id)
        )
    return True


def repost_delete(*, user: User, post_id: int) -> bool:
    """Undoes a repost: it leaves every feed in the same transaction. True if there was one."""
    with transaction.atomic():
        list(Post.objects.select_for_update(no_key=True).filter(id=post_id).values("id"))
        # The repost row is deleted with a FOR UPDATE lock: a fan-out chunk copying it holds a
        # key-share lock on it, so this waits for that chunk and then removes its copies too;
        # a chunk starting later no longer finds the repost.
        deleted, _ = Repost.objects.filter(user_id=user.id, post_id=post_id).delete()
        if not deleted:
            return False
        Post.objects.filter(id=post_id).update(reposts_count=F("reposts_count") - 1)
        fanout.remove_repost(post_id=post_id, reposter_id=user.id)
    return True


def post_gone(*, post_id: int) -> None:
    """For posts.services.post_delete, in its transaction: a post that becomes a placeholder
    loses its likes and reposts (and their feed entries). A post removed outright loses them
    by the database's cascade; its repost entries go with fanout.remove_post."""
    Like.objects.filter(post_id=post_id).delete()
    Repost.objects.filter(post_id=post_id).delete()
    Post.objects.filter(id=post_id).update(likes_count=0, reposts_count=0)


def user_gone(*, user_id: int) -> None:
    """For accounts.services.user_erase, in its transaction, after the account's row is locked
    (user rows before posts): the posts this account liked or reposted count one less, and its
    reposts leave every feed; the rows themselves go by the database's cascade."""
    Post.objects.filter(id__in=Like.objects.filter(user_id=user_id).values("post_id")).update(
        likes_count=F("likes_count") - 1
    )
    reposted = Repost.objects.filter(user_id=user_id).values("post_id")
    Post.objects.filter(id__in=reposted).update(reposts_count=F("reposts_count") - 1)
    fanout.remove_reposter(user_id)
