from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from microblog.core.middleware import anonymous_unasked


class LastSeenMiddleware:
    """Records when a signed-in user was last seen, at most once per LAST_SEEN_UPDATE_SECONDS.

    The fan-out skips readers not seen for a while and rebuilds their feed when they come back.
    Checked before the view, so a reader back after a long time gets this very page from the
    pull query (user_mark_seen moves their feed's horizon). A request without a session cookie
    (signed out) costs nothing here; an API request's user is its token's (not lazy).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if anonymous_unasked(request):
            return self.get_response(request)  # signed out: no one to mark
        user = request.user
        if user.is_authenticated:
            now = timezone.now()
            interval = timedelta(seconds=settings.LAST_SEEN_UPDATE_SECONDS)
            if user.last_seen_at is None or now - user.last_seen_at > interval:
                from microblog.accounts.services import user_mark_seen

                user_mark_seen(user=user, now=now)
        return self.get_response(request)
