"""The OpenAPI 3.1 document of the client API, generated from its routes (api/urls.py): every
address, method, path parameter and the scope each needs come from the code that serves them,
so the document cannot drift (tests/api/test_openapi.py also checks it against the resolver).
Parameters and bodies are described per endpoint below; answers are described by status."""

import re
from functools import cache
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern

from microblog.api.auth import Access

ID_SCHEMA = {"type": "string", "pattern": "^[0-9]{1,19}$"}
LIST_PARAMETERS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 40}},
    {"name": "max_id", "in": "query", "schema": ID_SCHEMA},
    {"name": "since_id", "in": "query", "schema": ID_SCHEMA},
    {"name": "min_id", "in": "query", "schema": ID_SCHEMA},
]
TYPE_SCHEMA = {
    "type": "string",
    "enum": ["mention", "status", "reblog", "follow", "follow_request", "favourite", "poll"],
}
OFFSET_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 1000}
# Path parameters that are not ids.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "hashtag": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^/]+$"}
}
FORM = "application/x-www-form-urlencoded"
BODIES: dict[str, dict[str, Any]] = {
    "api_apps": {
        "client_name": {"type": "string"},
        "redirect_uris": {"type": "string"},
        "scopes": {"type": "string"},
        "website": {"type": "string"},
    },
    "api_statuses": {
        "status": {"type": "string"},
        "in_reply_to_id": {"type": "string"},
        "visibility": {"type": "string", "enum": ["public", "unlisted", "private", "direct"]},
    },
    "api_update_credentials": {"note": {"type": "string"}},
    "api_reports": {
        "account_id": {"type": "string"},
        "status_ids[]": {"type": "array", "items": {"type": "string"}},
        "comment": {"type": "string"},
        "category": {"type": "string"},
    },
}
QUERIES: dict[str, list[dict[str, Any]]] = {
    "api_account_lookup": [
        {"name": "acct", "in": "query", "required": True, "schema": {"type": "string"}}
    ],
    "api_relationships": [
        {"name": "id[]", "in": "query", "schema": {"type": "array", "items": ID_SCHEMA}}
    ],
    "api_timeline_home": LIST_PARAMETERS,
    "api_status_favourited_by": LIST_PARAMETERS,
    "api_status_reblogged_by": LIST_PARAMETERS,
    "api_favourites": LIST_PARAMETERS,
    "api_timeline_public": [
        *LIST_PARAMETERS,
        {"name": "local", "in": "query", "schema": {"type": "boolean"}},
        {"name": "remote", "in": "query", "schema": {"type": "boolean"}},
        {"name": "only_media", "in": "query", "schema": {"type": "boolean"}},
    ],
    "api_account_statuses": [
        *LIST_PARAMETERS,
        {"name": "exclude_replies", "in": "query", "schema": {"type": "boolean"}},
        {"name": "only_media", "in": "query", "schema": {"type": "boolean"}},
        {"name": "pinned", "in": "query", "schema": {"type": "boolean"}},
    ],
    "api_notifications": [
        *LIST_PARAMETERS,
        {"name": "types[]", "in": "query", "schema": {"type": "array", "items": TYPE_SCHEMA}},
        {
            "name": "exclude_types[]",
            "in": "query",
            "schema": {"type": "array", "items": TYPE_SCHEMA},
        },
        {"name": "account_id", "in": "query", "schema": ID_SCHEMA},
    ],
    "api_search": [
        {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
        {
            "name": "type",
            "in": "query",
            "schema": {"type": "string", "enum": ["accounts", "statuses", "hashtags"]},
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 40},
        },
        {"name": "offset", "in": "query", "schema": OFFSET_SCHEMA},
        {"name": "max_id", "in": "query", "schema": ID_SCHEMA},
        {"name": "resolve", "in": "query", "schema": {"type": "boolean"}},
        {"name": "following", "in": "query", "schema": {"type": "boolean"}},
    ],
    "api_accounts_search": [
        {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 40},
        },
        {"name": "offset", "in": "query", "schema": OFFSET_SCHEMA},
        {"name": "resolve", "in": "query", "schema": {"type": "boolean"}},
    ],
    "api_timeline_tag": [
        *LIST_PARAMETERS,
        {"name": "local", "in": "query", "schema": {"type": "boolean"}},
        {"name": "remote", "in": "query", "schema": {"type": "boolean"}},
        {"name": "only_media", "in": "query", "schema": {"type": "boolean"}},
    ],
    "api_trends_tags": [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 20},
        },
        {"name": "offset", "in": "query", "schema": OFFSET_SCHEMA},
    ],
    "api_account_followers": LIST_PARAMETERS,
    "api_account_following": LIST_PARAMETERS,
    "api_blocks": LIST_PARAMETERS,
    "api_mutes": LIST_PARAMETERS,
}
ERRORS = {
    "400": {"description": "A malformed parameter", "content": {"application/json": {}}},
    "401": {"description": "No valid token", "content": {"application/json": {}}},
    "403": {"description": "The token lacks the scope", "content": {"application/json": {}}},
    "404": {"description": "Not found", "content": {"application/json": {}}},
    "422": {"description": "Refused input, with a message", "content": {"application/json": {}}},
    "429": {"description": "Rate limited (Retry-After, X-RateLimit-*)"},
}


