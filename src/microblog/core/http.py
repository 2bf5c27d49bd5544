from django.http import HttpRequest
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
