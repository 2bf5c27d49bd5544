"""Writes to posts. `post_create` and `post_delete` are the only doors."""

from functools import reduce
from operator import or_
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, router, transaction
from django.db.models import F, Q, QuerySet, sql
from django.db.models.constants import OnConflict
from django.utils import timezone

from microblog import jobs
from microblog.accounts.models import User
from microblog.core import sqlcache
from microblog.core.errors import NotAllowed, NotFound
from microblog.core.ids import new_id
from microblog.core.text import clean_text, mentioned_usernames
from microblog.interactions import services as interactions
from microblog.moderation.models import Report
from microblog.moderation.selectors import author_blocks
from microblog.notifications import services as notifications
from microblog.posts.models import CONTENT_MAX_LENGTH, MENTIONS_MAX, Mention, Post
from microblog.stream import events
from microblog.tags.services import post_tags_record
from microblog.timelines import fanout, visibility

PARENT_MISSING = "The post you are replying to no longer exists."
REPLY_TO_DELETED = "This post was deleted: you can reply to its replies."
REPLY_BLOCKED = "You can't reply to this post: its author has blocked you."
NOT_YOUR_POST = "You can only delete your own posts."


def post_content_clean(content: str) -> str:
    return clean_text(
        content, max_length=CONTENT_MAX_LENGTH, allow_empty=False, label="post", field="content"
    )


def post_create(*, author: User, content: str, parent_id: int | None = None) -> Post:
    """Publishes a post or, with `parent_id`, a reply. Raises Invalid for bad content, NotFound
    for a missing parent (one the author may not see counts as missing: a post hidden by the
    moderators takes replies only from its author and staff), NotAllowed for a parent whose
    author blocks `author`; nothing is written then.

    `@username` mentions are resolved here, once: to the existing accounts (the first
    MENTIONS_MAX named; a name with no account stays plain text), stored with the post
    (`mention_names`, Mention rows), and notified with the reply (notifications.services)."""
    content = post_content_clean(content)
    names = mentioned_usernames(content)[:MENTIONS_MAX]
    with transaction.atomic():
        # A reply's parent is checked first, without a lock: it exists, is not deleted and may be
        # seen by the author (else NotFound), and its author does not block them (NotAllowed);
        # nothing is written before. One query, compiled once (core.sqlcache).
        parent_author_id = None if parent_id is None else _reply_parent(author, parent_id)
        mentioned = _existing_accounts(names)
        post = _insert_post(
            author=author,
            content=content,
            parent_id=parent_id,
            mention_names=" ".join(username for _, username in mentioned),
        )
        if mentioned:
            Mention.objects.bulk_create(Mention(post=post, user_id=uid) for uid, _ in mentioned)
        # Its hashtags, with the post (tags.services).
        post_tags_record(post=post)
        notifications.notify_post_created(
            post=post,
            parent_author_id=parent_author_id,
            mentioned_ids=[user_id for user_id, _ in mentioned],
        )
        if parent_id is None:
            # Replies are not fanned out: they live in threads and on the Following page.
            fanout.add_own_post(post)
            # The fan-out's progress row and its job commit with the post (microblog.jobs).
            fanout.record_fan_out(post)
            jobs.enqueue_with_write(jobs.fan_out_post, post.id)
        # Open pages learn of the post once it is committed (stream/events.py).
        events.publish_post_after_commit(post_id=post.id, author_id=author.id, parent_id=parent_id)
        # The counters last, just before the commit (issue 15): their rows are the ones other
        # writers wait for (the author's: every post of theirs, a follow of them; the parent's:
        # every reply to it, a like of it), so they stay locked for the commit only, not for the
        # writes above. Lock order, in every service: user rows first (in id order), then posts.
        User.objects.filter(id=author.id).update(posts_count=F("posts_count") + 1)
        # The UPDATE checks the parent again under its lock (hidden or deleted since the read
        # above: everything written here rolls back) and holds it against a concurrent delete
        # or hide until this reply commits.
        if parent_id is not None and not Post.objects.filter(
            visibility.replyable_by(author), id=parent_id
        ).update(replies_count=F("replies_count") + 1):
            raise NotFound(PARENT_MISSING, code="parent_missing")
    return post


def _reply_parent(author: User, parent_id: int) -> int | None:
    """The author of the post `author` replies to (None: an account since deleted); NotFound
    when they may not reply to it, NotAllowed when its author blocks them."""
    build = _reply_parent_for_staff if author.is_staff else _reply_parent_for_users
    found = sqlcache.fetch(build, parent_id, author.id, using=DEFAULT_DB_ALIAS)
    if not found:
        raise NotFound(PARENT_MISSING, code="parent_missing")
    parent_author_id, blocked = found[0]
    if blocked:
        raise NotAllowed(REPLY_BLOCKED, code="blocked")
    return parent_author_id


def _reply_parent_for_users(parent_id: int, author_id: int) -> QuerySet[Post, tuple[Any, ...]]:
    return _reply_parent_query(parent_id, author_id, staff=False)


def _reply_parent_for_staff(parent_id: int, author_id: int) -> QuerySet[Post, tuple[Any, ...]]:
    return _reply_parent_query(parent_id, author_id, staff=True)


