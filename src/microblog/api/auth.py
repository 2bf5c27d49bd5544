"""Who is asking, for the client API: the OAuth bearer token and nothing else.

`ApiTokenMiddleware` runs after Django's authentication middleware and before the rate limiter.
On /api/ it replaces `request.user` with the token's user (or AnonymousUser), so a session cookie
never authenticates an API call (the API is CSRF-exempt because no cookie counts) and the rate
limiter's per-user rules count the token's user. It answers CORS on the API's paths
(settings.API_PATH_PREFIXES, which also give errors there the JSON shape: core.views).

`api_view` wraps each endpoint: the token's validity, the user it needs, the scope it needs, and
service errors as Mastodon's `{"error": "..."}` with its status codes.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import AccessToken
from oauth2_provider.settings import oauth2_settings

from microblog.accounts.models import User
from microblog.api import scopes
from microblog.core.errors import Conflict, Invalid, InvalidInput, ServiceError
from microblog.core.ids import parse_id

logger = logging.getLogger("microblog.api")

# Paths answered as the API (settings.API_PATH_PREFIXES: JSON errors, CORS); only /api/ takes
# bearer tokens.
API_PREFIX = "/api/"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Expose-Headers": (
        "Link, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After"
    ),
    "Access-Control-Max-Age": "86400",
}

INVALID_TOKEN = "The access token is invalid"  # noqa: S105 (a message, not a secret)
NEEDS_USER = "This method requires an authenticated user"
OUT_OF_SCOPE = "This action is outside the authorized scopes"


def bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def load_token(token: str) -> AccessToken | None:
    """The valid (known, unexpired, not revoked) access token, through django-oauth-toolkit's own
    validator (one query: the token by its checksum, with its app and user)."""
    if len(token) > 255 or not token.isascii():
        return None
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    oauth_request = SimpleNamespace(uri=None)
    if not validator.validate_bearer_token(token, [], oauth_request):
        return None
    access: AccessToken = oauth_request.access_token
    if access.user is not None and not access.user.is_active:
        return None
    return access


def _cors(response: HttpResponse) -> HttpResponse:
    for name, value in CORS_HEADERS.items():
        response[name] = value
    return response


class ApiTokenMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not path.startswith(settings.API_PATH_PREFIXES):
            return self.get_response(request)
        if path.startswith(API_PREFIX):
            request.user = AnonymousUser()
            request.access_token = None  # type: ignore[attr-defined]
            request.token_invalid = False  # type: ignore[attr-defined]
            token = bearer_token(request)
            if token is not None:
                access = load_token(token)
                if access is None:
                    request.token_invalid = True  # type: ignore[attr-defined]
                else:
                    request.access_token = access  # type: ignore[attr-defined]
                    if access.user is not None:
                        request.user = access.user
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return _cors(HttpResponse(status=204))  # a browser's CORS preflight
        return _cors(self.get_response(request))


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def service_error(exc: ServiceError) -> JsonResponse:
    """Our services' refusals in Mastodon's codes: bad input is 422 (a malformed parameter in
    the address, 400), a conflict too (Mastodon has no 409), others keep their status."""
    if isinstance(exc, InvalidInput):
        return error(400, exc.message)
    if isinstance(exc, Invalid | Conflict):
        return error(422, exc.message)
    return error(exc.status, exc.message)


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call an endpoint: `scope` (granular, checked when a token is given), whether a
    user token is needed (`user`), or any token at all (`token`)."""

    scope: str | None
    user: bool = True
    token: bool = True


PUBLIC = Access(scope=None, user=False, token=False)


def token_user(request: HttpRequest) -> User:
    """The signed-in user of an endpoint whose Access needs one (api_view has checked)."""
    user = request.user
    assert isinstance(user, User)
    return user


def check_access(request: HttpRequest, access: Access) -> JsonResponse | None:
    if getattr(request, "token_invalid", False):
        return error(401, INVALID_TOKEN)
    token: AccessToken | None = getattr(request, "access_token", None)
    if token is None:
        if access.token or access.user:
            return error(401, INVALID_TOKEN)
        return None
    if access.user and token.user is None:
        return error(422, NEEDS_USER)
    if access.scope is not None:
        granted = scopes.expand(token.scope)
        if not scopes.satisfied(granted, access.scope):
            return error(403, OUT_OF_SCOPE)
    return None


Handler = Callable[..., HttpResponse]


def api_view(**methods: tuple[Access, Handler]) -> Handler:
    """One URL's endpoints by HTTP method: `api_view(GET=(Access(...), view), DELETE=...)`."""
    routes = {name.upper(): route for name, route in methods.items()}
    if "GET" in routes:
        routes.setdefault("HEAD", routes["GET"])

    @csrf_exempt
    def dispatch(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        route = routes.get(request.method or "")
        if route is None:
            response = error(405, f"Method {request.method} is not allowed here")
            response["Allow"] = ", ".join(sorted(routes))
            return response
        access, view = route
        refused = check_access(request, access)
        if refused is not None:
            return refused
        # Ids in the address (`account_id`, `status_id`) through the one parser of ids.
        for name, raw in kwargs.items():
            if name.endswith("_id"):
                kwargs[name] = parse_id(raw)
                if kwargs[name] is None:
                    return error(404, "Record not found")
        try:
            return view(request, *args, **kwargs)
        except ServiceError as exc:
            return service_error(exc)

    dispatch.api_routes = routes  # type: ignore[attr-defined]
    return dispatch
