"""The tag page (`/tags/<name>`) and the trending page (`/tags`)."""

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.views.decorators.http import require_safe

from microblog.core.errors import NotFound
from microblog.core.jinja import tag_path
from microblog.core.pagination import parse_cursor
from microblog.core.text import HASHTAG_MAX_LENGTH, hashtag_name
from microblog.tags import selectors

NOT_A_TAG = (
    "That is not a hashtag: a tag is # and then up to {limit} letters, digits or underscores, "
    "with at least one letter."
)
NO_SUCH_TAG = "No post carries #{name} yet."


@require_safe
def tag(request: HttpRequest, name: str) -> HttpResponse:
    # The raw name is checked before any query: at most a tag's length (plus a leading "#"),
    # no NUL or control characters (hashtag_name accepts tag characters only).
    raw = name[1:] if name.startswith("#") else name
    normal = hashtag_name(raw) if len(raw) <= HASHTAG_MAX_LENGTH else None
    if normal is None:
        raise NotFound(NOT_A_TAG.format(limit=HASHTAG_MAX_LENGTH), code="not_a_tag")
    if normal != name:
        # One address per tag: /tags/Python and /tags/%23python lead to /tags/python.
        query = request.META.get("QUERY_STRING", "")
        return HttpResponsePermanentRedirect(tag_path(normal) + ("?" + query if query else ""))
    cursor = parse_cursor(request.GET.get("cursor"))
    found = selectors.tag_named(normal)
    if found is None:
        raise NotFound(NO_SUCH_TAG.format(name=normal), code="unknown_tag")
    page = selectors.tag_posts(found, request.user, cursor)
    context = {"page": page, "tag": found, "tab": "tag"}
    if request.headers.get("HX-Request"):
        response = render(request, "timelines/_page.html", context)
    else:
        response = render(request, "tags/tag.html", context)
    response["Vary"] = "HX-Request, Cookie"
    return response


@require_safe
def trending(request: HttpRequest) -> HttpResponse:
    return render(request, "tags/trending.html", {"trends": selectors.trending()})
