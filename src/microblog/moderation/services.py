"""Writes of moderation: reports, staff reviews, blocks and mutes. The only doors to them.

A post's state is two columns on the post (`is_hidden`, `open_reports`), changed only here, under
a lock on the post row, together with the report rows and the audit log entry that explain it.
Reading code filters on them (moderation.selectors), so a hide, a block or a mute takes effect
on the next page load: nothing is copied out of or back into the stored feeds.
"""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from microblog.accounts.models import User
from microblog.core.errors import Conflict, Invalid, NotAllowed, NotFound
from microblog.core.text import clean_text
from microblog.follows.services import ACCOUNT_GONE, follow_delete
from microblog.moderation.models import (
    REPORT_TEXT_MAX_LENGTH,
    Action,
    Block,
    ModerationAction,
    Mute,
    Reason,
    Report,
    Resolution,
)
from microblog.posts.models import Post
from microblog.stream import events

POST_GONE = "That post no longer exists."


def report_text_clean(text: str) -> str:
    return clean_text(
        text, max_length=REPORT_TEXT_MAX_LENGTH, allow_empty=True, label="report", field="text"
    )


def _locked_post(post_id: int) -> Post:
    """The post row, locked against other reviews and reports until the transaction ends.
    NO KEY UPDATE: fan-out copies key-share lock posts, and must not wait for a report."""
    post = (
        Post.objects.select_for_update(no_key=True, of=("self",))
        .select_related("author")
        .filter(id=post_id, is_deleted=False)
        .first()
    )
    if post is None:
        raise NotFound(POST_GONE)
    return post


def _log(post: Post, action: Action, actor: User | None, reports_closed: int) -> None:
    ModerationAction.objects.create(
        actor=actor,
        actor_username=actor.username if actor else "",
        action=action,
        post_id=post.id,
        post_author_username=post.author.username if post.author else "",
        post_content=post.content,
        reports_closed=reports_closed,
    )


def report_create(*, reporter: User, post_id: int, reason: str, text: str = "") -> Report:
    """Reports a post. The REPORTS_TO_HIDE-th open report hides it until staff review it.

    Raises Invalid for a reason not in the list or bad text, NotFound for a missing post,
    NotAllowed for one's own post, Conflict for a second report of the same post; nothing is
    written then.
    """
    if reason not in Reason.values:
        raise Invalid("Choose a reason from the list.", field="reason", code="invalid_choice")
    text = report_text_clean(text)
    with transaction.atomic():
        post = _locked_post(post_id)
        if post.author_id == reporter.id:
            raise NotAllowed("You can't report your own post.")
        try:
            with transaction.atomic():
                report = Report.objects.create(
                    post=post, reporter=reporter, reason=reason, text=text
                )
        except IntegrityError:
            raise Conflict("You have already reported this post.") from None
        post.open_reports += 1
        fields = ["open_reports"]
        if not post.is_hidden and post.open_reports >= settings.REPORTS_TO_HIDE:
            post.is_hidden = True
            fields.append("is_hidden")
            _log(post, Action.AUTO_HIDE, None, 0)
        post.save(update_fields=fields)
    return report


def _close_reports(post: Post, resolution: Resolution) -> int:
    closed = Report.objects.filter(post_id=post.id, resolved_at=None).update(
        resolved_at=timezone.now(), resolution=resolution
    )
    post.open_reports = 0
    return closed


def review(*, staff: User, post_id: int, action: str) -> Post:
    """A staff decision on a post, logged with the reports it closes:

    - hide: hidden from everyone but its author (and staff); its open reports are upheld.
    - restore: visible again; any open reports are dismissed.
    - dismiss: its open reports are dismissed; a post the reports hid is visible again.
    """
    if not staff.is_staff:
        raise NotAllowed("Only staff can review posts.")
    if action not in (Action.HIDE, Action.RESTORE, Action.DISMISS):
        raise Invalid("Unknown review action.")
    with transaction.atomic():
        post = _locked_post(post_id)
        if action == Action.HIDE:
            closed = _close_reports(post, Resolution.HIDDEN)
            post.is_hidden = True
        elif action == Action.RESTORE:
            if not post.is_hidden:
                raise Conflict("That post is not hidden.")
            closed = _close_reports(post, Resolution.DISMISSED)
            post.is_hidden = False
        else:
            if not post.open_reports:
                raise Conflict("That post has no open reports.")
            # Open reports on a hidden post mean the reports hid it (a staff hide closes them).
            closed = _close_reports(post, Resolution.DISMISSED)
            post.is_hidden = False
        post.save(update_fields=["is_hidden", "open_reports"])
        _log(post, Action(action), staff, closed)
    return post


def block_create(*, blocker: User, blocked: User) -> bool:
    """Blocks `blocked`: follows both ways end (counters and feeds with them), they can no longer
    follow or reply to `blocker`, and `blocker` sees none of their posts. False if already so."""
    if blocker.id == blocked.id:
        raise Invalid("You can't block yourself.")
    with transaction.atomic():
        # follow_delete locks both accounts in id order first, the lock order of every service;
        # follow_create checks for a block under the same locks, so none slips in between.
        follow_delete(follower=blocker, followed=blocked)
        follow_delete(follower=blocked, followed=blocker)
        try:
            with transaction.atomic():
                Block.objects.create(blocker=blocker, blocked=blocked)
        except IntegrityError:
            if not User.objects.filter(id=blocked.id).exists():
                raise NotFound(ACCOUNT_GONE) from None
            return False
        # The blocker's open streams reload whom they hear from (stream/app.py).
        events.publish_reader_filters_changed_after_commit(reader_id=blocker.id)
    return True


def block_delete(*, blocker: User, blocked: User) -> bool:
    """Unblocks. Follows that the block ended are not restored."""
    deleted, _ = Block.objects.filter(blocker=blocker, blocked=blocked).delete()
    if deleted:
        events.publish_reader_filters_changed_after_commit(reader_id=blocker.id)
    return bool(deleted)


def mute_create(*, muter: User, muted: User) -> bool:
    """Mutes `muted`: their posts leave `muter`'s feeds; follows and everything else stay."""
    if muter.id == muted.id:
        raise Invalid("You can't mute yourself.")
    try:
        with transaction.atomic():
            Mute.objects.create(muter=muter, muted=muted)
            events.publish_reader_filters_changed_after_commit(reader_id=muter.id)
    except IntegrityError:
        if not User.objects.filter(id=muted.id).exists():
            raise NotFound(ACCOUNT_GONE) from None
        return False
    return True


def mute_delete(*, muter: User, muted: User) -> bool:
    deleted, _ = Mute.objects.filter(muter=muter, muted=muted).delete()
    if deleted:
        events.publish_reader_filters_changed_after_commit(reader_id=muter.id)
    return bool(deleted)
