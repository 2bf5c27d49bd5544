"""Regression tests for the security review (issue 10) and for refused forms that keep what the
user typed (issue 11, items 3 and 5). Each test states what a user or an attacker sees; every one
of them failed before its fix. The classes are listed in docs/hostile-input.md.
"""

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from prometheus_client import REGISTRY

from microblog import ratelimit
from microblog.accounts.models import User
from microblog.moderation.models import Report
from microblog.posts.models import Post
from tests.conftest import PASSWORD, refreshed
from tests.stream.helpers import app_process, database_url, free_port, subprocess_env

NOW = (int(time.time()) // 86400) * 86400 + 1  # one second into today (UTC)
LOGIN_FAILED = "Incorrect username or password."
PARENT_MISSING = "The post you are replying to no longer exists."
EMPTY_POST = "Write something: the post cannot be empty."
SECRET = "the hidden post's secret text"


@pytest.fixture
def limiter(settings: Any, monkeypatch: pytest.MonkeyPatch, db: None) -> Any:
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_STORE = "database"
    settings.TRUSTED_PROXIES = []
    monkeypatch.setattr(ratelimit, "clock", lambda: float(NOW))
    return settings


def ip_client(address: str = "203.0.113.7") -> Client:
    return Client(REMOTE_ADDR=address)


def text(response: HttpResponse) -> str:
    import html

    return html.unescape(response.content.decode())


def log_in(client: Client, username: str, password: str = PASSWORD) -> HttpResponse:
    return client.post("/login", {"username": username, "password": password})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def hidden_post(alice: User, make_post: Callable[..., Post]) -> Post:
    post = make_post(alice, SECRET)
    Post.objects.filter(id=post.id).update(is_hidden=True)
    return post


# --- 1. Hidden posts are shown to no one but their author and staff ---------------------------


@pytest.mark.parametrize("content", ["", "x" * 201])
def test_a_refused_reply_to_a_hidden_post_does_not_show_it(
    hidden_post: Post, bob: User, client_for: Any, content: str
) -> None:
    response = client_for(bob).post("/posts", {"content": content, "parent_id": hidden_post.id})
    assert response.status_code == 400
    assert SECRET not in text(response)
    assert content in text(response)  # the text is kept


def test_a_reply_to_a_hidden_post_is_refused(hidden_post: Post, bob: User, client_for: Any) -> None:
    response = client_for(bob).post("/posts", {"content": "psst", "parent_id": hidden_post.id})
    assert response.status_code == 400
    assert PARENT_MISSING in text(response)
    assert "psst" in text(response)
    assert SECRET not in text(response)
    assert not Post.objects.filter(parent_id=hidden_post.id).exists()
    assert refreshed_post(hidden_post).replies_count == 0


def test_the_author_and_staff_may_still_reply_to_a_hidden_post(
    hidden_post: Post, alice: User, make_user: Callable[..., User], client_for: Any
) -> None:
    staff = make_user("mod", is_staff=True)
    for user in (alice, staff):
        response = client_for(user).post(
            "/posts", {"content": "noted", "parent_id": hidden_post.id}
        )
        assert response.status_code == 302
    assert Post.objects.filter(parent_id=hidden_post.id).count() == 2


def test_the_delete_page_of_a_hidden_post_is_a_404_for_others(
    hidden_post: Post, bob: User, client_for: Any
) -> None:
    response = client_for(bob).get(f"/posts/{hidden_post.id}/delete")
    assert response.status_code == 404
    assert SECRET not in text(response)


def refreshed_post(post: Post) -> Post:
    post.refresh_from_db()
    return post


# --- 2. IPv4-mapped addresses ----------------------------------------------------------------


def test_ipv4_mapped_addresses_are_counted_as_ipv4(settings: Any) -> None:
    settings.TRUSTED_PROXIES = []
    request = RequestFactory().get("/", REMOTE_ADDR="::ffff:203.0.113.9")
    assert ratelimit.ip_subject(request) == "ip:203.0.113.9"


def test_a_trusted_proxy_on_a_dual_stack_socket_is_recognised(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = RequestFactory().get(
        "/", REMOTE_ADDR="::ffff:10.0.0.2", HTTP_X_FORWARDED_FOR="::ffff:198.51.100.4"
    )
    assert ratelimit.ip_subject(request) == "ip:198.51.100.4"


def test_one_ipv4_client_on_a_dual_stack_server_locks_out_only_itself(
    limiter: Any, alice: User
) -> None:
    attacker = ip_client("::ffff:198.51.100.66")
    for n in range(6):
        log_in(attacker, f"user{n}", "wrong")
    other = ip_client("::ffff:203.0.113.80")
    assert log_in(other, "alice").status_code == 302


# --- 3. Concurrent failed log-ins ------------------------------------------------------------


@pytest.mark.postgres_only  # SQLite's in-memory test database locks its tables across threads
def test_concurrent_failed_log_ins_check_no_more_passwords_than_the_limit(
    limiter: Any, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from microblog.accounts import views

    checked: list[str] = []
    real = views.authenticate

    def slow_check(*args: Any, **kwargs: Any) -> Any:
        checked.append(kwargs["username"])
        time.sleep(0.3)  # the hash, long enough for every request to start meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "authenticate", slow_check)
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def attempt(n: int) -> None:
        client = ip_client(f"198.51.100.{n + 1}")
        barrier.wait(5)
        try:
            statuses.append(log_in(client, "alice", "wrong").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(checked) == 5
    assert sorted(statuses) == [400] * 5 + [429] * 7


# --- 4. Usernames are ASCII: the limiter key and the lookup agree ---------------------------


@pytest.mark.parametrize("name", ["al\u0131ce", "ALİCE", "\uff41lice", "alice\u200b", "a" * 51])
def test_a_non_ascii_or_malformed_username_is_refused_before_any_lookup(
    limiter: Any, alice: User, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from microblog.accounts import views

    checked: list[str] = []
    monkeypatch.setattr(views, "authenticate", lambda *a, **k: checked.append(k["username"]))
    response = log_in(ip_client(), name)
    assert response.status_code == 400
    assert LOGIN_FAILED in text(response)
    assert checked == []


def test_a_locked_username_stays_locked_under_unicode_case_folding(
    limiter: Any, alice: User
) -> None:
    for n in range(5):
        log_in(ip_client(f"198.51.100.{n + 10}"), "alice", "wrong")
    attacker = ip_client("198.51.100.10")
    for name in ("al\u0131ce", "ALİCE", "Alice"):
        response = log_in(attacker, name)
        assert response.status_code in {400, 429}
        assert not signed_in(attacker)


@pytest.mark.parametrize("name", ["al\u0131ce", "\uff41lice", "al\x00ice"])
def test_the_backend_finds_no_account_for_a_malformed_name(alice: User, name: str) -> None:
    assert authenticate(None, username=name, password=PASSWORD) is None


# --- 5. Values from the request are checked before the database ------------------------------


@pytest.mark.parametrize("name", ["al\x00ice", "\x00", "alice\x00" + "x" * 300])
def test_a_nul_byte_in_the_log_in_username_is_a_400(limiter: Any, alice: User, name: str) -> None:
    response = log_in(ip_client(), name)
    assert response.status_code == 400
    assert LOGIN_FAILED in text(response)


@pytest.mark.parametrize("cookie", ["abcdefgh\x00ijkl", "\x00" * 40, "x" * 5000, "é" * 32])
def test_a_malformed_session_cookie_is_a_visitor(db: None, alice: User, cookie: str) -> None:
    client = Client()
    client.cookies["sessionid"] = cookie
    for path in ("/", "/all", "/login", "/@alice"):
        response = client.get(path)
        assert response.status_code in {200, 302}, path


# --- 6. /metrics with a non-ASCII bearer token -----------------------------------------------


@pytest.mark.parametrize("token", ["\u00fc", "s3cret\u00e9", "\u2603" * 10, ""])
def test_metrics_with_a_non_ascii_bearer_token_is_a_403(
    db: None, settings: Any, token: str
) -> None:
    settings.METRICS_TOKEN = "s3cret"
    settings.METRICS_ALLOWED_NETWORKS = []
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


# --- 7. Made-up HTTP methods share one metric label ------------------------------------------


def test_made_up_http_methods_are_one_metric_series(db: None) -> None:
    for method in ("ZZMETHOD1", "ZZMETHOD2", "M\u00c9THOD"):
        assert Client().generic(method, "/").status_code == 405
    for method in ("ZZMETHOD1", "ZZMETHOD2", "M\u00c9THOD"):
        labels = {"route": "home", "method": method, "status": "405"}
        assert REGISTRY.get_sample_value("microblog_http_requests_total", labels) is None
    other = {"route": "home", "method": "other", "status": "405"}
    assert (REGISTRY.get_sample_value("microblog_http_requests_total", other) or 0) >= 3


# --- 8. Bodies larger than the route can use -------------------------------------------------


def test_a_body_on_a_get_is_refused_with_a_413(db: None) -> None:
    for path in ("/up", "/", "/login"):
        response = Client().generic("GET", path, b"x" * 100, content_type="text/plain")
        assert response.status_code == 413, path
        assert "too large" in text(response)
    assert Client().generic("HEAD", "/up", b"x").status_code == 413
    assert Client().get("/up").status_code == 200


def _raw_request(port: int, head: str, body: bytes = b"", wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head.encode("latin-1") + body)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    return received


def test_the_one_port_server_refuses_large_bodies_without_reading_them(tmp_path: Any) -> None:
    """`microblog serve` (pages and stream on one port) answers a request that announces a body
    larger than the route can use at once, before the body is sent, with the 413 page and the
    security headers; an ordinary form post still works."""
    with database_url(tmp_path) as url:
        port = free_port()
        env = subprocess_env(url)
        command = ["serve", "--port", str(port), "--job-workers", "0", "--stream", "same-port"]
        with app_process(command, env, port):
            for method, path in (("GET", "/up"), ("POST", "/login"), ("POST", "/posts")):
                head = (
                    f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    "Content-Length: 15000000\r\nConnection: close\r\n\r\n"
                )
                answer = _raw_request(port, head).decode("latin-1")
                assert answer.startswith("HTTP/1.1 413"), (method, path, answer[:200])
                assert "x-content-type-options: nosniff" in answer.lower()
                assert "content-security-policy:" in answer.lower()
            body = b"username=nobody&password=wrong"
            head = (
                "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            # No CSRF cookie: the form was read (403 "Form expired"), not refused for its size.
            assert _raw_request(port, head, body).decode("latin-1").startswith("HTTP/1.1 403")


# --- 10. Password re-checks are limited like log-ins ------------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "extra"),
    [
        (
            "/settings/password",
            "current_password",
            {
                "new_password": "a-new-long-password-1",
                "new_password_confirmation": "a-new-long-password-1",
            },
        ),
        ("/settings/delete", "password", {}),
    ],
)
def test_wrong_current_passwords_are_limited(
    limiter: Any, alice: User, client_for: Any, path: str, field: str, extra: dict[str, str]
) -> None:
    client = client_for(alice)
    for _ in range(5):
        response = client.post(path, {field: "wrong", **extra})
        assert response.status_code == 400
    response = client.post(path, {field: PASSWORD, **extra})
    assert response.status_code == 429
    assert "Wait" in text(response)
    assert int(response["Retry-After"]) > 0
    assert refreshed(alice).check_password(PASSWORD)
    assert User.objects.filter(id=alice.id).exists()


# --- 11. A named account cannot be locked out by strangers ------------------------------------


def _lock(username: str) -> None:
    for n in range(5):
        log_in(ip_client(f"198.51.100.{n + 10}"), username, "wrong")


def test_a_browser_that_logged_in_before_gets_through_a_locked_username(
    limiter: Any, alice: User
) -> None:
    browser = ip_client("203.0.113.30")
    assert log_in(browser, "alice").status_code == 302
    browser.post("/logout")
    _lock("alice")
    # The attacker's addresses are refused, even with the right password.
    assert log_in(ip_client("198.51.100.10"), "alice").status_code == 429
    # The browser that logged in before, from an address of its own, gets in...
    assert log_in(browser, "alice").status_code == 302
    assert signed_in(browser)


def test_without_a_device_cookie_a_locked_username_stays_locked(
    limiter: Any, alice: User, bob: User
) -> None:
    """The documented choice: an address without failures is not let past the lock (it would
    give an attacker one guess per address against any account); the lock is that name's only."""
    _lock("alice")
    fresh = ip_client("203.0.113.31")
    assert log_in(fresh, "alice").status_code == 429
    assert not signed_in(fresh)
    assert log_in(fresh, "bob").status_code == 302


def test_a_known_browser_that_keeps_failing_loses_its_pass(limiter: Any, alice: User) -> None:
    browser = ip_client("203.0.113.33")
    assert log_in(browser, "alice").status_code == 302
    browser.post("/logout")
    _lock("alice")
    for n in range(5):
        browser.defaults["REMOTE_ADDR"] = f"203.0.113.{100 + n}"
        assert log_in(browser, "alice", "wrong").status_code == 400
    browser.defaults["REMOTE_ADDR"] = "203.0.113.120"
    assert log_in(browser, "alice").status_code == 429


def test_the_browser_that_signed_up_is_a_known_browser(limiter: Any) -> None:
    browser = ip_client("203.0.113.34")
    assert _sign_up(browser, "newbie").status_code == 302
    browser.post("/logout")
    _lock("newbie")
    assert log_in(browser, "newbie").status_code == 302


def test_a_forged_or_foreign_device_cookie_does_not_unlock(
    limiter: Any, alice: User, bob: User
) -> None:
    bobs_browser = ip_client("203.0.113.40")
    assert log_in(bobs_browser, "bob").status_code == 302
    bobs_browser.post("/logout")
    _lock("alice")
    for cookie in (None, "alice", "forged:alice"):
        attacker = ip_client("198.51.100.11")
        if cookie is not None:
            attacker.cookies[ratelimit.DEVICE_COOKIE] = cookie
        else:
            attacker.cookies[ratelimit.DEVICE_COOKIE] = bobs_browser.cookies[
                ratelimit.DEVICE_COOKIE
            ].value
        assert log_in(attacker, "alice").status_code == 429


# --- 12. Invisible-only text is empty -------------------------------------------------------

INVISIBLE = ["\u200b", "\u2800", "\u3164", "\ufeff", "\U000e0041\U000e0042", " \u200b\u2060 \u00ad"]


@pytest.mark.parametrize("content", INVISIBLE)
def test_invisible_only_posts_are_empty(alice: User, client_for: Any, content: str) -> None:
    response = client_for(alice).post("/posts", {"content": content})
    assert response.status_code == 400
    assert EMPTY_POST in text(response)
    assert not Post.objects.exists()


def test_emoji_sequences_with_joiners_are_still_posts(alice: User, client_for: Any) -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert client_for(alice).post("/posts", {"content": family}).status_code == 302
    assert Post.objects.get().content == family


@pytest.mark.parametrize("description", INVISIBLE)
def test_invisible_only_bios_are_cleared(alice: User, client_for: Any, description: str) -> None:
    User.objects.filter(id=alice.id).update(description="old")
    assert client_for(alice).post("/settings", {"description": description}).status_code == 302
    assert refreshed(alice).description == ""


def test_invisible_only_report_notes_are_empty(
    alice: User, bob: User, make_post: Callable[..., Post], client_for: Any
) -> None:
    post = make_post(alice)
    response = client_for(bob).post(
        f"/posts/{post.id}/report", {"reason": "spam", "text": "\u2800"}
    )
    assert response.status_code == 302
    assert Report.objects.get().text == ""


# --- 13. The admin's log-in is the app's ----------------------------------------------------


def test_the_admin_log_in_sends_to_the_limited_log_in(
    limiter: Any, make_user: Callable[..., User]
) -> None:
    make_user("admin", is_staff=True, is_superuser=True)
    attacker = ip_client("198.51.100.77")
    for _ in range(12):
        response = attacker.post(
            "/admin/login/?next=/admin/", {"username": "admin", "password": "guess"}
        )
        assert response.status_code == 302
        assert response["Location"].startswith("/login?next=")
        assert not signed_in(attacker)
    # The admin's account is guarded by the same counters as /login.
    _lock("admin")
    assert log_in(ip_client("198.51.100.10"), "admin").status_code == 429


def test_staff_reach_the_admin_through_the_log_in(make_user: Callable[..., User]) -> None:
    make_user("admin", is_staff=True, is_superuser=True)
    client = Client()
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/login?next=/admin/"
    response = client.post(
        "/login?next=/admin/", {"username": "admin", "password": PASSWORD, "next": "/admin/"}
    )
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_signed_in_user_who_is_not_staff_gets_a_403_not_a_loop(
    alice: User, client_for: Any
) -> None:
    response = client_for(alice).get("/admin/login/?next=/admin/")
    assert response.status_code == 403


def test_the_admin_password_change_is_the_settings_page(
    make_user: Callable[..., User], client_for: Any
) -> None:
    staff = make_user("admin", is_staff=True, is_superuser=True)
    response = client_for(staff).post(
        "/admin/password_change/",
        {"old_password": "guess", "new_password1": "x", "new_password2": "x"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/settings"


# --- 14. Caching and security headers --------------------------------------------------------


def test_signed_in_pages_are_private_and_not_stored(
    make_user: Callable[..., User], client_for: Any
) -> None:
    staff = make_user("mod", is_staff=True)
    client = client_for(staff)
    for path in ("/", "/settings", "/staff/moderation", "/@mod", "/all"):
        response = client.get(path)
        assert response.status_code == 200, path
        directives = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= directives, path


SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


def test_every_refusal_carries_the_security_headers(limiter: Any, alice: User) -> None:
    responses = {
        "413 body on GET": Client().generic("GET", "/up", b"x" * 10, content_type="text/plain"),
        "413 large form": Client().generic(
            "POST", "/login", b"a=" + b"x" * 70000, content_type="application/x-www-form-urlencoded"
        ),
        "404": Client().get("/nope"),
        "405": Client().put("/login"),
        "400 host": Client(HTTP_HOST="evil.example").get("/"),
    }
    for _ in range(6):
        responses["429"] = log_in(ip_client("198.51.100.99"), "x", "wrong")
    for name, response in responses.items():
        for header in SECURITY_HEADERS:
            assert header in response, (name, header)
        assert "Content-Security-Policy" in response, name


# --- Issue 11, item 3: only created accounts use the sign-up quota ----------------------------


def _sign_up(client: Client, name: str) -> HttpResponse:
    return client.post(
        "/signup", {"username": name, "password": PASSWORD, "password_confirmation": PASSWORD}
    )


def test_failed_sign_ups_do_not_use_the_quota(limiter: Any) -> None:
    address = "203.0.113.60"
    assert _sign_up(ip_client(address), "alice").status_code == 302
    for taken in ("ALICE", "  alice  ", "alice"):
        response = _sign_up(ip_client(address), taken)
        assert response.status_code == 400
        assert "That username is taken." in text(response)
    assert _sign_up(ip_client(address), "bob").status_code == 302
    assert _sign_up(ip_client(address), "carol").status_code == 302
    refused = _sign_up(ip_client(address), "dave")
    assert refused.status_code == 429
    assert User.objects.count() == 3


# --- Issue 11, item 5: a refused form keeps the text and says when to retry -------------------


def test_a_rate_limited_post_keeps_its_text(limiter: Any, alice: User, client_for: Any) -> None:
    client = client_for(alice)
    for n in range(10):
        assert client.post("/posts", {"content": f"post {n}"}).status_code == 302
    response = client.post("/posts", {"content": "my precious words"})
    assert response.status_code == 429
    page = text(response)
    assert "my precious words" in page
    assert "You are posting too fast. Wait" in page
    assert int(response["Retry-After"]) > 0
    assert Post.objects.count() == 10


def test_a_rate_limited_reply_keeps_its_text_and_its_parent(
    limiter: Any, alice: User, bob: User, make_post: Callable[..., Post], client_for: Any
) -> None:
    parent = make_post(bob, "the parent")
    client = client_for(alice)
    for n in range(10):
        client.post("/posts", {"content": f"post {n}"})
    response = client.post("/posts", {"content": "a kept reply", "parent_id": parent.id})
    assert response.status_code == 429
    assert "a kept reply" in text(response)
    assert "the parent" in text(response)


def test_a_throttled_log_in_keeps_the_username(limiter: Any) -> None:
    client = ip_client("198.51.100.5")
    for n in range(5):
        log_in(client, f"someone{n}", "wrong")
    response = log_in(client, "patient_user")
    assert response.status_code == 429
    assert 'value="patient_user"' in response.content.decode()
    assert "Too many failed log-ins. Wait" in text(response)


def test_a_throttled_sign_up_keeps_the_username(limiter: Any) -> None:
    for n in range(3):
        _sign_up(ip_client("203.0.113.61"), f"new{n}")
    response = _sign_up(ip_client("203.0.113.61"), "late_comer")
    assert response.status_code == 429
    assert 'value="late_comer"' in response.content.decode()
    assert "Wait" in text(response)


def test_a_throttled_report_keeps_the_note(
    limiter: Any, alice: User, bob: User, make_post: Callable[..., Post], client_for: Any
) -> None:
    posts = [make_post(alice, f"p{n}") for n in range(11)]
    client = client_for(bob)
    for post in posts[:10]:
        assert client.post(f"/posts/{post.id}/report", {"reason": "spam"}).status_code == 302
    response = client.post(
        f"/posts/{posts[10].id}/report", {"reason": "spam", "text": "my careful note"}
    )
    assert response.status_code == 429
    assert "my careful note" in text(response)
    assert "Wait" in text(response)


def test_a_throttled_json_client_still_gets_json(
    limiter: Any, alice: User, client_for: Any
) -> None:
    client = client_for(alice)
    for n in range(10):
        client.post("/posts", {"content": f"post {n}"})
    response = client.post("/posts", {"content": "x"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 429
    assert response.json()["error"]["status"] == 429


# --- Past the findings: NUL and non-ASCII in every value a request carries -------------------

HOSTILE_VALUES = ["\x00", "a\x00b", "\u0131", "\u202e", "x" * 3000]
HOSTILE_PAGES = [
    "/",
    "/following",
    "/all",
    "/@alice",
    "/@alice/followers",
    "/settings",
    "/login",
    "/signup",
    "/staff/moderation",
    "/staff/moderation/hidden",
    "/staff/jobs",
    "/admin/",
    "/admin/accounts/user/",
    "/admin/posts/post/",
    "/admin/moderation/report/",
    "/health",
]
HOSTILE_FORMS = [
    "/posts",
    "/login",
    "/signup",
    "/settings",
    "/settings/password",
    "/settings/delete",
    "/@alice/follow",
    "/@alice/block",
]
FIELDS = [
    "q",
    "o",
    "p",
    "cursor",
    "since",
    "next",
    "content",
    "parent_id",
    "username",
    "password",
    "description",
    "current_password",
    "reason",
    "text",
]


def test_no_hostile_value_anywhere_is_a_server_error(
    alice: User, make_user: Callable[..., User], make_post: Callable[..., Post], client_for: Any
) -> None:
    """Every page and form, signed in as staff and as a visitor, with NUL bytes, a dotless i,
    a bidi override, invalid UTF-8 and a long string in every query parameter, form field and
    the headers the app reads: never a 5xx (PostgreSQL refuses NUL bytes; `?next=` without a
    leading slash was taken for a view name)."""
    make_post(alice, "something")
    staff = make_user("root", is_staff=True, is_superuser=True)
    for client in (client_for(staff), Client()):
        for value in HOSTILE_VALUES:
            wire = value.encode("utf-8", "surrogatepass").decode("latin-1")
            headers = {
                "HTTP_X_REQUEST_ID": wire,
                "HTTP_X_FORWARDED_FOR": wire,
                "HTTP_HX_REQUEST": wire,
                "HTTP_ACCEPT": wire,
                "HTTP_AUTHORIZATION": f"Bearer {wire}",
            }
            data = dict.fromkeys(FIELDS, value)
            for path in HOSTILE_PAGES:
                response = client.get(path, data, **headers)
                assert response.status_code < 500, (path, value, response.status_code)
            for path in HOSTILE_FORMS:
                response = client.post(path, data, **headers)
                assert response.status_code < 500, (path, value, response.status_code)
        raw = "&".join(f"{field}=%FF%00" for field in FIELDS)
        for path in HOSTILE_PAGES:
            response = client.get(f"{path}?{raw}")
            assert response.status_code < 500, (path, "%FF", response.status_code)


@pytest.mark.parametrize("target", ["abc", "home", "a\x00b", "/ok\x00", "\\\\evil.example"])
def test_a_next_that_is_not_a_path_is_ignored(alice: User, client_for: Any, target: str) -> None:
    client = client_for(alice)
    response = client.get("/login", {"next": target})
    assert response.status_code == 302
    assert response["Location"] == "/"
    response = client.post("/posts", {"content": "hi", "next": target})
    assert response.status_code == 302
    assert response["Location"] == "/"
