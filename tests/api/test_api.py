"""Request tests of the client API: each endpoint's answer, scopes, errors, pagination,
idempotency, and that only the bearer token (never the session cookie) authenticates."""

import base64
import hashlib
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from oauth2_provider.models import AccessToken

from microblog.accounts.models import User
from microblog.api.models import ClientApp
from microblog.follows.services import follow_create
from microblog.moderation.models import Report
from microblog.posts.models import Post
from microblog.timelines import selectors as timeline_selectors
from tests.api.forms import form_fields
from tests.conftest import refreshed

Api = Callable[..., Client]


# --- authentication and scopes ---------------------------------------------------------------


def test_no_token_is_401_in_mastodon_shape(db: None) -> None:
    response = Client().get("/api/v1/timelines/home")
    assert response.status_code == 401
    assert response.json() == {"error": "The access token is invalid"}


def test_an_unknown_token_is_401_even_on_a_public_endpoint(db: None) -> None:
    response = Client(HTTP_AUTHORIZATION="Bearer nope").get("/api/v1/timelines/public")
    assert response.status_code == 401


def test_a_session_cookie_does_not_authenticate_an_api_call(
    alice: User, client_for: Callable[[User], Client]
) -> None:
    signed_in = client_for(alice)
    assert signed_in.get("/settings").status_code == 200
    response = signed_in.get("/api/v1/accounts/verify_credentials")
    assert response.status_code == 401
    # A write with the cookie and no CSRF token is refused for want of a token, not posted.
    assert signed_in.post("/api/v1/statuses", {"status": "via cookie"}).status_code == 401
    assert not Post.objects.filter(content="via cookie").exists()


def test_a_read_token_cannot_post(alice: User, api_for: Api) -> None:
    response = api_for(alice, "read").post("/api/v1/statuses", {"status": "hi"})
    assert response.status_code == 403
    assert response.json() == {"error": "This action is outside the authorized scopes"}


def test_granular_scopes_allow_only_their_endpoints(alice: User, bob: User, api_for: Api) -> None:
    api = api_for(alice, "read:statuses write:statuses")
    assert api.get("/api/v1/timelines/home").status_code == 200
    assert api.post("/api/v1/statuses", {"status": "granular"}).status_code == 200
    assert api.post(f"/api/v1/accounts/{bob.id}/follow").status_code == 403
    assert api.get("/api/v1/accounts/verify_credentials").status_code == 403


def test_the_follow_scope_allows_follows_blocks_and_mutes(
    alice: User, bob: User, api_for: Api
) -> None:
    api = api_for(alice, "follow")
    assert api.post(f"/api/v1/accounts/{bob.id}/follow").json()["following"] is True
    assert api.post(f"/api/v1/accounts/{bob.id}/mute").json()["muting"] is True
    assert api.post(f"/api/v1/accounts/{bob.id}/block").json()["blocking"] is True
    assert api.post("/api/v1/statuses", {"status": "no"}).status_code == 403


def test_an_app_token_cannot_act_as_a_user(db: None, api_for: Api) -> None:
    response = api_for(None, "read write").get("/api/v1/timelines/home")
    assert response.status_code == 422
    assert response.json()["error"] == "This method requires an authenticated user"


