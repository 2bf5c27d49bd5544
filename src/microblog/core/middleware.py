from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from microblog.core.views import method_not_allowed


class ErrorPageMiddleware:
    """Gives Django's bare 405 responses (from require_POST and friends) a page that explains."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            return method_not_allowed(request, response["Allow"])
        return response
