"""The client API's own tables: registered apps (django-oauth-toolkit's application, swapped in
so one app may use both the code flow and client_credentials, as Mastodon apps do) and the
Idempotency-Key records of POST /api/v1/statuses."""

from django.conf import settings
from django.db import models
from oauth2_provider.models import AbstractApplication

# Mastodon apps register once and then use the code flow for users and client_credentials for
# app-level calls; django-oauth-toolkit's application allows one grant type.
APP_GRANT_TYPES = frozenset(
    {AbstractApplication.GRANT_AUTHORIZATION_CODE, AbstractApplication.GRANT_CLIENT_CREDENTIALS}
)
# The address that shows the code on our page instead of redirecting (RFC 6749 "out of band").
OOB_REDIRECT_URI = "urn:ietf:wg:oauth:2.0:oob"


class ClientApp(AbstractApplication):
    """An app registered through POST /api/v1/apps (or the admin)."""

    # Apps registered through the API have no owner; the admin may give one.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        related_name="+",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
    )

    website = models.URLField(max_length=500, blank=True, default="")
    # The scopes the app registered for: authorization and token requests may ask for these only.
    scopes = models.CharField(max_length=500, default="read")

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"

    def allows_grant_type(self, *grant_types: str) -> bool:
        return bool(APP_GRANT_TYPES.intersection(grant_types))

    def get_allowed_schemes(self) -> list[str]:
        """The schemes of this app's own registered redirect URIs (native apps register custom
        schemes such as `tusky://`); oauthlib has already checked that the redirect URI of a
        request is exactly one of them."""
        schemes = {uri.split(":", 1)[0].lower() for uri in self.redirect_uris.split() if ":" in uri}
        return sorted(schemes - {"javascript", "data", "vbscript", "file"})

    def __str__(self) -> str:
        return self.name or self.client_id


class IdempotentStatus(models.Model):
    """A status posted with an Idempotency-Key: the same key from the same user within
    IDEMPOTENCY_KEY_HOURS answers with the same status instead of posting twice. The unique
    constraint, not a check before the insert, makes two concurrent retries post once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64)
    post_id = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="api_idempotent_user_key"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