def test_cors_preflight_and_headers(db: None) -> None:
    client = Client()
    preflight = client.options(
        "/api/v1/timelines/public",
        HTTP_ORIGIN="https://elk.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    answer = client.get("/api/v1/timelines/public", HTTP_ORIGIN="https://elk.example")
    assert answer["Access-Control-Allow-Origin"] == "*"
    assert "Link" in answer["Access-Control-Expose-Headers"]
    # Our pages are not shared with other origins.
    assert "Access-Control-Allow-Origin" not in client.get("/all")


def test_unknown_api_paths_are_json_404s(db: None) -> None:
    response = Client().get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"} or "error" in response.json()


def test_rate_limits_count_the_tokens_user(alice: User, api_for: Api, settings: Any) -> None:
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_RULES = {**settings.RATELIMIT_RULES, "posts": "2/1m", "requests": "1000/5m"}
    first, second = api_for(alice), api_for(alice)
    assert first.post("/api/v1/statuses", {"status": "one"}).status_code == 200
    assert second.post("/api/v1/statuses", {"status": "two"}).status_code == 200
    refused = first.post("/api/v1/statuses", {"status": "three"})
    assert refused.status_code == 429
    assert "error" in refused.json()
    assert refused["X-RateLimit-Limit"] == "2"
    assert refused["X-RateLimit-Remaining"] == "0"
    assert int(refused["Retry-After"]) > 0


# --- statuses ---------------------------------------------------------------------------------


def test_post_a_status_and_read_it(alice: User, api_for: Api) -> None:
    api = api_for(alice)
    created = api.post("/api/v1/statuses", {"status": "Hello <b>world</b>\nhttps://example.org"})
    assert created.status_code == 200
    status = created.json()
    assert status["content"] == (
        '<p>Hello &lt;b&gt;world&lt;/b&gt;<br><a href="https://example.org" '
        'title="https://example.org" rel="nofollow noopener ugc">example.org</a></p>'
    )
    assert status["visibility"] == "public"
    assert status["account"]["username"] == "alice"
    assert status["favourites_count"] == 0 and status["reblogged"] is False
    assert status["created_at"].endswith("Z")
    shown = Client().get(f"/api/v1/statuses/{status['id']}")
    assert shown.json()["id"] == status["id"]


def test_bad_statuses_are_422_with_a_message(alice: User, api_for: Api) -> None:
    api = api_for(alice)
    too_long = api.post("/api/v1/statuses", {"status": "x" * 201})
    assert too_long.status_code == 422
    assert "limit is 200" in too_long.json()["error"]
    assert api.post("/api/v1/statuses", {"status": ""}).status_code == 422
    assert api.post("/api/v1/statuses", {"status": "nul\x00"}).status_code == 422
    assert api.post("/api/v1/statuses", {"status": "dm", "visibility": "direct"}).status_code == 422
    assert (
        api.post("/api/v1/statuses", {"status": "r", "in_reply_to_id": "9" * 25}).status_code == 422
    )
    assert (
        api.post("/api/v1/statuses", {"status": "r", "in_reply_to_id": "12345"}).status_code == 404
    )
    assert not Post.objects.exists()


def test_json_bodies_work_too(alice: User, api_for: Api) -> None:
    api = api_for(alice)
    response = api.post(
        "/api/v1/statuses", {"status": "from json"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert api.post("/api/v1/statuses", "[1]", content_type="application/json").status_code == 400
    assert api.post("/api/v1/statuses", "{", content_type="application/json").status_code == 400


def test_an_idempotency_key_posts_once(alice: User, api_for: Api) -> None:
    api = api_for(alice)
    first = api.post("/api/v1/statuses", {"status": "once"}, HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/statuses", {"status": "once"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/api/v1/statuses", {"status": "once"}, HTTP_IDEMPOTENCY_KEY="k-2")
    assert other.json()["id"] != first.json()["id"]
    assert Post.objects.filter(content="once").count() == 2
    assert refreshed(alice).posts_count == 2


def test_a_refused_post_leaves_its_key_free(alice: User, api_for: Api) -> None:
    api = api_for(alice)
    assert api.post("/api/v1/statuses", {"status": ""}, HTTP_IDEMPOTENCY_KEY="k").status_code == 422
    retry = api.post("/api/v1/statuses", {"status": "fixed"}, HTTP_IDEMPOTENCY_KEY="k")
    assert retry.status_code == 200


def test_delete_a_status(alice: User, bob: User, api_for: Api, make_post: Any) -> None:
    post = make_post(alice, "to delete")
    assert api_for(bob).delete(f"/api/v1/statuses/{post.id}").status_code == 403
    deleted = api_for(alice).delete(f"/api/v1/statuses/{post.id}")
    assert deleted.status_code == 200
    assert deleted.json()["text"] == "to delete"
    assert Client().get(f"/api/v1/statuses/{post.id}").status_code == 404


def test_context_follows_the_thread(alice: User, bob: User, make_post: Any) -> None:
    root = make_post(alice, "root")
    reply = make_post(bob, "reply", parent=root)
    deeper = make_post(alice, "deeper", parent=reply)
    context = Client().get(f"/api/v1/statuses/{reply.id}/context").json()
    assert [s["id"] for s in context["ancestors"]] == [str(root.id)]
    assert [s["id"] for s in context["descendants"]] == [str(deeper.id)]
    assert context["descendants"][0]["in_reply_to_account_id"] == str(bob.id)


def test_hidden_posts_are_404_to_others(
    alice: User, bob: User, make_post: Any, api_for: Api
) -> None:
    post = make_post(alice, "hidden")
    Post.objects.filter(id=post.id).update(is_hidden=True)
    assert api_for(bob).get(f"/api/v1/statuses/{post.id}").status_code == 404
    assert api_for(alice).get(f"/api/v1/statuses/{post.id}").status_code == 200


def test_malformed_ids_in_the_path_are_404(db: None) -> None:
    assert Client().get("/api/v1/statuses/99999999999999999999").status_code == 404
    assert Client().get("/api/v1/accounts/0").status_code == 404


# --- timelines and pagination ---------------------------------------------------------------


def test_home_pages_with_link_headers(alice: User, bob: User, make_post: Any, api_for: Api) -> None:
    follow_create(follower=alice, followed=bob)
    posts = [make_post(bob, f"p{n}") for n in range(7)]
    newest_first = [str(p.id) for p in reversed(posts)]
    api = api_for(alice)
    first = api.get("/api/v1/timelines/home", {"limit": 3})
    assert [s["id"] for s in first.json()] == newest_first[:3]
    links = first["Link"]
    assert 'rel="next"' in links and 'rel="prev"' in links
    next_url = links.split(";")[0].strip("<>")
    second = api.get(next_url)
    assert [s["id"] for s in second.json()] == newest_first[3:6]
    # min_id pages forward from an older post without gaps; since_id takes the newest.
    forward = api.get("/api/v1/timelines/home", {"min_id": newest_first[5], "limit": 2})
    assert [s["id"] for s in forward.json()] == newest_first[3:5]
    newest = api.get("/api/v1/timelines/home", {"since_id": newest_first[5], "limit": 2})
    assert [s["id"] for s in newest.json()] == newest_first[:2]


def test_limit_is_clamped_and_checked(alice: User, make_post: Any, api_for: Api) -> None:
    for n in range(45):
        Post.objects.create(author=alice, content=f"bulk {n}", created_at="2026-01-01T00:00Z")
    api = api_for(alice)
    assert len(api.get("/api/v1/timelines/public", {"limit": 100}).json()) == 40
    assert len(api.get("/api/v1/timelines/public").json()) == 20
    assert api.get("/api/v1/timelines/public", {"limit": "x"}).status_code == 400
    assert api.get("/api/v1/timelines/public", {"max_id": "1e9"}).status_code == 400


def test_public_timeline_leaves_out_muted_accounts(
    alice: User, bob: User, make_post: Any, api_for: Api
) -> None:
    make_post(bob, "from bob")
    api = api_for(alice)
    assert [s["content"] for s in api.get("/api/v1/timelines/public").json()] == ["<p>from bob</p>"]
    api.post(f"/api/v1/accounts/{bob.id}/mute")
    assert api.get("/api/v1/timelines/public").json() == []
    assert [a["username"] for a in api.get("/api/v1/mutes").json()] == ["bob"]


# --- accounts -------------------------------------------------------------------------------


def test_accounts_endpoints(alice: User, bob: User, make_post: Any, api_for: Api) -> None:
    api = api_for(alice)
    assert api.get("/api/v1/accounts/lookup", {"acct": "BOB"}).json()["id"] == str(bob.id)
    assert api.get("/api/v1/accounts/lookup", {"acct": "nobody"}).status_code == 404
    make_post(bob, "bob's post")
    statuses = api.get(f"/api/v1/accounts/{bob.id}/statuses").json()
    assert [s["content"] for s in statuses] == ["<p>bob&#39;s post</p>"]
    assert api.get(f"/api/v1/accounts/{bob.id}/statuses", {"only_media": "true"}).json() == []
    api.post(f"/api/v1/accounts/{bob.id}/follow")
    assert [a["username"] for a in api.get(f"/api/v1/accounts/{bob.id}/followers").json()] == [
        "alice"
    ]
    assert [a["username"] for a in api.get(f"/api/v1/accounts/{alice.id}/following").json()] == [
        "bob"
    ]
    rels = api.get("/api/v1/accounts/relationships", {"id[]": [bob.id, 999999]}).json()
    assert [(r["id"], r["following"], r["followed_by"]) for r in rels] == [
        (str(bob.id), True, False)
    ]
    assert api.post(f"/api/v1/accounts/{bob.id}/unfollow").json()["following"] is False
    assert api.post(f"/api/v1/accounts/{alice.id}/follow").status_code == 422
    assert api.post(f"/api/v1/accounts/{bob.id}/block").json()["blocking"] is True
    assert [a["username"] for a in api.get("/api/v1/blocks").json()] == ["bob"]
    assert api.post(f"/api/v1/accounts/{bob.id}/unblock").json()["blocking"] is False
    assert api.post(f"/api/v1/accounts/{bob.id}/unmute").json()["muting"] is False


def test_update_credentials_sets_the_bio(alice: User, api_for: Api) -> None:
    api = api_for(alice)
    response = api.patch(
        "/api/v1/accounts/update_credentials",
        "note=Hello+there",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert response.json()["source"]["note"] == "Hello there"
    assert response.json()["note"] == "<p>Hello there</p>"
    too_long = api.patch(
        "/api/v1/accounts/update_credentials", {"note": "x" * 121}, content_type="application/json"
    )
    assert too_long.status_code == 422
    assert refreshed(alice).description == "Hello there"


def test_reports(alice: User, bob: User, make_post: Any, api_for: Api) -> None:
    post = make_post(bob, "spam!")
    api = api_for(alice)
    report = api.post(
        "/api/v1/reports",
        {"account_id": bob.id, "status_ids[]": [post.id], "category": "spam", "comment": "ads"},
    )
    assert report.status_code == 200
    assert report.json()["status_ids"] == [str(post.id)]
    assert Report.objects.get().reason == "spam"
    assert api.post("/api/v1/reports", {"account_id": bob.id}).status_code == 422
    again = api.post("/api/v1/reports", {"account_id": bob.id, "status_ids[]": [post.id]})
    assert again.status_code == 422


# --- instance, start-up endpoints -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/custom_emojis", []),
        ("/api/v1/filters", []),
        ("/api/v2/filters", []),
        ("/api/v1/lists", []),
        ("/api/v1/markers", {}),
        ("/api/v1/announcements", []),
        ("/api/v1/trends", []),
        ("/api/v1/trends/tags", []),
    ],
)
def test_start_up_endpoints_answer_empty(
    alice: User, api_for: Api, path: str, expected: Any
) -> None:
    response = api_for(alice).get(path)
    assert response.status_code == 200
    assert response.json() == expected


def test_instance_and_nodeinfo(db: None) -> None:
    v1 = Client().get("/api/v1/instance/").json()
    assert v1["version"].startswith("4.3.0 (compatible; microblog")
    assert v1["configuration"]["statuses"]["max_characters"] == 200
    v2 = Client().get("/api/v2/instance").json()
    assert v2["registrations"]["enabled"] is True
    links = Client().get("/.well-known/nodeinfo").json()["links"]
    assert links[0]["href"].endswith("/nodeinfo/2.0")
    assert Client().get("/nodeinfo/2.0").json()["software"]["name"] == "microblog"


# --- OAuth ----------------------------------------------------------------------------------


def _register(client: Client, **extra: Any) -> dict[str, Any]:
    data = {
        "client_name": "PKCE app",
        "redirect_uris": "https://app.example/callback",
        "scopes": "read write",
        **extra,
    }
    response = client.post("/api/v1/apps", data)
    assert response.status_code == 200, response.content
    return response.json()


def test_app_registration_checks_its_input(db: None) -> None:
    client = Client()
    bad = [
        {"client_name": "x", "redirect_uris": "javascript:alert(1)"},
        {"client_name": "x", "redirect_uris": "https://a.example/#frag"},
        {"client_name": "x", "redirect_uris": "https://a.example/", "scopes": "read admin:all"},
        {"client_name": "", "redirect_uris": "https://a.example/"},
        {"client_name": "x"},
    ]
    for data in bad:
        assert client.post("/api/v1/apps", data).status_code == 422, data
    assert not ClientApp.objects.exists()
    registered = _register(client)
    assert registered["scopes"] == ["read", "write"]
    app = ClientApp.objects.get()
    # The secret is stored hashed and shown once.
    assert app.client_secret != registered["client_secret"]


def _authorize(browser: Client, app: dict[str, Any], scope: str, **extra: str) -> str:
    params = {
        "client_id": app["client_id"],
        "redirect_uri": app["redirect_uri"],
        "response_type": "code",
        "scope": scope,
        **extra,
    }
    consent = browser.get("/oauth/authorize", params)
    assert consent.status_code == 200
    fields = form_fields(consent.content.decode(), "/oauth/authorize")
    fields["allow"] = "Authorize"
    approved = browser.post("/oauth/authorize", fields)
    assert approved.status_code == 302
    return parse_qs(urlsplit(approved["Location"]).query)["code"][0]


def test_code_flow_with_pkce_s256(alice: User, client_for: Callable[[User], Client]) -> None:
    app = _register(Client())
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    code = _authorize(
        client_for(alice),
        app,
        "read",
        code_challenge=challenge.decode(),
        code_challenge_method="S256",
    )
    token_request = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app["redirect_uri"],
        "client_id": app["client_id"],
        "client_secret": app["client_secret"],
    }
    wrong = Client().post("/oauth/token", {**token_request, "code_verifier": "x" * 50})
    assert wrong.status_code == 400
    code = _authorize(
        client_for(alice),
        app,
        "read",
        code_challenge=challenge.decode(),
        code_challenge_method="S256",
    )
    token = Client().post(
        "/oauth/token", {**token_request, "code": code, "code_verifier": verifier}
    )
    assert token.status_code == 200, token.content
    body = token.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "read"
    assert "created_at" in body
    api = Client(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert api.get("/api/v1/accounts/verify_credentials").json()["username"] == "alice"
    assert api.post("/api/v1/statuses", {"status": "no"}).status_code == 403


def test_pkce_plain_is_refused(alice: User, client_for: Callable[[User], Client]) -> None:
    """Only S256: a "plain" challenge (the verifier sent in the clear) gets no code."""
    app = _register(Client())
    browser = client_for(alice)
    consent = browser.get(
        "/oauth/authorize",
        {
            "client_id": app["client_id"],
            "redirect_uri": app["redirect_uri"],
            "response_type": "code",
            "scope": "read",
            "code_challenge": "a" * 43,
            "code_challenge_method": "plain",
        },
    )
    fields = form_fields(consent.content.decode(), "/oauth/authorize")
    fields["allow"] = "Authorize"
    answer = browser.post("/oauth/authorize", fields)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer["Location"]).query)
    assert "code" not in query and query["error"] == ["invalid_request"]


