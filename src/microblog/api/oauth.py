"""django-oauth-toolkit's hooks: which scopes exist and which an app may be granted."""

from typing import Any

from oauth2_provider.scopes import BaseScopes

from microblog.api import scopes


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
