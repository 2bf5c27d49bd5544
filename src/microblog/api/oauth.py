"""django-oauth-toolkit's hooks: which scopes exist and which an app may be granted, and the
validator's token read compiled once per process."""

import hashlib
from typing import Any

from django.db.models import QuerySet
from oauth2_provider.models import AccessToken
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import BaseScopes

from microblog.api import scopes
from microblog.core import sqlcache


class MastodonScopes(BaseScopes):
    """Mastodon's scopes; an app may be granted what it registered for (POST /api/v1/apps),
    top-level names and the granular scopes they stand for."""

    def get_all_scopes(self) -> dict[str, str]:
        return scopes.DESCRIPTIONS

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if application is None:
            return list(scopes.ALL_SCOPES)
        return sorted(scopes.expand(application.scopes))

    def get_default_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        return ["read"]


def _access_token_by_checksum(checksum: str) -> QuerySet[AccessToken]:
    return AccessToken.objects.select_related("application", "user").filter(
        token_checksum=checksum
    )[:1]


class Validator(OAuth2Validator):
    """django-oauth-toolkit's validator, every check its own (expiry, scopes, the app's
    usability, RFC 8707 audiences), with the one read every API request makes, the access token
    by its SHA-256 checksum with its app and user, compiled to SQL once per process
    (core.sqlcache) instead of by the ORM on each request: the same query as the library's
    `_load_access_token`, a fifth of the CPU of an API timeline in a profile
    (docs/benchmarks.md)."""

    def _load_access_token(self, token: str) -> AccessToken | None:
        checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
        found = sqlcache.fetch(_access_token_by_checksum, checksum)
        return found[0] if found else None