def test_scopes_beyond_the_apps_registration_are_refused(
    alice: User, client_for: Callable[[User], Client]
) -> None:
    app = _register(Client(), scopes="read")
    consent = client_for(alice).get(
        "/oauth/authorize",
        {
            "client_id": app["client_id"],
            "redirect_uri": app["redirect_uri"],
            "response_type": "code",
            "scope": "read write",
        },
    )
    assert consent.status_code == 302
    assert "error=invalid_scope" in consent["Location"]


def test_client_credentials_and_password_grant_off(db: None, alice: User) -> None:
    app = _register(Client())
    credentials = {"client_id": app["client_id"], "client_secret": app["client_secret"]}
    token = Client().post(
        "/oauth/token", {"grant_type": "client_credentials", "scope": "read", **credentials}
    )
    assert token.status_code == 200, token.content
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token.json()['access_token']}")
    assert api.get("/api/v1/apps/verify_credentials").json()["name"] == "PKCE app"
    password = Client().post(
        "/oauth/token",
        {
            "grant_type": "password",
            "username": "alice",
            "password": "correct-horse-battery-staple",
            **credentials,
        },
    )
    assert password.status_code == 400
    assert not AccessToken.objects.filter(user=alice).exists()


def test_denying_on_the_oob_page(alice: User, client_for: Callable[[User], Client]) -> None:
    app = _register(Client(), redirect_uris="urn:ietf:wg:oauth:2.0:oob")
    browser = client_for(alice)
    consent = browser.get(
        "/oauth/authorize",
        {
            "client_id": app["client_id"],
            "redirect_uri": app["redirect_uri"],
            "response_type": "code",
            "scope": "read",
        },
    )
    assert b"Authorize PKCE app?" in consent.content
    fields = form_fields(consent.content.decode(), "/oauth/authorize")
    denied = browser.post("/oauth/authorize", fields)
    assert denied.status_code == 400
    assert b"was not authorized" in denied.content


