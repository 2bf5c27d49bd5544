"""OAuth 2 as Mastodon apps expect it, on django-oauth-toolkit: app registration, the consent
page (our design; the out-of-band code shown on the page), the token and revocation endpoints,
the authorization server's metadata, and the user's list of authorized apps in Settings."""

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe
from oauth2_provider import views as oauth
from oauth2_provider.models import AccessToken

from microblog.accounts.http import AuthedHttpRequest
from microblog.api import scopes as api_scopes
from microblog.api import serializers
from microblog.api.models import OOB_REDIRECT_URI, ClientApp
from microblog.api.params import body
from microblog.api.services import app_register, authorization_revoke
from microblog.core.errors import ServiceError
from microblog.core.ids import parse_id

# --- POST /api/v1/apps -----------------------------------------------------------------------


def app_create(request: HttpRequest) -> HttpResponse:
    params = body(request)
    app, secret = app_register(
        name=params.text("client_name"),
        redirect_uris=params.texts("redirect_uris") or [params.text("redirect_uri")],
        scopes=params.text("scopes", "read"),
        website=params.text("website"),
    )
    return JsonResponse(serializers.application(app, client_secret=secret))


def app_verify(request: HttpRequest) -> HttpResponse:
    token = request.access_token  # type: ignore[attr-defined]
    return JsonResponse(serializers.application(token.application))


# --- /oauth/authorize ------------------------------------------------------------------------


class AuthorizeView(oauth.AuthorizationView):
    """django-oauth-toolkit's authorization endpoint with our consent page. Signing in first goes
    through our log-in page (LOGIN_URL), which comes back here."""

    template_name = "api/authorize.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        scopes = context.get("scopes") or []
        context["scope_rows"] = [(name, api_scopes.DESCRIPTIONS.get(name, name)) for name in scopes]
        return context

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        # django-oauth-toolkit's error context has a `url` entry, which would hide the
        # templates' url() function.
        context = {key: value for key, value in context.items() if key != "url"}
        return super().render_to_response(context, **kwargs)

    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        if redirect_to.startswith(OOB_REDIRECT_URI):
            # Out of band: the user copies the code into the app.
            found = parse_qs(urlsplit(redirect_to).query)
            code = found.get("code", [""])[0]
            problem = found.get("error_description", found.get("error", [""]))[0]
            return render(
                self.request,
                "api/authorized_oob.html",
                {"code": code, "problem": problem, "application": application},
                status=200 if code else 400,
            )
        return super().redirect(redirect_to, application)


authorize = never_cache(AuthorizeView.as_view())


# --- /oauth/token, /oauth/revoke -------------------------------------------------------------


@method_decorator(csrf_exempt, name="dispatch")
class TokenView(oauth.TokenView):
    """django-oauth-toolkit's token endpoint, with Mastodon's `created_at` in the answer."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().post(request, *args, **kwargs)
        if response.status_code == 200:
            data = json.loads(response.content)
            data["created_at"] = int(time.time())
            response.content = json.dumps(data).encode()
        return response


@method_decorator(csrf_exempt, name="dispatch")
class RevokeView(oauth.RevokeTokenView):
    """django-oauth-toolkit's revocation endpoint; Mastodon answers `{}`, which apps parse."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().post(request, *args, **kwargs)
        if response.status_code == 200 and not response.content:
            response.content = b"{}"
            response["Content-Type"] = "application/json"
        return response


token = TokenView.as_view()
revoke = RevokeView.as_view()


@require_safe
def authorization_server_metadata(request: HttpRequest) -> HttpResponse:
    """RFC 8414 metadata, as Mastodon publishes it (apps read the endpoints and grant types)."""
    base = request.build_absolute_uri("/").rstrip("/")
    return JsonResponse(
        {
            "issuer": f"{base}/",
            "service_documentation": f"{base}/api/openapi.json",
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "app_registration_endpoint": f"{base}/api/v1/apps",
            "scopes_supported": list(api_scopes.ALL_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
        }
    )


# --- Settings: authorized apps ---------------------------------------------------------------


@login_required
@require_safe
def authorized_apps(request: AuthedHttpRequest) -> HttpResponse:
    tokens = (
        AccessToken.objects.filter(user=request.user)
        .select_related("application")
        .order_by("-created")
    )
    apps: dict[int, dict[str, Any]] = {}
    for access in tokens:
        app = access.application
        if app is None:
            continue
        entry = apps.setdefault(
            app.id, {"app": app, "scopes": set(), "since": access.created, "tokens": 0}
        )
        entry["scopes"].update(access.scope.split())
        entry["tokens"] += 1
        entry["since"] = min(entry["since"], access.created)
    rows = [{**entry, "scopes": sorted(entry["scopes"])} for entry in apps.values()]
    return render(request, "api/authorized_apps.html", {"apps": rows})


@login_required
@require_POST
def authorized_app_revoke(request: AuthedHttpRequest, app_id: str) -> HttpResponse:
    number = parse_id(app_id)
    try:
        if number is None:
            raise ServiceError("That app has no access to your account.")
        authorization_revoke(user=request.user, app_id=number)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        name = ClientApp.objects.filter(id=number).values_list("name", flat=True).first()
        messages.success(request, f"{name or 'The app'} can no longer use your account.")
    return redirect("authorized_apps")
