from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from microblog.accounts.http import AuthedHttpRequest
from microblog.core.pagination import parse_cursor
from microblog.notifications import selectors, services


@login_required
@require_safe
def notifications(request: AuthedHttpRequest) -> HttpResponse:
    """The reader's notifications, newest first. Seeing the first page marks everything up to
    its newest notification read (those shown stay marked "new" on this page)."""
    cursor = parse_cursor(request.GET.get("cursor"))
    page = selectors.notifications_page(user_id=request.user.id, cursor=cursor)
    if cursor is None and page.items and getattr(page.items[0], "unread", False):
        services.notifications_mark_seen(user_id=request.user.id, seen_id=page.items[0].sort_id)
        request.user.unread_notifications = 0  # type: ignore[attr-defined]  # the top bar, now
    template = (
        "notifications/_page.html"
        if request.headers.get("HX-Request")
        else "notifications/notifications.html"
    )
    return render(request, template, {"page": page})
