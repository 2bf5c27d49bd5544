"""Mastodon's JSON entities, as plain functions of our models (docs: the Mastodon API's
"entities"). Ids are strings, times ISO 8601 in UTC with milliseconds, text is HTML.

`statuses` adds what one reader did to a page's posts (favourited, reblogged: one query,
interactions.selectors.state_for) and, where a timeline holds reposts (For You), shows each
such post as Mastodon's reblog: an outer Status by the reposter whose `reblog` is the post.
"""

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest
from markupsafe import Markup

from microblog.accounts.models import User
from microblog.api.models import ClientApp
from microblog.core.ids import id_to_ms
from microblog.core.jinja import linkify, tag_path
from microblog.core.text import hashtags
from microblog.interactions.selectors import NO_STATE, InteractionState, state_for
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
    # The token's user (None: no token, or an app's token): whose favourited / reblogged.
    reader: User | None = None
    # Filled by `statuses` for replies whose parent was not loaded with them.
    parent_authors: dict[int, int | None] = field(default_factory=dict)
    # Filled by `statuses`: the reader's likes and reposts of the page's posts.
    state: InteractionState = NO_STATE
    # Filled by `statuses`: the ids of the accounts the page's posts mention, by lower-case
    # username (Post.mention_names holds the names).
    mentioned_ids: dict[str, int] = field(default_factory=dict)
    # Filled by `account`: the Account entities made so far, by account id (0: deleted).
    accounts: dict[int, dict[str, Any]] = field(default_factory=dict)

    def fresh(self) -> "Context":
        """The same addresses and reader with nothing filled: what one answer (or one streamed
        event) starts from, so counts read for it are never shown again later."""
        return Context(base=self.base, domain=self.domain, reader=self.reader)

    @classmethod
    def of(cls, request: HttpRequest) -> "Context":
        base = request.build_absolute_uri("/").rstrip("/")
        # The streaming process has no `request.user` (no auth middleware): its Status events are
        # shared by every reader, so they carry no reader's favourited / reblogged.
        user = getattr(request, "user", None)
        reader = user if isinstance(user, User) else None
        return cls(base=base, domain=request.get_host(), reader=reader)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=4096)
def html(text: str, mentioned: str = "") -> str:
    """Plain text as Mastodon's HTML: paragraphs, line breaks, links, hashtags and the post's
    stored mentions (`mentioned`, Post.mention_names), escaped and linked as on our pages.

    Kept per process by what it is made of (the text and the names), so it is never stale: the
    same posts and bios come back on every page of every reader, and linking them was a sixth of
    an API timeline's CPU (docs/benchmarks.md)."""
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
    """The Account entity, made once per request and account (a page shows the same authors
    again and again). A deleted account's posts stay: they are by a stand-in account."""
    key = user.id if user is not None else 0
    made = ctx.accounts.get(key)
    if made is None:
        made = ctx.accounts[key] = _account(user, ctx)
    return made


def _account(user: User | None, ctx: Context) -> dict[str, Any]:
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
    entity = dict(account(user, ctx))  # a copy: `source` is for this answer only
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
        "mentions": _mentions(post, ctx),
        # The post's hashtags from its text, by the parser that stored its PostTag rows
        # (tags.services.post_tags_record) and that links them on the card: no query.
        "tags": [
            {"name": name, "url": f"{ctx.base}/tags/{name}"} for name in hashtags(post.content)
        ],
        "emojis": [],
        # As the reader's pages count them where the selector annotated it (posts.selectors).
        "replies_count": post.reply_count,
        "reblogs_count": post.reposts_count,
        "favourites_count": post.likes_count,
        # The token user's own likes and reposts (`statuses` asks state_for once per page);
        # false without a token user, as Mastodon answers.
        "favourited": post.id in ctx.state.liked,
        "reblogged": post.id in ctx.state.reposted,
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


