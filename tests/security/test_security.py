"""Hardening (issue 5, item 3): the Content Security Policy and what our pages must be to live under
it, the production security settings, session rotation on log-in, and log-in failures that cost
the same work whether or not the account exists.

The policy in a real browser (zero violations, htmx and the counter still working, the admin) is
in tests/pages/test_browser.py.
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import Argon2PasswordHasher, get_hasher
from django.template.loader import render_to_string
from django.test import Client

from microblog.accounts.models import User
from tests.conftest import PASSWORD

SRC = Path(__file__).resolve().parents[2] / "src" / "microblog"
MICROBLOG = Path(sys.executable).with_name("microblog")


# --- the policy ----------------------------------------------------------------------------------


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_pages_carry_the_policy(db: None, client: Client) -> None:
    response = client.get("/login")

    policy = directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"][0] == "'self'"
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    # Nothing inline is allowed wholesale, and nothing is evaluated.
    for name in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[name]
        assert "'unsafe-eval'" not in policy[name]
        assert "'unsafe-hashes'" not in policy[name]


def test_the_nonce_is_fresh_per_response_and_matches_the_script_tags(
    db: None, client: Client
) -> None:
    nonces = []
    for _ in range(2):
        response = client.get("/login")
        policy = directives(response["Content-Security-Policy"])
        (nonce_source,) = [v for v in policy["script-src"] if v.startswith("'nonce-")]
        nonce = nonce_source.removeprefix("'nonce-").removesuffix("'")
        scripts = re.findall(r"<script[^>]*>", response.content.decode())
        assert scripts
        assert all(f'nonce="{nonce}"' in tag for tag in scripts)
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert len(nonces[0]) >= 16


def test_htmx_is_configured_to_need_no_inline_style_and_no_eval(db: None, client: Client) -> None:
    page = client.get("/").content.decode()

    assert (
        """<meta name="htmx-config" content='{"includeIndicatorStyles": false, """
        """"allowEval": false, "allowScriptTags": false}'>"""
    ) in page
    # The indicator rules htmx would have injected are in our stylesheet instead.
    css = (SRC / "core" / "static" / "microblog" / "app.css").read_text()
    assert ".htmx-request .htmx-indicator" in css


def test_report_only_and_report_uri_settings(tmp_path: Path) -> None:
    code = "print(json.dumps([settings.SECURE_CSP, settings.SECURE_CSP_REPORT_ONLY]))"
    enforced, report_only = run_settings_json(
        tmp_path,
        code,
        CSP_REPORT_URI="https://reports.example.org/csp",
        CSP_REPORT_ONLY="1",
        CSP_CONNECT_SRC="https://other.example.org",
        STREAM_PUBLIC_URL="https://stream.example.org:8443/events/",
    )
    assert enforced == {}
    assert report_only["report-uri"] == "https://reports.example.org/csp"
    assert report_only["connect-src"] == [
        "'self'",
        "https://stream.example.org:8443",
        "https://other.example.org",
    ]


# --- no inline script or style in our pages ------------------------------------------------------


