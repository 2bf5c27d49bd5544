"""Pages of the app's own for errors, and the liveness check."""

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from microblog.core.errors import InvalidInput


def wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    if not hasattr(request, "user"):
        # Refused before the auth middleware ran (e.g. a Host header not in ALLOWED_HOSTS).
        request.user = AnonymousUser()
    if wants_json(request):
        return JsonResponse({"error": {"status": status, "message": message}}, status=status)
    return render(
        request, "error.html", {"status": status, "title": title, "message": message}, status=status
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return error_response(
            request,
            413,
            "Payload too large",
            "What you sent is too large to accept. Posts and bios are short: shorten the text "
            "and try again.",
        )
    message = (
        exception.message
        if isinstance(exception, InvalidInput)
        else "The request could not be understood. Check the link or form and try again."
    )
    return error_response(request, 400, "Bad request", message)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403, "Not allowed", "You are not allowed to do that.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(
        request, 404, "Page not found", "That page does not exist, or it was deleted."
    )


def server_error(request: HttpRequest) -> HttpResponse:
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
    """Liveness: 200 when the app can reach its database, 503 when it cannot."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return HttpResponse("database unreachable\n", status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