def openapi_path(pattern: URLPattern) -> tuple[str, list[str]]:
    """`^api/v1/accounts/(?P<account_id>[0-9]{1,19})/follow/?$` becomes
    `/api/v1/accounts/{account_id}/follow`."""
    regex = pattern.pattern.regex.pattern
    names = list(pattern.pattern.regex.groupindex)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", regex)
    path = path.removeprefix("^").removesuffix("$").removesuffix("/?")
    return "/" + path, names


def _operation(name: str, method: str, access: Access, params: list[str]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{name}_{method.lower()}",
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": PATH_SCHEMAS.get(p, ID_SCHEMA)}
            for p in params
        ]
        + (QUERIES.get(name, []) if method == "GET" else []),
        "responses": {"200": {"description": "OK", "content": {"application/json": {}}}, **ERRORS},
    }
    if access.token or access.user:
        operation["security"] = [{"oauth": [access.scope] if access.scope else []}]
    elif access.scope:
        operation["security"] = [{}, {"oauth": [access.scope]}]
    if method in {"POST", "PATCH", "PUT"} and name in BODIES:
        schema = {"type": "object", "properties": BODIES[name]}
        operation["requestBody"] = {
            "content": {FORM: {"schema": schema}, "application/json": {"schema": schema}}
        }
    return operation


@cache
def document() -> dict[str, Any]:
    from microblog.api.scopes import DESCRIPTIONS
    from microblog.api.urls import api_urlpatterns

    paths: dict[str, dict[str, Any]] = {}
    for pattern in api_urlpatterns:
        path, params = openapi_path(pattern)
        routes = pattern.callback.api_routes  # type: ignore[attr-defined]
        paths[path] = {
            method.lower(): _operation(str(pattern.name), method, access, params)
            for method, (access, _view) in routes.items()
            if method != "HEAD"
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Microblog client API (Mastodon-compatible)",
            "version": "1",
            "description": (
                'See docs/api.md. Errors are {"error": "..."}. Streaming (/api/v1/streaming/*, '
                "Server-Sent Events) is served by the streaming process, not by these routes, "
                'and is described in docs/api.md ("Streaming"); its address is the instance\'s '
                "urls.streaming_api."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "oauth": {
                    "type": "oauth2",
                    "flows": {
                        "authorizationCode": {
                            "authorizationUrl": "/oauth/authorize",
                            "tokenUrl": "/oauth/token",
                            "scopes": DESCRIPTIONS,
                        },
                        "clientCredentials": {"tokenUrl": "/oauth/token", "scopes": DESCRIPTIONS},
                    },
                }
            }
        },
    }


def openapi_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(document())
