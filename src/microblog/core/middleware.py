from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils.cache import patch_cache_control
from django.utils.functional import SimpleLazyObject, empty

from microblog.core.errors import ServiceError
from microblog.core.views import (
    method_not_allowed,
    page_not_found,
    payload_too_large,
    service_error_response,
)

# Requests that carry no body: what they announce is refused unread.
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def body_limit(method: str) -> int:
    """The largest body a route can use: none on GET and HEAD, DATA_UPLOAD_MAX_MEMORY_SIZE (no
    route takes files) on the others."""
    return 0 if method in BODILESS_METHODS else settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class RequestBodyLimitMiddleware:
    """Refuses, with the 413 page and before anything reads it, a body larger than the route can
    use: Content-Length past body_limit(), or any chunked body on a method that takes none.
    Django refuses large form bodies only when a view reads the form; a GET to /up never does,
    and a server reading ahead (the one-port app, stream/combined.py) would hold the body in
    memory meanwhile. Placed after the security-header middlewares, so the 413 carries them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        method = request.method or ""
        length_text = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(length_text)
        except ValueError:
            length = -1  # not a length: nothing can read it safely
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        limit = body_limit(method)
        if length < 0 or length > limit or (chunked and limit == 0):
            return payload_too_large(request)
        return self.get_response(request)


def anonymous_unasked(request: HttpRequest) -> bool:
    """Whether the request is surely signed out and nothing has asked who it is yet: no session
    cookie, and `request.user` still the unevaluated lazy object of the auth middleware (a log-in
    during the request replaces it, an API token sets it). Middleware that only acts for
    signed-in users checks this first, so a signed-out request never builds its user for them."""
    user = getattr(request, "user", None)
    return user is None or (
        isinstance(user, SimpleLazyObject)
        and user._wrapped is empty
        and settings.SESSION_COOKIE_NAME not in request.COOKIES
    )


class PrivatePagesMiddleware:
    """`Cache-Control: private, no-store` on every response to a signed-in user: their pages
    (feeds, settings, staff pages) must not be kept by a shared cache or the browser's history
    cache. Responses that set their own Cache-Control keep it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if anonymous_unasked(request) or response.has_header("Cache-Control"):
            return response
        if request.user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
        return response


class ErrorPageMiddleware:
    """Answers a service's refusal that the view let through (core.errors) with the page of its
    status and its message. Gives Django's bare 405 responses (from require_POST and friends) a
    page that explains, and answers a view's 404 (a deleted or hidden post, an unknown account)
    with our 404 page under DEBUG too: Django's technical 404 would list every URL pattern.
    Addresses that match no pattern keep the technical page in development, where it helps."""

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
        if isinstance(exception, ServiceError):
            return service_error_response(request, exception)
        return None
