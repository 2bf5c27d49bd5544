"""Fixtures of the client API's tests: a registered app and tokens with chosen scopes."""

import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken

from microblog.accounts.models import User
from microblog.api.models import ClientApp
from microblog.api.services import app_register

ALL = "read write follow push"


@pytest.fixture
def client_app(db: None) -> ClientApp:
    app, _secret = app_register(
        name="Test app", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scopes=ALL
    )
    return app


@pytest.fixture
def make_token(client_app: ClientApp) -> Callable[..., str]:
    """A valid access token of `user` (None: an app token) with `scope`, as the token endpoint
    would store it."""

    def make(user: User | None, scope: str = ALL) -> str:
        raw = secrets.token_urlsafe(32)
        AccessToken.objects.create(
            user=user,
            application=client_app,
            token=raw,
            scope=scope,
            expires=timezone.now() + timedelta(days=1),
        )
        return raw

    return make


@pytest.fixture
def api_for(make_token: Callable[..., str]) -> Callable[..., Client]:
    """A test client that sends `user`'s bearer token (and no cookie)."""

    def make(user: User | None, scope: str = ALL) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {make_token(user, scope)}")

    return make