def _mentions(post: Post, ctx: Context) -> list[dict[str, Any]]:
    found = []
    for name in post.mention_names.split():
        user_id = ctx.mentioned_ids.get(name.lower())
        if user_id is not None:  # an account erased since: no longer a mention
            url = f"{ctx.base}/@{name}"
            found.append({"id": str(user_id), "username": name, "acct": name, "url": url})
    return found


def reblog(
    post: Post, inner: dict[str, Any], repost_id: int, reposter: User, ctx: Context
) -> dict[str, Any]:
    """Mastodon's reblog: an outer Status by the reposter, its own id (the Repost row's), no
    content of its own, the reposted post's Status as `reblog`. The reader's flags are those of
    the post, as Mastodon shows them on a reblog."""
    entity = dict(inner)
    entity.update(
        {
            "id": str(repost_id),
            "uri": f"{inner['uri']}#repost-{repost_id}",
            "created_at": iso(datetime.fromtimestamp(id_to_ms(repost_id) / 1000, UTC)),
            "account": account(reposter, ctx),
            "content": "",
            "mentions": [],
            "tags": [],
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "reblog": inner,
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
        }
    )
    return entity


def statuses(posts: Sequence[Post], ctx: Context, *, reblogs: bool = False) -> list[dict[str, Any]]:
    """Many Status entities, in a bounded number of queries whatever the page's size: the
    parents' authors of replies whose parent was not loaded (none on For You or All), the
    reader's likes and reposts (state_for, with a token user), and one query of accounts: the
    authors the page's query read in part, the reposters of wrapped posts and the mentioned
    accounts (each only when needed).

    `reblogs` (For You): a post that is there because the reader or someone they hear reposted
    it (the "Reposted by" line of the page) is shown as a reblog by that reposter."""
    ctx.state = (
        state_for(ctx.reader, [post.id for post in posts], reposters=reblogs)
        if ctx.reader
        else NO_STATE
    )
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
    reposters = _load_accounts(posts, ctx)
    shown = []
    for post in posts:
        entity = status(post, ctx)
        wrapped = ctx.state.reposts.get(post.id)
        if wrapped is not None and wrapped[1] in reposters:
            entity = reblog(post, entity, wrapped[0], reposters[wrapped[1]], ctx)
        shown.append(entity)
    return shown


def _load_accounts(posts: Sequence[Post], ctx: Context) -> dict[int, User]:
    """One query for every account the page shows and did not load whole: the Account entity
    shows counters, dates and the bio, which the pages' card lists leave unread
    (posts.selectors.with_card_authors), so such authors are read again whole (instead of one
    query per deferred column and post); the reposters of wrapped posts; the mentioned accounts'
    ids (by name: Post.mention_names). Returns the reposters by id."""
    partial = {
        post.author_id
        for post in posts
        if post.author_id is not None
        and _author_field.is_cached(post)
        and post.author is not None
        and post.author.get_deferred_fields()
    }
    reader = ctx.reader
    reposter_ids = {reposter_id for _, reposter_id in ctx.state.reposts.values()}
    reposters: dict[int, User] = {}
    if reader is not None and reader.id in reposter_ids:
        reposters[reader.id] = reader
    wanted = partial | (reposter_ids - reposters.keys())
    # The names as post_create stored them: the accounts' own spelling (usernames do not
    # change), so the plain unique index of usernames finds them.
    names = {
        name
        for post in posts
        for name in post.mention_names.split()
        if name.lower() not in ctx.mentioned_ids
    }
    if not wanted and not names:
        return reposters
    whole = {}
    for user in User.objects.filter(Q(id__in=wanted) | Q(username__in=names)):
        if user.id in wanted:
            whole[user.id] = user
        if user.username in names:
            ctx.mentioned_ids[user.username.lower()] = user.id
    for post in posts:
        if post.author_id in partial and post.author_id in whole:
            post.author = whole[post.author_id]
    reposters.update((i, whole[i]) for i in reposter_ids if i in whole)
    return reposters


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
