"""Mastodon's JSON entities, as plain functions of our models (docs: the Mastodon API's
"entities"). Ids are strings, times ISO 8601 in UTC with milliseconds, text is HTML.

Likes, reposts, notifications and tags do not exist yet: `status` answers their counts as 0 and
their flags as false in one place each, so the branch that adds them changes only `status`
(and passes what the reader liked or reposted through `Context`).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from markupsafe import Markup

from microblog.accounts.models import User
from microblog.api.models import ClientApp
from microblog.core.jinja import linkify, tag_path
from microblog.moderation.selectors import Relationship
from microblog.notifications.models import Notification
from microblog.posts.models import Post
from microblog.tags.models import Tag
from microblog.tags.selectors import TagDay

DELETED_USERNAME = "deleted"


@dataclass(slots=True)
class Context:
    """What every entity needs from the request: absolute addresses and who reads."""

    base: str  # "https://example.org", no trailing slash
    domain: str
    # Filled by `statuses` for replies whose parent was not loaded with them.
    parent_authors: dict[int, int | None] = field(default_factory=dict)

    @classmethod
    def of(cls, request: HttpRequest) -> "Context":
        base = request.build_absolute_uri("/").rstrip("/")
        return cls(base=base, domain=request.get_host())


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def html(text: str, mentioned: str = "") -> str:
    """Plain text as Mastodon's HTML: paragraphs, line breaks, links, hashtags and the post's
    stored mentions (`mentioned`, Post.mention_names), escaped and linked as on our pages."""
    if not text:
        return ""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        Markup("<p>{}</p>").format(
            Markup("<br>").join(linkify(line, mentioned) for line in p.split("\n"))
        )
        for p in paragraphs
    )


def account(user: User | None, ctx: Context) -> dict[str, Any]:
    """The Account entity. A deleted account's posts stay: they are by a stand-in account."""
    avatar = f"{ctx.base}{settings.STATIC_URL}api/avatar.png"
    header = f"{ctx.base}{settings.STATIC_URL}api/header.png"
    if user is None:
        return {
            "id": "0",
            "username": DELETED_USERNAME,
            "acct": DELETED_USERNAME,
            "display_name": "Deleted user",
            "locked": False,
            "bot": False,
            "discoverable": False,
            "group": False,
            "created_at": "2024-01-01T00:00:00.000Z",
            "note": "",
            "url": ctx.base,
            "uri": ctx.base,
            "avatar": avatar,
            "avatar_static": avatar,
            "header": header,
            "header_static": header,
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": 0,
            "last_status_at": None,
            "emojis": [],
            "fields": [],
        }
    url = f"{ctx.base}/@{user.username}"
    return {
        "id": str(user.id),
        "username": user.username,
        "acct": user.username,
        "display_name": user.username,
        "locked": False,
        "bot": False,
        "discoverable": True,
        "group": False,
        "created_at": iso(user.date_joined),
        "note": html(user.description),
        "url": url,
        "uri": url,
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": user.followers_count,
        "following_count": user.following_count,
        "statuses_count": user.posts_count,
        "last_status_at": None,
        "emojis": [],
        "fields": [],
    }


def credential_account(user: User, ctx: Context) -> dict[str, Any]:
    """The signed-in user's own Account, with `source` (what they typed)."""
    entity = account(user, ctx)
    entity["source"] = {
        "privacy": "public",
        "sensitive": False,
        "language": None,
        "note": user.description,
        "fields": [],
        "follow_requests_count": 0,
    }
    return entity


_author_field = Post._meta.get_field("author")
_parent_field = Post._meta.get_field("parent")


def _in_reply_to_account(post: Post, ctx: Context) -> int | None:
    if post.parent_id is None:
        return None
    if _parent_field.is_cached(post):
        return post.parent.author_id if post.parent is not None else None
    return ctx.parent_authors.get(post.parent_id)


def status(post: Post, ctx: Context) -> dict[str, Any]:
    """The Status entity. Everything here is public (our only visibility)."""
    url = f"{ctx.base}/posts/{post.id}"
    parent_author = _in_reply_to_account(post, ctx)
    return {
        "id": str(post.id),
        "uri": url,
        "url": url,
        "created_at": iso(post.created_at),
        "edited_at": None,
        "account": account(post.author, ctx),
        "content": html(post.content, post.mention_names),
        "visibility": "public",
        "sensitive": False,
        "spoiler_text": "",
        "media_attachments": [],
        "application": None,
        "mentions": [],
        "tags": [],
        "emojis": [],
        # As the reader's pages count them where the selector annotated it (posts.selectors).
        "replies_count": post.reply_count,
        "reblogs_count": post.reposts_count,
        "favourites_count": post.likes_count,
        # Not yet: the reader's own likes and reposts (interactions.selectors.state_for) and
        # the favourite / reblog endpoints (docs/api.md, "Not implemented yet").
        "favourited": False,
        "reblogged": False,
        "muted": False,
        "bookmarked": False,
        "pinned": False,
        "reblog": None,
        "card": None,
        "poll": None,
        "language": None,
        "filtered": [],
        "in_reply_to_id": str(post.parent_id) if post.parent_id is not None else None,
        "in_reply_to_account_id": str(parent_author) if parent_author is not None else None,
    }