def test_revoke_ends_the_token(
    alice: User, make_token: Callable[..., str], client_app: ClientApp
) -> None:
    raw = make_token(alice)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/accounts/verify_credentials").status_code == 200
    # The test app's secret is unknown here: a confidential client must authenticate, so the
    # user's Settings page revokes instead (the Mastodon.py journey revokes through /oauth/revoke).
    assert Client().post("/oauth/revoke", {"token": raw}).status_code in {400, 401}
    assert api.get("/api/v1/accounts/verify_credentials").status_code == 200


def test_authorized_apps_in_settings(
    alice: User,
    make_token: Callable[..., str],
    client_app: ClientApp,
    client_for: Callable[[User], Client],
) -> None:
    raw = make_token(alice, "read write")
    browser = client_for(alice)
    page = browser.get("/settings/apps")
    assert b"Test app" in page.content and b"read, write" in page.content
    revoked = browser.post(f"/settings/apps/{client_app.id}/revoke", follow=True)
    assert b"Test app can no longer use your account." in revoked.content
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/accounts/verify_credentials").status_code == 401
    assert b"No app can use your account." in browser.get("/settings/apps").content


def test_authorization_server_metadata(db: None) -> None:
    meta = Client().get("/.well-known/oauth-authorization-server").json()
    assert meta["token_endpoint"].endswith("/oauth/token")
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "password" not in meta["grant_types_supported"]
    assert "read:statuses" in meta["scopes_supported"]