class InlineCodeFinder(HTMLParser):
    """Collects what a strict CSP would refuse: style attributes, event-handler attributes,
    `javascript:` URLs, inline <script> and <style> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if "style" in names:
            self.problems.append(f"style attribute on <{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event handler {name} on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL in {name} on <{tag}>")
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")


def inline_code(html: str) -> list[str]:
    finder = InlineCodeFinder()
    finder.feed(html)
    finder.close()
    return finder.problems


def test_the_finder_finds_what_it_looks_for() -> None:
    html = (
        '<div style="color: red"></div><a href="JavaScript:alert(1)">x</a><button onclick="f()">'
        "<script>alert(1)</script><script src=/ok.js></script><style>p{}</style>"
    )
    assert len(inline_code(html)) == 5


@pytest.fixture
def site(make_user: Callable[..., User], make_post: Callable[..., Any]) -> dict[str, Any]:
    """Enough content that every main page shows its parts: posts with replies, follows, more
    than one page of posts, a staff user."""
    alice = make_user("alice", is_staff=True, is_superuser=True)
    bob = make_user("bob")
    post = make_post(alice, "hello <b>world</b>")
    reply = make_post(bob, "a reply", parent=post)
    make_post(alice, "a reply to the reply", parent=reply)
    for n in range(settings.PAGE_SIZE + 2):
        make_post(bob, f"bob post {n}")
    from microblog.follows.services import follow_create

    follow_create(follower=alice, followed=bob)
    follow_create(follower=bob, followed=alice)
    return {"alice": alice, "bob": bob, "post": post}


ANONYMOUS_PAGES = [
    "/",
    "/all",
    "/login",
    "/login?next=/settings",
    "/signup",
    "/@alice",
    "/@alice/followers",
    "/@alice/following",
    "/posts/{post}",
    "/no-such-page",
    "/@nobody",
]
SIGNED_IN_PAGES = [
    "/",
    "/following",
    "/all",
    "/settings",
    "/@alice",
    "/@bob",
    "/@bob/followers",
    "/posts/{post}",
    "/posts/{post}/delete",
    "/staff/jobs",
    "/logout",  # 405
]


def pages_seen(site: dict[str, Any], client: Client, paths: list[str]) -> Iterator[tuple[str, Any]]:
    for path in paths:
        url = path.format(post=site["post"].id)
        response = client.get(url)
        assert response.status_code in {200, 404, 405}, (url, response.status_code)
        yield url, response
        # The htmx fragment of the next page, where there is one.
        html = response.content.decode()
        match = re.search(r'hx-get="([^"]+)"', html)
        if match:
            fragment_url = match.group(1).replace("&amp;", "&")
            if fragment_url.startswith("?"):
                fragment_url = url.split("?")[0] + fragment_url
            fragment = client.get(fragment_url, headers={"HX-Request": "true"})
            assert fragment.status_code == 200, fragment_url
            yield f"{fragment_url} (htmx)", fragment


def test_no_page_has_inline_script_or_style(site: dict[str, Any], client_for: Any) -> None:
    anonymous = Client()
    signed_in = client_for(site["alice"])
    seen = [
        *pages_seen(site, anonymous, ANONYMOUS_PAGES),
        *pages_seen(site, signed_in, SIGNED_IN_PAGES),
        # Form errors and flash messages.
        ("/login (failed)", Client().post("/login", {"username": "alice", "password": "wrong"})),
        ("/signup (invalid)", Client().post("/signup", {"username": "x!", "password": "1"})),
        ("/posts (posted)", signed_in.post("/posts", {"content": "fresh"}, follow=True)),
        ("/settings (invalid)", signed_in.post("/settings", {"description": "x" * 500})),
        ("CSRF failure", Client(enforce_csrf_checks=True).post("/login", {})),
    ]
    assert len(seen) > len(ANONYMOUS_PAGES) + len(SIGNED_IN_PAGES)
    fragments = [url for url, _ in seen if url.endswith("(htmx)")]
    assert len(fragments) >= 3
    for url, response in seen:
        assert "text/html" in response["Content-Type"], url
        assert "Content-Security-Policy" in response, url
        assert inline_code(response.content.decode()) == [], url


def test_the_500_page_has_no_inline_script_or_style() -> None:
    assert inline_code(render_to_string("500.html")) == []


def test_no_template_has_inline_script_or_style() -> None:
    """Also catches templates the page test does not reach."""
    templates = sorted(SRC.glob("*/jinja2/**/*.html"))
    assert len(templates) > 10
    for template in templates:
        source = re.sub(r"\{#.*?#\}", "", template.read_text(), flags=re.DOTALL)  # comments
        assert not re.search(r"\sstyle\s*=", source), template
        assert not re.search(r"\son[a-z]+\s*=", source), template
        assert "javascript:" not in source.lower(), template
        assert "<style" not in source, template
        for tag in re.findall(r"<script\b[^>]*>", source):
            assert "src=" in tag, (template, tag)


# --- production settings -------------------------------------------------------------------------


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A production-like environment: DEBUG off, a real key, none of the test run's overrides
    (tests/settings.py sets SECURE_SSL_REDIRECT=0 in this process's environment)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="microblog.settings",
        DEBUG="0",
        SECRET_KEY="production-like-" + "k" * 50,
        ALLOWED_HOSTS="microblog.example.org",
        DATA_DIR=str(tmp_path),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def run_settings_json(tmp_path: Path, code: str, **extra: str) -> Any:
    """Runs `code` with the production settings loaded in a fresh interpreter; it prints JSON."""
    prelude = "import json; import django; django.setup(); from django.conf import settings;"
    result = subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=production_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_settings_turn_the_https_protections_on(tmp_path: Path) -> None:
    names = [
        "DEBUG",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_CONTENT_TYPE_NOSNIFF",
        "X_FRAME_OPTIONS",
        "SECURE_CSP",
    ]
    code = f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    values = run_settings_json(tmp_path, code)

    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["SECURE_CSP"]["script-src"][0] == "'self'"


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(MICROBLOG), "check", "--deploy", "--fail-level", "WARNING"],
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


# --- sessions ------------------------------------------------------------------------------------


def test_a_session_key_planted_before_log_in_does_not_authenticate_after(
    db: None, alice: User
) -> None:
    """Session fixation: an attacker who knows (or set) the victim's session key before log-in
    gets nothing from it, because log-in moves the session to a new key."""
    victim = Client()
    victim.get("/login")
    session = victim.session
    session["visited"] = True
    session.save()
    planted = session.session_key
    assert planted

    response = victim.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302

    new_key = victim.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key != planted
    assert victim.get("/settings").status_code == 200
    attacker = Client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = planted
    response = attacker.get("/settings")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")


def test_the_session_cookie_is_http_only_and_same_site(db: None, alice: User) -> None:
    client = Client()
    client.post("/login", {"username": "alice", "password": PASSWORD})

    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


# --- no enumeration through timing ---------------------------------------------------------------


@pytest.fixture
def counted_hashing(settings: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The production hasher list, with every encode and verify of its hashers counted."""
    settings.PASSWORD_HASHERS = settings.PRODUCTION_PASSWORD_HASHERS
    calls: dict[str, int] = {}
    for path in settings.PASSWORD_HASHERS:
        module_name, class_name = path.rsplit(".", 1)
        hasher_class = getattr(__import__(module_name, fromlist=[class_name]), class_name)
        for method in ("encode", "verify"):
            original = getattr(hasher_class, method)

            def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                key = f"{type(self).__name__}.{_original.__name__}"
                calls[key] = calls.get(key, 0) + 1
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(hasher_class, method, spy)
    return calls


