"""Writes of the client API's own: registering an app, posting with an Idempotency-Key,
revoking a user's authorization of an app. Everything else the API changes goes through the
other apps' services (post_create, follow_create, block_create, report_create...)."""

import hashlib
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AccessToken, Grant, RefreshToken

from microblog.accounts.models import User
from microblog.api import scopes as api_scopes
from microblog.api.models import OOB_REDIRECT_URI, ClientApp, IdempotentStatus
from microblog.core.errors import Invalid, NotFound
from microblog.core.text import clean_text
from microblog.posts.models import Post
from microblog.posts.services import post_create

APP_NAME_MAX_LENGTH = 100
REDIRECT_URIS_MAX = 10
# Schemes that must never receive a code: they run or read something in the user's browser.
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob"})


def redirect_uris_clean(raw: list[str]) -> list[str]:
    """Each address must be absolute (https://..., or a native app's own scheme such as
    tusky://oauth) without a fragment, or the out-of-band address that shows the code."""
    uris = [uri.strip() for value in raw for uri in value.split()]
    if not uris:
        raise Invalid("redirect_uris is required", field="redirect_uris")
    if len(uris) > REDIRECT_URIS_MAX:
        raise Invalid(f"At most {REDIRECT_URIS_MAX} redirect_uris", field="redirect_uris")
    for uri in uris:
        if uri == OOB_REDIRECT_URI:
            continue
        if len(uri) > 500 or not uri.isascii() or any(ord(c) <= 32 or ord(c) == 127 for c in uri):
            raise Invalid("redirect_uris must be absolute addresses", field="redirect_uris")
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if (
            not scheme
            or scheme in FORBIDDEN_SCHEMES
            or parts.fragment
            or "#" in uri
            or (scheme in {"http", "https"} and not parts.hostname)
            or (scheme not in {"http", "https"} and not (parts.netloc or parts.path))
        ):
            raise Invalid(f"redirect_uris: {uri} is not allowed", field="redirect_uris")
    return uris


def scopes_clean(raw: str) -> str:
    requested = raw.split() or ["read"]
    if bad := api_scopes.unknown(" ".join(requested)):
        raise Invalid(f"Unknown scopes: {' '.join(bad)}", field="scopes")
    return " ".join(dict.fromkeys(requested))


def app_register(
    *, name: str, redirect_uris: list[str], scopes: str, website: str = ""
) -> tuple[ClientApp, str]:
    """Registers a client app (POST /api/v1/apps). Returns the app and its client secret, which
    is stored hashed and shown this once."""
    name = clean_text(
        name,
        max_length=APP_NAME_MAX_LENGTH,
        allow_empty=False,
        label="app name",
        field="client_name",
    )
    uris = redirect_uris_clean(redirect_uris)
    granted = scopes_clean(scopes)
    website = website.strip()
    if website:
        parts = urlsplit(website)
        if len(website) > 500 or parts.scheme not in {"http", "https"} or not parts.hostname:
            raise Invalid("website must be an http(s) address", field="website")
    secret = generate_client_secret()
    app = ClientApp.objects.create(
        name=name,
        redirect_uris=" ".join(uris),
        scopes=granted,
        website=website,
        client_type=ClientApp.CLIENT_CONFIDENTIAL,
        authorization_grant_type=ClientApp.GRANT_AUTHORIZATION_CODE,
        client_secret=secret,
    )
    return app, secret


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def status_create(
    *, author: User, content: str, parent_id: int | None, idempotency_key: str | None
) -> Post:
    """post_create, once per Idempotency-Key: a retry with the same key (within
    API_IDEMPOTENCY_HOURS) returns the post the first request made. The key's row is inserted in
    the post's transaction and its unique constraint makes a concurrent retry wait and then
    find it, so two retries never post twice; a refused post leaves no key behind."""
    if idempotency_key is None:
        return post_create(author=author, content=content, parent_id=parent_id)
    digest = _key_digest(idempotency_key)
    cutoff = timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    with transaction.atomic():
        IdempotentStatus.objects.filter(user=author, key=digest, created_at__lt=cutoff).delete()
        try:
            with transaction.atomic():
                record = IdempotentStatus.objects.create(user=author, key=digest, post_id=0)
        except IntegrityError:
            first = IdempotentStatus.objects.get(user=author, key=digest)
            post = Post.objects.select_related("author").filter(id=first.post_id).first()
            if post is None or post.is_deleted:
                raise NotFound("The post this Idempotency-Key made was deleted.") from None
            return post
        post = post_create(author=author, content=content, parent_id=parent_id)
        record.post_id = post.id
        record.save(update_fields=["post_id"])
    return post


def idempotency_keys_prune(now: datetime | None = None) -> int:
    """Forgets the Idempotency-Keys older than API_IDEMPOTENCY_HOURS (the `api_idempotency_prune`
    maintenance job); returns how many. status_create already ignores and replaces an expired
    key when the same one comes again, so this only keeps the table from growing: one range
    delete on the created_at index every run, instead of a delete on every post."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    deleted, _ = IdempotentStatus.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def authorization_revoke(*, user: User, app_id: int) -> int:
    """Ends every token and pending code `user` gave an app (Settings, "Authorized apps").
    Returns how many tokens ended; the app's next API call with one is a 401."""
    with transaction.atomic():
        tokens = AccessToken.objects.filter(user=user, application_id=app_id)
        RefreshToken.objects.filter(user=user, application_id=app_id).delete()
        Grant.objects.filter(user=user, application_id=app_id).delete()
        ended = tokens.count()
        tokens.delete()
    if not ended:
        raise NotFound("That app has no access to your account.")
    return ended
