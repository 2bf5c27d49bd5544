from collections.abc import Callable

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed

from microblog.core.views import method_not_allowed, page_not_found


class ErrorPageMiddleware:
    """Gives Django's bare 405 responses (from require_POST and friends) a page that explains,
    and answers a view's 404 (a deleted or hidden post, an unknown account) with our 404 page
    under DEBUG too: Django's technical 404 would list every URL pattern. Addresses that match
    no pattern keep the technical page in development, where it helps."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            return method_not_allowed(request, response["Allow"])
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Http404):
            return page_not_found(request, exception)
        return None
