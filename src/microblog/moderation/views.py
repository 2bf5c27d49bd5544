"""Reporting posts, blocking and muting accounts, and the staff review queue."""

from collections.abc import Callable
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from microblog import ratelimit
from microblog.accounts.http import AuthedHttpRequest
from microblog.accounts.models import User
from microblog.core.errors import Invalid, ServiceError, add_to_form
from microblog.core.http import safe_next, staff_required
from microblog.core.jinja import post_path
from microblog.core.pagination import parse_cursor
from microblog.moderation import selectors, services
from microblog.moderation.forms import ReportForm
from microblog.moderation.models import Action
from microblog.posts import selectors as post_selectors
from microblog.posts.models import Post


def _reportable_post(request: HttpRequest, post_id: int) -> Post:
    post = post_selectors.post_for_display(post_id)
    if post is None or post.is_deleted or not selectors.can_see(request.user, post):
        raise Http404("No such post")
    return post


def _return_to(request: HttpRequest, post: Post) -> str:
    """Where the reporter goes back to: the page they opened the report form from (`next`,
    carried by the form, or the Referer on the first visit), if on this site; else the post."""
    fallback = post_path(post.id)
    if "next" in request.POST or "next" in request.GET:
        return safe_next(request, fallback)
    referer = urlsplit(request.headers.get("Referer", ""))
    if referer.netloc == request.get_host() and referer.path:
        came_from = referer.path + (f"?{referer.query}" if referer.query else "")
        if came_from != request.path:
            return came_from
    return fallback


@login_required
@require_http_methods(["GET", "POST"])
def report(request: AuthedHttpRequest, post_id: int) -> HttpResponse:
    reporter = request.user
    post = _reportable_post(request, post_id)
    back = _return_to(request, post)
    if post.author_id == reporter.id:
        messages.error(request, "You can't report your own post.")
        return redirect("post_detail", post_id=post.id)
    context: dict[str, object] = {"post": post, "back": back}
    if selectors.has_reported(reporter_id=reporter.id, post_id=post.id):
        return render(request, "moderation/report.html", {**context, "already_reported": True})
    form = ReportForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            ratelimit.enforce(request, "reports")
        except ratelimit.Throttled as refusal:
            form.add_error(None, ratelimit.message(refusal.decision))
            page = render(request, "moderation/report.html", {"post": post, "form": form})
            return ratelimit.throttled_form(page, refusal.decision)
        try:
            made = services.report_create(
                reporter=reporter,
                post_id=post.id,
                reason=form.cleaned_data["reason"],
                text=form.cleaned_data["text"],
            )
        except Invalid as error:
            add_to_form(form, error)  # the form again, with what was typed
        except ServiceError as error:
            messages.error(request, error.message)
            return redirect(back)
        else:
            messages.success(request, "Thank you. The moderators will review this post.")
            if not selectors.can_see(request.user, made.post) and back == post_path(post.id):
                back = "/"  # the report hid the post: its page would be a 404
            return redirect(back)
    status = 400 if form.is_bound else 200
    return render(request, "moderation/report.html", {**context, "form": form}, status=status)


def _account(username: str) -> User:
    return get_object_or_404(User, username__iexact=username)


def _act_on(
    request: AuthedHttpRequest, username: str, act: Callable[[User, User], bool], done: str
) -> HttpResponse:
    """Calls `act(signed-in user, account)`; says `done` when it changed something, the
    service's message when it refused; back to the profile (or a same-site `next`)."""
    target = _account(username)
    try:
        if act(request.user, target):
            messages.success(request, done.format(target.username))
    except ServiceError as error:
        messages.error(request, error.message)
    return redirect(safe_next(request, f"/@{target.username}"))


@login_required
@require_http_methods(["GET", "POST"])
def block(request: AuthedHttpRequest, username: str) -> HttpResponse:
    """GET: what blocking does, with the button; POST: block."""
    if request.method == "GET":
        return render(request, "moderation/block.html", {"target": _account(username)})
    return _act_on(
        request,
        username,
        lambda user, target: services.block_create(blocker=user, blocked=target),
        "You blocked {}.",
    )


@login_required
@require_POST
def unblock(request: AuthedHttpRequest, username: str) -> HttpResponse:
    return _act_on(
        request,
        username,
        lambda user, target: services.block_delete(blocker=user, blocked=target),
        "You unblocked {}.",
    )


@login_required
@require_POST
def mute(request: AuthedHttpRequest, username: str) -> HttpResponse:
    return _act_on(
        request,
        username,
        lambda user, target: services.mute_create(muter=user, muted=target),
        "You muted {}. Their posts leave your feeds.",
    )


@login_required
@require_POST
def unmute(request: AuthedHttpRequest, username: str) -> HttpResponse:
    return _act_on(
        request,
        username,
        lambda user, target: services.mute_delete(muter=user, muted=target),
        "You unmuted {}.",
    )


@staff_required
@require_safe
def queue(request: HttpRequest) -> HttpResponse:
    context = {
        "items": selectors.review_queue(),
        "waiting": selectors.queue_size(),
        "tab": "queue",
    }
    return render(request, "moderation/queue.html", context)


@staff_required
@require_safe
def hidden(request: HttpRequest) -> HttpResponse:
    page = selectors.hidden_posts(parse_cursor(request.GET.get("cursor")))
    return render(request, "moderation/hidden.html", {"page": page, "tab": "hidden"})


@staff_required
@require_safe
def log(request: HttpRequest) -> HttpResponse:
    page = selectors.audit_log(parse_cursor(request.GET.get("cursor")))
    return render(request, "moderation/log.html", {"page": page, "tab": "log"})


REVIEW_DONE = {
    Action.HIDE: "The post is hidden.",
    Action.RESTORE: "The post is visible again.",
    Action.DISMISS: "The reports were dismissed.",
}


@staff_required
@require_POST
def review(request: AuthedHttpRequest, post_id: int, action: str) -> HttpResponse:
    if action not in REVIEW_DONE:
        raise Http404("No such review action")
    try:
        services.review(staff=request.user, post_id=post_id, action=action)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, REVIEW_DONE[Action(action)])
    return redirect(safe_next(request, "/staff/moderation"))
