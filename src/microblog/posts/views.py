from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from microblog import ratelimit
from microblog.accounts.http import AuthedHttpRequest
from microblog.core.errors import ServiceError, add_to_form
from microblog.core.http import safe_next
from microblog.core.ids import parse_id
from microblog.core.pagination import parse_cursor
from microblog.interactions import selectors as interactions
from microblog.moderation.selectors import can_see
from microblog.posts import selectors, services
from microblog.posts.forms import PostForm
from microblog.posts.models import Post
from microblog.posts.services import (
    NOT_YOUR_POST,
    REPLY_BLOCKED,
    REPLY_TO_DELETED,
    post_delete_allowed,
)


def _get_post(request: HttpRequest, post_id: int) -> Post:
    post = selectors.post_for_display(post_id, request.user)
    # A deleted post has no page of its own; a hidden one is not found, except by its author
    # and staff.
    if post is None or post.is_deleted or not can_see(request.user, post):
        raise Http404("No such post")
    return post


def _refused(request: HttpRequest, form: PostForm, status: int = 400) -> HttpResponse:
    """The compose page again, with the text kept and the reason (a bad post, a missing parent,
    a limit). The replied-to post is shown only to those who may read it."""
    parent = None
    parent_id = parse_id(form.data.get("parent_id"))
    if parent_id is not None:
        parent = selectors.post_for_display(parent_id, request.user)
        if parent is not None and selectors.withheld_reason(parent, request.user) is not None:
            parent = None
    context = {"form": form, "parent": parent}
    return render(request, "posts/compose.html", context, status=status)


def _too_fast(request: HttpRequest, message: str) -> HttpResponse:
    form = PostForm(request.POST)  # bound: the page shows the text as typed
    form.add_error(None, message)
    return _refused(request, form)


@ratelimit.refusal_page(_too_fast)
@login_required
@require_POST
def create(request: AuthedHttpRequest) -> HttpResponse:
    form = PostForm(request.POST)
    if form.is_valid():
        parent_id = form.cleaned_data.get("parent_id")
        try:
            services.post_create(
                author=request.user,
                content=form.cleaned_data["content"],
                parent_id=parent_id,
            )
        except ServiceError as error:
            add_to_form(form, error)
        else:
            if parent_id:
                messages.success(request, "Your reply was posted.")
                return redirect("post_detail", post_id=parent_id)
            messages.success(request, "Your post was published.")
            return redirect(safe_next(request, "/"))
    # Shown again with the text kept, so nothing the user wrote is lost.
    return _refused(request, form)


@require_safe
def detail(request: HttpRequest, post_id: int) -> HttpResponse:
    post = selectors.post_for_display(post_id, request.user)
    # A hidden post is not found, except by its author and staff.
    if post is None or not can_see(request.user, post):
        raise Http404("No such post")
    cursor = parse_cursor(request.GET.get("cursor"))
    thread = selectors.thread(post, request.user, cursor)
    context = {
        "thread": thread,
        "post": post,
        "withheld": selectors.withheld_reason(post, request.user),
        # The reader's likes and reposts of every post on the page: one query.
        "interactions": interactions.state_for(request.user, _thread_post_ids(thread)),
    }
    if request.headers.get("HX-Request") and cursor is not None:
        return render(request, "posts/_replies_page.html", context)
    if request.user.is_authenticated:
        if post.is_deleted:
            context["reply_refused"] = REPLY_TO_DELETED
        elif getattr(post, "author_blocks_viewer", False):
            context["reply_refused"] = REPLY_BLOCKED
        else:
            context["form"] = PostForm(initial={"parent_id": post.id})
        context["stream_url"] = settings.STREAM_PUBLIC_URL  # new replies appear live
    return render(request, "posts/detail.html", context)


def _thread_post_ids(thread: selectors.Thread) -> list[int]:
    ids = [thread.post.id, *(ancestor.id for ancestor in thread.ancestors)]
    nodes = list(thread.replies.items)
    while nodes:
        node = nodes.pop()
        ids.append(node.post.id)
        nodes.extend(node.children)
    return ids


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: AuthedHttpRequest, post_id: int) -> HttpResponse:
    post = _get_post(request, post_id)
    if not post_delete_allowed(post=post, actor=request.user):
        messages.error(request, NOT_YOUR_POST)
        return render(request, "posts/delete.html", {"post": post, "allowed": False}, status=403)
    if request.method == "POST":
        services.post_delete(post=post, actor=request.user)
        messages.success(request, "Your post was deleted.")
        if post.parent_id:
            return redirect("post_detail", post_id=post.parent_id)
        return redirect("home")
    return render(request, "posts/delete.html", {"post": post, "allowed": True})