# --- query counts ---------------------------------------------------------------------------


def test_timeline_query_counts(
    alice: User, bob: User, make_post: Any, api_for: Api, django_assert_num_queries: Any
) -> None:
    follow_create(follower=alice, followed=bob)
    for n in range(25):
        make_post(bob, f"post {n}")
    api = api_for(alice)
    # The token (with its user and app), the page (stored feed ids + posts with their authors
    # whole: the Status embeds the Account), the reader's likes and reposts of the page
    # (interactions.selectors.state_for).
    with django_assert_num_queries(3):
        assert len(api.get("/api/v1/timelines/home").json()) == 20
    # A limit above the page size reads a second page.
    with django_assert_num_queries(4):
        assert len(api.get("/api/v1/timelines/home", {"limit": 25}).json()) == 25
    # A reader whose stored feed ends above their page (the pull query continues it below the
    # horizon): the authors whole there too, not a query per deferred author column.
    newest = Post.objects.filter(author=bob).order_by("-id")[0]
    User.objects.filter(id=alice.id).update(feed_horizon=newest.id)
    with django_assert_num_queries(4):
        assert len(api.get("/api/v1/timelines/home").json()) == 20
    # The token, the page, the reader's likes and reposts.
    with django_assert_num_queries(3):
        assert len(api.get("/api/v1/timelines/public").json()) == 20
    with django_assert_num_queries(1):
        assert len(Client().get("/api/v1/timelines/public").json()) == 20
    # A reader back after a long absence (no stored feed: the pull query), the same.
    User.objects.filter(id=alice.id).update(last_seen_at=None)
    page = timeline_selectors.for_you(refreshed(alice), whole_authors=True)
    with django_assert_num_queries(0):
        assert {post.author.date_joined for post in page.items}