def hashing_work(calls: dict[str, int], attempt: Callable[[], Any]) -> dict[str, int]:
    calls.clear()
    attempt()
    return dict(calls)


def test_an_unknown_username_costs_the_same_hashing_as_a_wrong_password(
    make_user: Callable[..., User], counted_hashing: dict[str, int]
) -> None:
    make_user("alice")  # hashed with Argon2: the production list is in force
    make_user("sleepy", is_active=False)
    assert User.objects.get(username="alice").password.startswith("argon2$")

    def log_in(username: str, password: str) -> Callable[[], Any]:
        return lambda: Client().post("/login", {"username": username, "password": password})

    wrong_password = hashing_work(counted_hashing, log_in("alice", "not-the-password"))
    unknown_user = hashing_work(counted_hashing, log_in("nobody_here", "not-the-password"))
    inactive = hashing_work(counted_hashing, log_in("sleepy", PASSWORD))

    # One Argon2 run each: a verify of the stored hash, or an encode of the dummy password.
    assert sum(wrong_password.values()) == sum(unknown_user.values()) == 1
    assert sum(inactive.values()) == 1
    assert set(wrong_password) == {"Argon2PasswordHasher.verify"}
    assert set(unknown_user) == {"Argon2PasswordHasher.encode"}
    # ...with the same parameters, so the same memory and time (measured in
    # bench/login_timing.py, docs/benchmarks.md).
    assert isinstance(get_hasher("default"), Argon2PasswordHasher)


def test_authenticate_directly_costs_the_same_too(
    make_user: Callable[..., User], counted_hashing: dict[str, int]
) -> None:
    make_user("alice")
    for username in ("alice", "ALICE", "nobody_here", ""):
        work = hashing_work(
            counted_hashing, lambda u=username: authenticate(username=u, password="wrong-one")
        )
        assert sum(work.values()) == 1, (username, work)


def test_development_gets_rate_limits_for_one_person_and_production_keeps_the_strict_ones(
    tmp_path: Path,
) -> None:
    """Under `make run` (DEBUG=1) every tab comes from 127.0.0.1: 3 sign-ups an hour and 10
    posts a minute would bite at once. Production keeps the strict defaults."""
    code = "print(json.dumps(settings.RATELIMIT_RULES))"
    production = run_settings_json(tmp_path, code)
    assert production["signups"] == "3/1h" and production["posts"] == "10/1m"
    development = run_settings_json(tmp_path, code, DEBUG="1")
    assert development["signups"] == "50/1h" and development["posts"] == "60/1m"
    assert development["requests"] == "3000/5m"
    overridden = run_settings_json(tmp_path, code, DEBUG="1", RATELIMIT_SIGNUPS="2/1h")
    assert overridden["signups"] == "2/1h"
