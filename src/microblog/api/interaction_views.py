"""The client API's likes and reposts (Mastodon's favourites and reblogs): favourite,
unfavourite, reblog, unreblog, a status's favourited_by / reblogged_by, and the token user's
favourites. Writes go through interactions.services (the only doors); who may see a post is
asked as for GET /api/v1/statuses/:id (views._visible_post), and a post whose author blocks the
reader is not found, as Mastodon answers."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from microblog.accounts.models import User
from microblog.api import serializers, views
from microblog.api.auth import token_user
from microblog.api.pagination import collect, link_header, list_params
from microblog.api.serializers import Context
from microblog.api.views import NO_SUCH_STATUS, _visible_post, ok
from microblog.core.errors import NotAllowed, NotFound
from microblog.interactions import selectors, services
from microblog.interactions.models import Like, Repost
from microblog.posts.models import Post
from microblog.timelines.visibility import blocked_ids

Action = Callable[..., bool]


def _interactable(request: HttpRequest, status_id: int) -> Post:
    """The post `status_id` names, if the reader may see it and its author does not block them.
    A reblog's id (a Repost row's, serializers.reblog) names the reblogged post, as on
    Mastodon, where favouriting or listing a reblog acts on the original."""
    try:
        post = _visible_post(request, status_id)
    except NotFound:
        reposted = Repost.objects.filter(id=status_id).values_list("post_id", flat=True).first()
        if reposted is None:
            raise
        post = _visible_post(request, reposted)
    if getattr(post, "author_blocks_viewer", False):
        raise NotFound(NO_SUCH_STATUS)
    return post


def _act(request: HttpRequest, status_id: int, action: Action) -> Post:
    """Runs one interactions service on a post the reader may see; answers the post as it is
    after it (its counters moved)."""
    post_id = _interactable(request, status_id).id
    try:
        action(user=token_user(request), post_id=post_id)
    except NotAllowed:
        # Its author blocks the reader (changed since the read above): not found to them.
        raise NotFound(NO_SUCH_STATUS) from None
    return _visible_post(request, post_id)


def _status(request: HttpRequest, post: Post) -> HttpResponse:
    return ok(serializers.statuses([post], Context.of(request))[0])


def status_favourite(request: HttpRequest, status_id: int) -> HttpResponse:
    return _status(request, _act(request, status_id, services.like_create))


def status_unfavourite(request: HttpRequest, status_id: int) -> HttpResponse:
    return _status(request, _act(request, status_id, services.like_delete))


def status_reblog(request: HttpRequest, status_id: int) -> HttpResponse:
    """Reposts; answers the reblog (its outer Status by the reader), as Mastodon does. A reply
    cannot be reposted here: 422 with the reason."""
    post = _act(request, status_id, services.repost_create)
    user = token_user(request)
    ctx = Context.of(request)
    inner = serializers.statuses([post], ctx)[0]
    repost = Repost.objects.filter(user_id=user.id, post_id=post.id).values_list("id").first()
    if repost is None:  # undone by another request meanwhile: the post as it is
        return ok(inner)
    return ok(serializers.reblog(post, inner, repost[0], user, ctx))


def status_unreblog(request: HttpRequest, status_id: int) -> HttpResponse:
    """Undoes a repost; answers the post (reblogged false)."""
    return _status(request, _act(request, status_id, services.repost_delete))


def _accounts_page(
    request: HttpRequest, rows: list[Like] | list[Repost], limit: int
) -> HttpResponse:
    """Accounts of likes or reposts, paged on the like's or repost's id (the rows' order)."""
    ctx = Context.of(request)
    response = ok([serializers.account(row.user, ctx) for row in rows])
    return link_header(request, response, rows, limit=limit, full=len(rows) >= limit, prev=False)


def status_favourited_by(request: HttpRequest, status_id: int) -> HttpResponse:
    post = _interactable(request, status_id)
    params = list_params(request)
    likes = collect(
        lambda cursor: selectors.liked_by(post, request.user, cursor), params.max_id, params.limit
    )
    return _accounts_page(request, likes, params.limit)


def status_reblogged_by(request: HttpRequest, status_id: int) -> HttpResponse:
    post = _interactable(request, status_id)
    params = list_params(request)
    reposts = collect(
        lambda cursor: selectors.reposted_by(post, request.user, cursor),
        params.max_id,
        params.limit,
    )
    return _accounts_page(request, reposts, params.limit)


def favourites(request: HttpRequest) -> HttpResponse:
    """The token user's liked posts, newest like first (the Likes tab's rule: likes_of), paged
    on the like's id as Mastodon pages favourites: the Link headers carry like ids, which are
    not the statuses' ids (a client must follow the links)."""
    user: User = token_user(request)
    params = list_params(request)
    likes = collect(lambda cursor: selectors.likes_of(user, cursor), params.max_id, params.limit)
    ctx = Context.of(request)
    response = ok(serializers.statuses([like.post for like in likes], ctx))
    # No "prev" link: likes are read older-first from a like id only (likes_of).
    full = len(likes) >= params.limit
    return link_header(request, response, likes, limit=params.limit, full=full, prev=False)


# --- a reblog by its own id -------------------------------------------------------------------


def _reblog(request: HttpRequest, repost_id: int) -> dict[str, object]:
    """The reblog wrapper whose outer id is `repost_id` (serializers.reblog), if the reader may
    see the reposted post and does not block the reposter; else not found."""
    repost = Repost.objects.select_related("user").filter(id=repost_id).first()
    if repost is None or not repost.user.is_active:
        raise NotFound(NO_SUCH_STATUS)
    reader = request.user
    if isinstance(reader, User) and blocked_ids(reader.id).filter(blocked_id=repost.user_id):
        raise NotFound(NO_SUCH_STATUS)
    post = _interactable(request, repost.post_id)
    ctx = Context.of(request)
    inner = serializers.statuses([post], ctx)[0]
    return serializers.reblog(post, inner, repost.id, repost.user, ctx)


def status_detail(request: HttpRequest, status_id: int) -> HttpResponse:
    """GET /api/v1/statuses/:id: a post, or a reblog by its outer id (the id the home timeline
    showed it under), as Mastodon answers both."""
    try:
        return views.status_detail(request, status_id)
    except NotFound:
        return ok(_reblog(request, status_id))


def status_delete(request: HttpRequest, status_id: int) -> HttpResponse:
    """DELETE /api/v1/statuses/:id: deletes a post, or, given the outer id of the reader's own
    reblog, undoes that repost (through interactions.services, as POST :id/unreblog) and answers
    the reblog as it was, as Mastodon does. Another account's reblog is not found."""
    try:
        return views.status_delete(request, status_id)
    except NotFound:
        user = token_user(request)
        if not Repost.objects.filter(id=status_id, user_id=user.id).exists():
            raise
        entity = _reblog(request, status_id)
        reblogged = entity["reblog"]
        assert isinstance(reblogged, dict)
        services.repost_delete(user=user, post_id=int(reblogged["id"]))
        entity["text"] = ""
        return ok(entity)