def test_a_bad_authorization_request_shows_our_error_page(
    alice: User, client_for: Callable[[User], Client]
) -> None:
    page = client_for(alice).get(
        "/oauth/authorize", {"client_id": "nope", "response_type": "code", "scope": "read"}
    )
    assert page.status_code == 400
    assert "This app can't be authorized" in page.content.decode()


def test_update_credentials_takes_multipart(alice: User, api_for: Api) -> None:
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    response = api_for(alice).patch(
        "/api/v1/accounts/update_credentials",
        encode_multipart(BOUNDARY, {"note": "from a phone", "display_name": "ignored"}),
        content_type=MULTIPART_CONTENT,
    )
    assert response.status_code == 200
    assert refreshed(alice).description == "from a phone"


def test_a_wrong_method_is_405_json(alice: User, api_for: Api) -> None:
    response = api_for(alice).put("/api/v1/timelines/home")
    assert response.status_code == 405
    assert "error" in response.json()


def test_own_account_source_is_not_shown_in_the_same_answers_other_entities(alice: User) -> None:
    """Account entities are made once per answer and account; the signed-in user's `source`
    (credential_account) is added to a copy, never to the entity a status of theirs shows."""
    from microblog.api.serializers import Context, account, credential_account

    ctx = Context(base="https://example.org", domain="example.org")
    assert "source" in credential_account(alice, ctx)
    assert "source" not in account(alice, ctx)


def test_a_body_too_large_is_refused_in_the_apis_error_shape(alice: User, api_for: Api) -> None:
    """The body limit refuses before the API's own middleware runs; the answer is still
    Mastodon's `{"error": ...}`, not the HTML error page."""
    response = api_for(alice).post("/api/v1/statuses", {"status": "x" * 100_000})
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()
    assert not Post.objects.exists()