def _reply_parent_query(
    parent_id: int, author_id: int, *, staff: bool
) -> QuerySet[Post, tuple[Any, ...]]:
    return (
        Post.objects.filter(visibility.replyable_by_id(author_id, staff=staff), id=parent_id)
        .annotate(blocked=author_blocks(author_id))
        .values_list("author_id", "blocked")[:1]
    )


def _existing_accounts(names: list[str]) -> list[tuple[int, str]]:
    """(id, username) of the accounts with these names (ignoring case), in the order named; one
    query (PostgreSQL: probes of the unique index on UPPER(username))."""
    if not names:
        return []
    found = dict(
        (username.lower(), (user_id, username))
        for user_id, username in sqlcache.fetch(_accounts_named, *names, using=DEFAULT_DB_ALIAS)
    )
    return [found[name.lower()] for name in names if name.lower() in found]


def _accounts_named(*names: str) -> QuerySet[User, tuple[int, str]]:
    # Compiled once per number of names (at most MENTIONS_MAX), core.sqlcache.
    return User.objects.filter(
        reduce(or_, (Q(username__iexact=name) for name in names))
    ).values_list("id", "username")


def _insert_post(
    *, author: User, content: str, parent_id: int | None, mention_names: str = ""
) -> Post:
    for _attempt in range(3):
        now = timezone.now()
        post = Post(
            id=new_id(int(now.timestamp() * 1000)),
            author=author,
            content=content,
            parent_id=parent_id,
            created_at=now,
            mention_names=mention_names,
        )
        if _insert_new(post):
            return post
        # Two processes drew the same id in the same millisecond: draw again.
    raise IntegrityError("posts_post: three ids drawn were all taken")


def _insert_new(post: Post) -> bool:
    """Inserts `post` (the same INSERT as `save(force_insert=True)`, with `ON CONFLICT DO
    NOTHING`); False when its id is taken. A savepoint around a plain INSERT did the same in two
    more round trips per post (issue 15)."""
    using = router.db_for_write(Post, instance=post)
    query = sql.InsertQuery(Post, on_conflict=OnConflict.IGNORE)
    query.insert_values(Post._meta.local_concrete_fields, [post])
    compiler = query.get_compiler(using=using)
    with compiler.connection.cursor() as cursor:
        for statement, params in compiler.as_sql():
            cursor.execute(statement, params)
        inserted = cursor.rowcount == 1
    if inserted:
        post._state.adding, post._state.db = False, using
    return inserted


def post_delete_allowed(*, post: Post, actor: User) -> bool:
    """Who may delete a post: its author, and staff (from the admin). The delete page and
    `post_delete` both ask this."""
    return actor.is_authenticated and (post.author_id == actor.id or actor.is_staff)


def post_delete(*, post: Post, actor: User) -> None:
    """Deletes a post, by its author or by staff; it leaves every feed in the same transaction.

    A post with replies stays as a placeholder without author or text, so its replies keep their
    place in the thread (and a reader can still open them from it); a placeholder goes when its
    last reply goes. A post without replies is removed, and its parent counts one reply less."""
    if not post_delete_allowed(post=post, actor=actor):
        raise NotAllowed(NOT_YOUR_POST)
    with transaction.atomic():
        if post.author_id is not None:
            # The author's row before the post (the lock order of post_create).
            list(User.objects.select_for_update(no_key=True).filter(id=post.author_id).values("id"))
        # FOR UPDATE, not NO KEY: waits for any fan-out copying this post (it key-share locks
        # it), so remove_post below removes those copies too, and for a reply being written to
        # it (post_create updates its count), so the count read here is final.
        replies = (
            Post.objects.select_for_update(of=("self",))
            .filter(id=post.id, is_deleted=False)
            .values_list("replies_count", flat=True)
            .first()
        )
        if replies is None:
            return
        if replies:
            Post.objects.filter(id=post.id).update(
                is_deleted=True,
                author=None,
                content="",
                mention_names="",
                is_hidden=False,
                open_reports=0,
            )
            # What a removal would have cascaded to (the audit log keeps its own copy), and
            # its likes and reposts (a placeholder shows neither).
            Report.objects.filter(post_id=post.id).delete()
            Mention.objects.filter(post_id=post.id).delete()
            interactions.post_gone(post_id=post.id)
        else:
            Post.objects.filter(id=post.id).delete()
            _reply_removed(post.parent_id)
        fanout.remove_post(post.id)
        # Open client API streams that may have shown it send Mastodon's `delete` (stream/app.py).
        events.publish_post_deleted_after_commit(
            post_id=post.id, author_id=post.author_id, parent_id=post.parent_id
        )
        # No notification keeps the deleted post's text or author (a removed row cascades too).
        notifications.notifications_forget_post(post_id=post.id)
        if post.author_id is not None:
            User.objects.filter(id=post.author_id).update(posts_count=F("posts_count") - 1)


def _reply_removed(parent_id: int | None) -> None:
    """One reply of `parent_id` is gone: count it, and remove the parent too when it is a
    placeholder left without replies (and so on up the thread)."""
    while parent_id is not None:
        Post.objects.filter(id=parent_id).update(replies_count=F("replies_count") - 1)
        # Open pages showing the parent get its lower count (stream/app.py).
        events.publish_replies_changed_after_commit(post_id=parent_id)
        emptied = Post.objects.filter(id=parent_id, is_deleted=True, replies_count=0)
        above = emptied.values_list("parent_id", flat=True).first()
        if not emptied.delete()[0]:
            return
        parent_id = above
