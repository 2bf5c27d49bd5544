"""`/search?q=`: accounts by username prefix, hashtags by prefix, posts by words (cursor-paged).
Rate limited by the `searches` rule (ratelimit.ROUTE_RULES)."""

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from microblog.core.errors import Invalid
from microblog.core.pagination import parse_cursor
from microblog.search import query as search_query
from microblog.search import selectors
from microblog.tags import selectors as tags


@require_safe
def search(request: HttpRequest) -> HttpResponse:
    raw = request.GET.get("q", "")
    context: dict[str, Any] = {"q": raw, "tab": "search"}
    if not raw.strip():
        # No search yet: the form, and what is trending.
        context["trends"] = tags.trending()
        return render(request, "search/search.html", context)
    try:
        parsed = search_query.parse(raw)
    except Invalid as error:
        # The form again with what was typed and what to change.
        context["error"] = error.message
        return render(request, "search/search.html", context, status=400)
    cursor = parse_cursor(request.GET.get("cursor"))
    page = selectors.posts(parsed, request.user, cursor) if parsed.posts_wanted else None
    context.update(
        query=parsed,
        page=page,
        page_params=urlencode({"q": raw}) + "&",
        # Accounts and tags head the first page only; "load more" pages add posts.
        accounts=selectors.accounts(parsed, request.user) if cursor is None else [],
        tags=selectors.hashtags(parsed) if cursor is None else [],
    )
    if request.headers.get("HX-Request") and page is not None:
        response = render(request, "timelines/_page.html", context)
    else:
        response = render(request, "search/search.html", context)
    response["Vary"] = "HX-Request, Cookie"
    return response
