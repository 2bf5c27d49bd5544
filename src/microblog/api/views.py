"""The Mastodon-compatible client API's endpoints: check input, call one service or selector,
shape the entity (serializers). Access (token, user, scope) is declared per endpoint in urls.py
through api.auth.api_view."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse

from microblog import ratelimit
from microblog.accounts import services as account_services
from microblog.accounts.models import User
from microblog.api import serializers
from microblog.api.auth import error, token_user
from microblog.api.pagination import (
    ListParams,
    collect,
    feed_positions,
    link_header,
    list_params,
)
from microblog.api.params import body, query
from microblog.api.serializers import Context
from microblog.api.services import status_create
from microblog.core.errors import Invalid, NotFound
from microblog.core.pagination import Page
from microblog.follows import selectors as follow_selectors
from microblog.follows import services as follow_services
from microblog.moderation import selectors as moderation_selectors
from microblog.moderation import services as moderation_services
from microblog.moderation.models import Reason
from microblog.posts import selectors as post_selectors
from microblog.posts import services as post_services
from microblog.posts.models import CONTENT_MAX_LENGTH, Post
from microblog.timelines import selectors as timelines
from microblog.timelines.visibility import can_see

NO_SUCH_ACCOUNT = "Record not found"
NO_SUCH_STATUS = "Record not found"


def ok(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, safe=False)


def _account_or_404(account_id: int) -> User:
    user = User.objects.filter(id=account_id, is_active=True).first()
    if user is None:
        raise NotFound(NO_SUCH_ACCOUNT)
    return user


# --- accounts --------------------------------------------------------------------------------


def verify_credentials(request: HttpRequest) -> HttpResponse:
    return ok(serializers.credential_account(token_user(request), Context.of(request)))


def update_credentials(request: HttpRequest) -> HttpResponse:
    user = token_user(request)
    params = body(request)
    if params.given("note"):
        user = account_services.user_update_profile(user=user, description=params.text("note"))
    # display_name, avatar, header, fields, locked, bot...: not part of our accounts; ignored as
    # Mastodon ignores what it does not know.
    return ok(serializers.credential_account(user, Context.of(request)))


def account_lookup(request: HttpRequest) -> HttpResponse:
    acct = query(request).text("acct").strip().removeprefix("@")
    username, _, domain = acct.partition("@")
    if not username or (domain and domain != request.get_host()):
        raise NotFound(NO_SUCH_ACCOUNT)
    user = User.objects.filter(username__iexact=username, is_active=True).first()
    if user is None:
        raise NotFound(NO_SUCH_ACCOUNT)
    return ok(serializers.account(user, Context.of(request)))


def account_detail(request: HttpRequest, account_id: int) -> HttpResponse:
    return ok(serializers.account(_account_or_404(account_id), Context.of(request)))


def account_statuses(request: HttpRequest, account_id: int) -> HttpResponse:
    """A profile's posts. Replies are not on profiles here, so `exclude_replies` changes nothing;
    there are no media, pins or reposts, so `only_media` and `pinned` are answered empty."""
    author = _account_or_404(account_id)
    params = list_params(request)
    options = query(request)
    if options.flag("only_media") or options.flag("pinned") or options.text("tagged"):
        return ok([])
    viewer = request.user
    posts = timeline_posts(
        params,
        newer=lambda: timelines.profile_query(author, viewer),
        older=lambda cursor: timelines.profile(author, viewer, cursor),
    )
    return posts_page(request, posts, params.limit)


def _users_page(request: HttpRequest, users: list[User], limit: int) -> HttpResponse:
    ctx = Context.of(request)
    response = ok([serializers.account(user, ctx) for user in users])
    return link_header(request, response, users, limit=limit, full=len(users) >= limit, prev=False)


def account_followers(request: HttpRequest, account_id: int) -> HttpResponse:
    user = _account_or_404(account_id)
    params = list_params(request)
    users = collect(
        lambda cursor: follow_selectors.followers(user, cursor), params.max_id, params.limit
    )
    return _users_page(request, users, params.limit)


def account_following(request: HttpRequest, account_id: int) -> HttpResponse:
    user = _account_or_404(account_id)
    params = list_params(request)
    users = collect(
        lambda cursor: follow_selectors.followed(user, cursor), params.max_id, params.limit
    )
    return _users_page(request, users, params.limit)


def _relationship(request: HttpRequest, other: User) -> HttpResponse:
    viewer = token_user(request)
    rel = moderation_selectors.relationships(viewer, [other.id])[other.id]
    return ok(serializers.relationship(other.id, rel))


def account_follow(request: HttpRequest, account_id: int) -> HttpResponse:
    other = _account_or_404(account_id)
    follow_services.follow_create(follower=token_user(request), followed=other)
    return _relationship(request, other)


def account_unfollow(request: HttpRequest, account_id: int) -> HttpResponse:
    other = _account_or_404(account_id)
    follow_services.follow_delete(follower=token_user(request), followed=other)
    return _relationship(request, other)


def account_block(request: HttpRequest, account_id: int) -> HttpResponse:
    other = _account_or_404(account_id)
    moderation_services.block_create(blocker=token_user(request), blocked=other)
    return _relationship(request, other)


def account_unblock(request: HttpRequest, account_id: int) -> HttpResponse:
    other = _account_or_404(account_id)
    moderation_services.block_delete(blocker=token_user(request), blocked=other)
    return _relationship(request, other)


def account_mute(request: HttpRequest, account_id: int) -> HttpResponse:
    other = _account_or_404(account_id)
    moderation_services.mute_create(muter=token_user(request), muted=other)
    return _relationship(request, other)


def account_unmute(request: HttpRequest, account_id: int) -> HttpResponse:
    other = _account_or_404(account_id)
    moderation_services.mute_delete(muter=token_user(request), muted=other)
    return _relationship(request, other)


def relationships(request: HttpRequest) -> HttpResponse:
    wanted = query(request).ids("id")
    found = moderation_selectors.relationships(token_user(request), wanted)
    return ok([serializers.relationship(i, found[i]) for i in dict.fromkeys(wanted) if i in found])


def blocks(request: HttpRequest) -> HttpResponse:
    """The accounts the user blocks, most recent first (the first `limit`; not paginated)."""
    params = list_params(request)
    users = moderation_selectors.blocked_users(token_user(request))[: params.limit]
    ctx = Context.of(request)
    return ok([serializers.account(user, ctx) for user in users])


def mutes(request: HttpRequest) -> HttpResponse:
    params = list_params(request)
    users = moderation_selectors.muted_users(token_user(request))[: params.limit]
    ctx = Context.of(request)
    return ok([serializers.account(user, ctx) for user in users])


# --- statuses --------------------------------------------------------------------------------

IDEMPOTENCY_KEY_MAX_LENGTH = 200


def status_create_view(request: HttpRequest) -> HttpResponse:
    params = body(request)
    if params.texts("media_ids"):
        raise Invalid("Media attachments are not supported here")
    if params.given("poll[options]") or params.given("poll"):
        raise Invalid("Polls are not supported here")
    if params.text("scheduled_at"):
        raise Invalid("Scheduled posts are not supported here")
    if params.text("spoiler_text").strip():
        raise Invalid("Content warnings are not supported here: every post is shown as written")
    visibility = params.text("visibility", "public")
    if visibility not in {"public", "unlisted"}:
        raise Invalid("Every post here is public: visibility must be public")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH):
        raise Invalid(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters")
    post = status_create(
        author=token_user(request),
        content=params.text("status"),
        parent_id=params.id("in_reply_to_id"),
        idempotency_key=key,
    )
    return ok(serializers.statuses([post], Context.of(request))[0])


def _visible_post(request: HttpRequest, status_id: int) -> Post:
    """A post the reader may open, not a deleted one's placeholder (posts.selectors and
    timelines.visibility decide)."""
    post = post_selectors.post_for_display(status_id, request.user)
    if post is None or post.is_deleted or not can_see(request.user, post):
        raise NotFound(NO_SUCH_STATUS)
    return post


def status_detail(request: HttpRequest, status_id: int) -> HttpResponse:
    post = _visible_post(request, status_id)
    return ok(serializers.statuses([post], Context.of(request))[0])


def status_delete(request: HttpRequest, status_id: int) -> HttpResponse:
    user = token_user(request)
    post = _visible_post(request, status_id)
    entity = serializers.statuses([post], Context.of(request))[0]
    post_services.post_delete(post=post, actor=user)
    # Mastodon answers with the deleted status and its source text, for "delete and redraft".
    entity["text"] = post.content
    return ok(entity)


def status_context(request: HttpRequest, status_id: int) -> HttpResponse:
    """Ancestors (root first) and descendants (depth first) as the thread page shows them: our
    depth and breadth limits, nothing withheld from the reader, no placeholders."""
    post = _visible_post(request, status_id)
    thread = post_selectors.thread(post, request.user)
    ancestors = [p for p in thread.ancestors if not p.is_deleted and p.id not in thread.withheld]
    descendants: list[Post] = []

    def walk(nodes: list[post_selectors.ReplyNode]) -> None:
        for node in nodes:
            if not node.post.is_deleted:
                descendants.append(node.post)
            walk(node.children)

    walk(list(thread.replies.items))
    ctx = Context.of(request)
    return ok(
        {
            "ancestors": serializers.statuses(ancestors, ctx),
            "descendants": serializers.statuses(descendants, ctx),
        }
    )


# --- timelines -------------------------------------------------------------------------------


def posts_page(
    request: HttpRequest, posts: list[Post], limit: int, *, reblogs: bool = False
) -> HttpResponse:
    response = ok(serializers.statuses(posts, Context.of(request), reblogs=reblogs))
    # The links page on the posts' ids, which are the timeline's order, also for a post shown
    # as a reblog (whose outer id is its repost's: pagination.feed_positions).
    return link_header(request, response, posts, limit=limit, full=len(posts) >= limit)


def timeline_posts(
    params: ListParams,
    *,
    newer: Callable[[], QuerySet[Post]],
    older: Callable[[int | None], Page[Post]],
) -> list[Post]:
    """A timeline's posts for Mastodon's list parameters: with since_id / min_id, those newer
    than it from the timeline's query (the closest first for min_id); otherwise pages of its
    selector down from max_id."""
    if params.newer is not None:
        return timelines.newer_than(
            newer(),
            params.newer,
            before=params.max_id,
            limit=params.limit,
            closest_first=params.min_id is not None,
        )
    return collect(older, params.max_id, params.limit)


def timeline_home(request: HttpRequest) -> HttpResponse:
    """For You: the reader's own posts and those of the people they follow, and the posts they
    or those people reposted, shown as reblogs (serializers.reblog)."""
    user = token_user(request)
    params = feed_positions(list_params(request))
    posts = timeline_posts(
        params,
        # The pull query: the same rows as the stored feed (timelines.selectors.for_you_since).
        newer=lambda: timelines.for_you_pull_query(user),
        older=lambda cursor: timelines.for_you(user, cursor, whole_authors=True),
    )
    return posts_page(request, posts, params.limit, reblogs=True)


def timeline_public(request: HttpRequest) -> HttpResponse:
    """All: every top-level post, newest first. `local` changes nothing (every account is
    local); `remote` and `only_media` are answered empty."""
    params = list_params(request)
    options = query(request)
    if options.flag("remote") or options.flag("only_media"):
        return ok([])
    viewer = request.user
    posts = timeline_posts(
        params,
        newer=lambda: timelines.everyone_query(viewer),
        older=lambda cursor: timelines.everyone(viewer, cursor),
    )
    return posts_page(request, posts, params.limit)


# --- reports ---------------------------------------------------------------------------------

# Mastodon's report categories onto our reasons.
CATEGORY_REASONS = {"spam": Reason.SPAM, "violation": Reason.OTHER, "legal": Reason.OTHER}


def report_create(request: HttpRequest) -> HttpResponse:
    """Reports are about posts here: each of `status_ids` is reported (one report per post, as
    on the report page), rate limited like the page."""
    reporter = token_user(request)
    params = body(request)
    target = _account_or_404(params.id("account_id", required=True) or 0)
    status_ids = list(dict.fromkeys(params.ids("status_ids")))
    if not status_ids:
        raise Invalid("Reports here are about posts: give status_ids")
    category = params.text("category", "other")
    reason = CATEGORY_REASONS.get(category, Reason.OTHER)
    comment = params.text("comment")
    posts = {p.id: p for p in Post.objects.filter(id__in=status_ids, author_id=target.id)}
    if len(posts) != len(status_ids):
        raise Invalid("Every status in status_ids must be by account_id")
    ratelimit.enforce(request, "reports")
    reports = [
        moderation_services.report_create(
            reporter=reporter, post_id=post_id, reason=reason, text=comment
        )
        for post_id in status_ids
    ]
    first = reports[0]
    return ok(
        {
            "id": str(first.id),
            "action_taken": False,
            "action_taken_at": None,
            "category": category if category in {"spam", "violation", "legal"} else "other",
            "comment": first.text,
            "forwarded": False,
            "created_at": serializers.iso(first.created_at),
            "status_ids": [str(i) for i in status_ids],
            "rule_ids": None,
            "target_account": serializers.account(target, Context.of(request)),
        }
    )


# --- instance and discovery ------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import version

    return f"{settings.API_MASTODON_VERSION} (compatible; microblog {version('microblog')})"


def _limits() -> dict[str, Any]:
    return {
        "max_characters": CONTENT_MAX_LENGTH,
        "max_media_attachments": 0,
        "characters_reserved_per_url": 0,
    }


def _streaming_url(request: HttpRequest) -> str:
    """Where the streaming API is (stream/api.py): API_STREAMING_URL, or this site's origin as a
    WebSocket address, as Mastodon gives it (clients that stream over HTTP, as Mastodon.py does,
    read its host; the same origin routes /api/v1/streaming to the streaming process)."""
    if settings.API_STREAMING_URL:
        return str(settings.API_STREAMING_URL)
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}"


def instance_v1(request: HttpRequest) -> HttpResponse:
    ctx = Context.of(request)
    return ok(
        {
            "uri": ctx.domain,
            "title": settings.API_INSTANCE_TITLE,
            "short_description": "A microblog",
            "description": "A microblog",
            "email": "",
            "version": _version(),
            "urls": {"streaming_api": _streaming_url(request)},
            "stats": {
                "user_count": User.objects.filter(is_active=True).count(),
                "status_count": Post.objects.filter(is_deleted=False).count(),
                "domain_count": 0,
            },
            "thumbnail": None,
            "languages": ["en"],
            "registrations": True,
            "approval_required": False,
            "invites_enabled": False,
            "configuration": {
                "statuses": _limits(),
                "media_attachments": {"supported_mime_types": []},
                "polls": {"max_options": 0},
                "accounts": {"max_featured_tags": 0},
            },
            "contact_account": None,
            "rules": [],
        }
    )


def instance_v2(request: HttpRequest) -> HttpResponse:
    ctx = Context.of(request)
    return ok(
        {
            "domain": ctx.domain,
            "title": settings.API_INSTANCE_TITLE,
            "version": _version(),
            "source_url": "",
            "description": "A microblog",
            "usage": {"users": {"active_month": 0}},
            "thumbnail": {"url": f"{ctx.base}{settings.STATIC_URL}api/header.png"},
            "languages": ["en"],
            "configuration": {
                "urls": {"streaming": _streaming_url(request)},
                "accounts": {"max_featured_tags": 0, "max_pinned_statuses": 0},
                "statuses": _limits(),
                "media_attachments": {"supported_mime_types": []},
                "polls": {"max_options": 0},
                "translation": {"enabled": False},
            },
            "registrations": {"enabled": True, "approval_required": False, "message": None},
            "api_versions": {"mastodon": 2},
            "contact": {"email": "", "account": None},
            "rules": [],
        }
    )


def nodeinfo_links(request: HttpRequest) -> HttpResponse:
    return ok(
        {
            "links": [
                {
                    "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                    "href": request.build_absolute_uri("/nodeinfo/2.0"),
                }
            ]
        }
    )


def nodeinfo(request: HttpRequest) -> HttpResponse:
    from importlib.metadata import version

    return ok(
        {
            "version": "2.0",
            "software": {"name": "microblog", "version": version("microblog")},
            "protocols": [],
            "services": {"outbound": [], "inbound": []},
            "usage": {
                "users": {"total": User.objects.filter(is_active=True).count()},
                "localPosts": Post.objects.filter(is_deleted=False).count(),
            },
            "openRegistrations": True,
            "metadata": {},
        }
    )


# --- what apps ask for on start-up and we do not have: the documented empty values -----------


def empty_list(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return ok([])


def empty_object(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return ok({})


def preferences(request: HttpRequest) -> HttpResponse:
    return ok(
        {
            "posting:default:visibility": "public",
            "posting:default:sensitive": False,
            "posting:default:language": None,
            "reading:expand:media": "default",
            "reading:expand:spoilers": False,
        }
    )


def not_found(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return error(404, "Record not found")
