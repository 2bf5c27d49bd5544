from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request: HttpRequest, fallback: str = "/") -> str:
    """The `next` address from the form or query, if it stays on this site; else `fallback`.

    Only a path ("/..."), without control characters: `redirect()` takes anything else for a
    view name to reverse (a 500 for `?next=abc`), and a NUL byte or line break does not belong
    in a Location header."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not target.startswith("/") or any(ord(char) < 32 or ord(char) == 127 for char in target):
        return fallback
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff pages: visitors go to our log-in page, signed-in users who are not staff get our
    403 page (Django's staff_member_required would send both to the admin's log-in)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can open this page.")
        return view(request, *args, **kwargs)

    return login_required(guarded)
