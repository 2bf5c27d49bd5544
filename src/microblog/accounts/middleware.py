from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone


class LastSeenMiddleware:
    """Records when a signed-in user was last seen, at most once per LAST_SEEN_UPDATE_SECONDS.

    The fan-out skips readers not seen for a while and rebuilds their feed when they come back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            now = timezone.now()
            interval = timedelta(seconds=settings.LAST_SEEN_UPDATE_SECONDS)
            if user.last_seen_at is None or now - user.last_seen_at > interval:
                from microblog.accounts.services import user_mark_seen

                user_mark_seen(user=user, now=now)
        return self.get_response(request)
