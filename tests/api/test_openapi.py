"""The OpenAPI document matches the routes, and a fuzzer finds no input that makes a 5xx."""

import re
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import Client
from django.urls import resolve
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from microblog.accounts.models import User
from microblog.api.urls import api_urlpatterns


def test_every_route_is_documented_and_every_documented_path_resolves(db: None) -> None:
    document = Client().get("/api/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    documented = document["paths"]
    assert len(documented) == len(api_urlpatterns)
    for path, operations in documented.items():
        # Every id parameter (account_id, status_id, notification_id...) as an id; names as
        # a name.
        concrete = re.sub(r"\{\w+_id\}", "1", path).replace("{hashtag}", "python")
        match = resolve(concrete)
        routes = match.func.api_routes  # type: ignore[attr-defined]
        assert {m.upper() for m in operations} == set(routes) - {"HEAD"}, path


def test_secured_endpoints_name_their_scope(db: None) -> None:
    document = Client().get("/api/openapi.json").json()
    home = document["paths"]["/api/v1/timelines/home"]["get"]
    assert home["security"] == [{"oauth": ["read:statuses"]}]
    post = document["paths"]["/api/v1/statuses"]["post"]
    assert post["security"] == [{"oauth": ["write:statuses"]}]


# --- fuzzing: schemathesis over the document, through the whole middleware stack (WSGI) ------

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture
def fuzz_token(alice: User, make_token: Callable[..., str]) -> str:
    """Requests carry a valid token with every scope, so they reach the views (an endpoint
    without one answers 401 before reading anything)."""
    return make_token(alice, "read write follow push")


@schema.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_a_server_error(case: Any, fuzz_token: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {fuzz_token}"}
    case.call_and_validate(checks=[not_a_server_error])
