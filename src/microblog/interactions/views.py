"""Like / unlike and repost / undo (htmx and plain forms), a post's "Liked by" page, and one's
own Likes tab.

The buttons are small forms: without JavaScript they post and come back to the page they were
on (`next`) with a message; with htmx the answer is the card's buttons again and its counts,
swapped in place (`interactions/_buttons.html`), a refusal shown beside the buttons."""

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from microblog.accounts.http import AuthedHttpRequest
from microblog.core.errors import NotFound, ServiceError
from microblog.core.http import safe_next
from microblog.core.pagination import parse_cursor
from microblog.interactions import selectors, services
from microblog.posts import selectors as post_selectors
from microblog.posts.models import Post
from microblog.timelines.visibility import can_see

Action = Callable[..., bool]

DONE = {
    "like": "You liked this post.",
    "unlike": "You no longer like this post.",
    "repost": "You reposted this post: it is in your followers' feeds.",
    "unrepost": "Your repost was undone.",
}


def _act(request: AuthedHttpRequest, post_id: int, verb: str, action: Action) -> HttpResponse:
    error = ""
    try:
        changed = action(user=request.user, post_id=post_id)
    except NotFound:
        if not request.headers.get("HX-Request"):
            raise  # the 404 page: nothing to go back to
        error = services.POST_MISSING
        changed = False
    except ServiceError as refusal:
        error = refusal.message
        changed = False
    if request.headers.get("HX-Request"):
        post = Post.objects.filter(id=post_id).first()
        # Nothing of a post the reader may not see (its counts) goes back to them.
        if post is None or post.is_deleted or not can_see(request.user, post):
            return render(request, "interactions/_gone.html", {"error": error})
        state = selectors.state_for(request.user, [post.id])
        context = {"post": post, "interactions": state, "error": error}
        return render(request, "interactions/_buttons.html", context)
    if error:
        messages.error(request, error)
    elif changed:
        messages.success(request, DONE[verb])
    return redirect(safe_next(request, f"/posts/{post_id}"))


@login_required
@require_POST
def like(request: AuthedHttpRequest, post_id: int) -> HttpResponse:
    return _act(request, post_id, "like", services.like_create)


@login_required
@require_POST
def unlike(request: AuthedHttpRequest, post_id: int) -> HttpResponse:
    return _act(request, post_id, "unlike", services.like_delete)


@login_required
@require_POST
def repost(request: AuthedHttpRequest, post_id: int) -> HttpResponse:
    return _act(request, post_id, "repost", services.repost_create)


@login_required
@require_POST
def unrepost(request: AuthedHttpRequest, post_id: int) -> HttpResponse:
    return _act(request, post_id, "unrepost", services.repost_delete)


@require_safe
def liked_by(request: HttpRequest, post_id: int) -> HttpResponse:
    """A post's "Liked by" list, for those who may open the post's page."""
    post = post_selectors.post_for_display(post_id, request.user)
    if post is None or post.is_deleted or not can_see(request.user, post):
        raise Http404("No such post")
    page = selectors.liked_by(post, request.user, parse_cursor(request.GET.get("cursor")))
    context = {"post": post, "page": page}
    if request.headers.get("HX-Request"):
        return render(request, "interactions/_likers_page.html", context)
    return render(request, "interactions/liked_by.html", context)


@login_required
@require_safe
def likes(request: AuthedHttpRequest, username: str) -> HttpResponse:
    """One's own Likes tab (likes are private: another account's tab is not found)."""
    # Usernames are ASCII, unique ignoring case: no query needed to know it is one's own.
    if username.casefold() != request.user.username.casefold():
        raise Http404("No such page")
    page = selectors.likes_of(request.user, parse_cursor(request.GET.get("cursor")))
    state = selectors.state_for(request.user, [like.post_id for like in page.items])
    context = {"profile_user": request.user, "page": page, "interactions": state, "tab": "likes"}
    if request.headers.get("HX-Request"):
        response = render(request, "interactions/_likes_page.html", context)
    else:
        response = render(request, "interactions/likes.html", context)
    response["Vary"] = "HX-Request, Cookie"
    return response
