"""Feed pages. Each asks one selector for a page and renders it; htmx "load more" gets the page
fragment only, and the same link works as a plain link without JavaScript."""

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from microblog.accounts.http import AuthedHttpRequest
from microblog.core.pagination import Page, parse_cursor
from microblog.interactions import selectors as interactions
from microblog.posts.forms import PostForm
from microblog.posts.models import Post
from microblog.timelines import selectors


def render_feed(
    request: HttpRequest,
    template: str,
    page: Page[Post],
    context: dict[str, Any] | None = None,
    *,
    reposted_by: bool = False,
) -> HttpResponse:
    """A page of posts, with the reader's likes and reposts of them (one query) and, with
    `reposted_by` (For You), who of those they hear reposted each."""
    context = {"page": page, **(context or {})}
    if request.user.is_authenticated:
        ids = [post.id for post in page.items]
        context["interactions"] = interactions.state_for(request.user, ids, reposters=reposted_by)
    if request.headers.get("HX-Request"):
        response = render(request, "timelines/_page.html", context)
    else:
        response = render(request, template, context)
    response["Vary"] = "HX-Request, Cookie"
    return response


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    cursor = parse_cursor(request.GET.get("cursor"))
    if not request.user.is_authenticated:
        return render_feed(
            request, "timelines/feed.html", selectors.everyone(request.user, cursor), {"tab": "all"}
        )
    # `?since=<post id>`: the posts newer than it (the "N new posts" button of live updates).
    since = parse_cursor(request.GET.get("since"))
    return render_feed(
        request,
        "timelines/feed.html",
        selectors.for_you(request.user, cursor)
        if since is None
        else selectors.for_you_since(request.user, since),
        {"tab": "for_you", "form": PostForm(), "stream_url": settings.STREAM_PUBLIC_URL},
        reposted_by=True,
    )


@login_required
@require_safe
def following(request: AuthedHttpRequest) -> HttpResponse:
    cursor = parse_cursor(request.GET.get("cursor"))
    since = parse_cursor(request.GET.get("since"))
    return render_feed(
        request,
        "timelines/feed.html",
        selectors.following(request.user, cursor)
        if since is None
        else selectors.following_since(request.user, since),
        {"tab": "following", "form": PostForm(), "stream_url": settings.STREAM_PUBLIC_URL},
    )


@require_safe
def everyone(request: HttpRequest) -> HttpResponse:
    cursor = parse_cursor(request.GET.get("cursor"))
    context: dict[str, Any] = {"tab": "all"}
    if request.user.is_authenticated:
        context["form"] = PostForm()
    return render_feed(
        request, "timelines/feed.html", selectors.everyone(request.user, cursor), context
    )
