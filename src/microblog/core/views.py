"""Pages of the app's own for errors, and the liveness check."""

import logging
import sys

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from microblog.core.errors import DATABASE_UNAVAILABLE, ServiceError


def wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    if not hasattr(request, "user"):
        # Refused before the auth middleware ran (e.g. a Host header not in ALLOWED_HOSTS).
        request.user = AnonymousUser()
    if request.path_info.startswith(settings.API_PATH_PREFIXES):
        # The client API (microblog.api) answers every error in Mastodon's shape, also those
        # refused before its middleware ran (a body too large).
        return JsonResponse({"error": message}, status=status)
    if wants_json(request):
        return JsonResponse({"error": {"status": status, "message": message}}, status=status)
    return render(
        request, "error.html", {"status": status, "title": title, "message": message}, status=status
    )


logger = logging.getLogger("microblog.errors")

# A database outage (core.errors.DATABASE_UNAVAILABLE) is a 503 with Retry-After, not a 500.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_TITLE = "The service is temporarily unavailable"
UNAVAILABLE_MESSAGE = (
    "Our database is unavailable right now; this usually passes within a minute. Try again "
    "then. If you were posting, check whether your post appears before you send it again."
)


def database_unavailable(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, says the database cannot be reached."""
    for _ in range(5):
        if error is None:
            return False
        if isinstance(error, DATABASE_UNAVAILABLE):
            return True
        error = error.__cause__ or error.__context__
    return False


def service_unavailable(request: HttpRequest, error: BaseException) -> HttpResponse:
    """The 503 for a database outage: our page (or JSON) with Retry-After. Rendered without the
    request context, which would load the user from the unreachable database."""
    if wants_json(request):
        message = f"{UNAVAILABLE_TITLE}. {UNAVAILABLE_MESSAGE}"
        response: HttpResponse = JsonResponse(
            {"error": {"status": 503, "message": message}}, status=503
        )
    else:
        context = {"title": UNAVAILABLE_TITLE, "message": UNAVAILABLE_MESSAGE}
        response = render(None, "503.html", context, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    # One warning line instead of Django's "Internal Server Error" traceback per request.
    logger.warning(
        "database unavailable: %s %s: %s: %s",
        request.method,
        request.path,
        type(error).__name__,
        str(error).strip().splitlines()[0] if str(error).strip() else "",
    )
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if database_unavailable(exception):
        # Django turns a session it could not save (the database went away after the view ran)
        # into SessionInterrupted, a 400: the user did nothing wrong, it is an outage.
        assert exception is not None
        return service_unavailable(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return payload_too_large(request)
    if isinstance(exception, ServiceError):  # an InvalidInput raised outside a view
        return service_error_response(request, exception)
    return error_response(
        request,
        400,
        "Bad request",
        "The request could not be understood. Check the link or form and try again.",
    )


def service_error_response(request: HttpRequest, error: ServiceError) -> HttpResponse:
    """The page (or JSON) for a service's refusal that no form or message showed: its status,
    its message."""
    return error_response(request, error.status, error.title, error.message)


def payload_too_large(request: HttpRequest) -> HttpResponse:
    return error_response(
        request,
        413,
        "Payload too large",
        "What you sent is too large to accept. Posts and bios are short: shorten the text "
        "and try again.",
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403, "Not allowed", "You are not allowed to do that.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(
        request, 404, "Page not found", "That page does not exist, or it was deleted."
    )


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception, so sys.exception() is the cause.
    error = sys.exception()
    if database_unavailable(error):
        assert error is not None
        return service_unavailable(request, error)
    # Rendered without the request context: whatever broke may break the context too.
    if wants_json(request):
        return JsonResponse(
            {"error": {"status": 500, "message": "Something went wrong on our side."}}, status=500
        )
    return render(None, "500.html", status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_response(
        request,
        403,
        "Form expired",
        "The form could not be checked (its security token was missing or expired). "
        "Go back, reload the page and try again.",
    )


def method_not_allowed(request: HttpRequest, allowed: str) -> HttpResponse:
    response = error_response(
        request,
        405,
        "Method not allowed",
        f"This address does not accept {request.method} requests.",
    )
    response["Allow"] = allowed
    return response


@require_safe
def up(request: HttpRequest) -> HttpResponse:
    """Liveness: 200 while the process serves requests. It touches nothing else, the database
    least of all: a restart does not bring a database back (`/health` reports it)."""
    return HttpResponse("ok\n", content_type="text/plain")