def statuses(posts: Sequence[Post], ctx: Context) -> list[dict[str, Any]]:
    """Many Status entities; the parents' authors of replies whose parent was not loaded come
    in one query (a page of For You or All has no replies, and makes none)."""
    missing = {
        post.parent_id
        for post in posts
        if post.parent_id is not None
        and not _parent_field.is_cached(post)
        and post.parent_id not in ctx.parent_authors
    }
    if missing:
        ctx.parent_authors.update(
            Post.objects.filter(id__in=missing).values_list("id", "author_id")
        )
    _load_whole_authors(posts)
    return [status(post, ctx) for post in posts]


def _load_whole_authors(posts: Sequence[Post]) -> None:
    """The Account entity shows counters, dates and the bio, which the pages' card lists leave
    unread (posts.selectors.with_card_authors): such authors are read whole, in one query for
    the page, instead of one query per deferred column and post."""
    partial = {
        post.author_id
        for post in posts
        if post.author_id is not None
        and _author_field.is_cached(post)
        and post.author is not None
        and post.author.get_deferred_fields()
    }
    if not partial:
        return
    whole = User.objects.in_bulk(partial)
    for post in posts:
        if post.author_id in whole:
            post.author = whole[post.author_id]


def relationship(user_id: int, rel: Relationship) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "following": rel.following,
        "showing_reblogs": rel.following,
        "notifying": False,
        "languages": None,
        "followed_by": rel.followed_by,
        "blocking": rel.blocking,
        "blocked_by": rel.blocked_by,
        "muting": rel.muting,
        "muting_notifications": rel.muting,
        "requested": False,
        "requested_by": False,
        "domain_blocking": False,
        "endorsed": False,
        "note": "",
    }


def application(app: ClientApp, *, client_secret: str | None = None) -> dict[str, Any]:
    uris = app.redirect_uris.split()
    entity: dict[str, Any] = {
        "id": str(app.id),
        "name": app.name,
        "website": app.website or None,
        "scopes": app.scopes.split(),
        "redirect_uri": "\n".join(uris),
        "redirect_uris": uris,
        "vapid_key": "",
    }
    if client_secret is not None:
        entity["client_id"] = app.client_id
        entity["client_secret"] = client_secret
        entity["client_secret_expires_at"] = 0
    return entity


def ids(values: Iterable[int]) -> list[str]:
    return [str(value) for value in values]


# --- notifications and tags ------------------------------------------------------------------

# Our notification kinds as Mastodon's types: a reply is a "mention" there (Mastodon has no type
# of its own for replies: they mention the author).
NOTIFICATION_TYPES = {
    "reply": "mention",
    "mention": "mention",
    "follow": "follow",
    "like": "favourite",
    "repost": "reblog",
}


def notifications(rows: Sequence[Notification], ctx: Context) -> list[dict[str, Any]]:
    """Notification entities, one per group row (docs/api.md, "Notifications"): its latest
    actor, the post it is about (none for follows), `id` its `sort_id` (the list's order, so
    max_id / min_id page it), `group_key` the group, as Mastodon 4.3 sends it."""
    posts = [row.post for row in rows if row.post is not None]
    shown = {entity["id"]: entity for entity in statuses(posts, ctx)}
    return [
        {
            "id": str(row.sort_id),
            "type": NOTIFICATION_TYPES[row.kind],
            "group_key": f"{row.kind}-{row.group_key}",
            "created_at": iso(row.updated_at),
            "account": account(row.actor, ctx),
            "status": shown[str(row.post_id)] if row.post_id is not None else None,
        }
        for row in rows
    ]


def tag(found: Tag, history: Sequence[TagDay], ctx: Context) -> dict[str, Any]:
    """The Tag entity, with its use per day, today first (tags.selectors.tags_history)."""
    return {
        "name": found.name,
        "url": f"{ctx.base}{tag_path(found.name)}",
        "history": [
            {
                "day": str(int(day.day.timestamp())),
                "uses": str(day.uses),
                "accounts": str(day.accounts),
            }
            for day in history
        ],
        "following": False,
    }
