"""The rate limiter (microblog.ratelimit), through real requests: every rule fires at its limit + 1
with 429, Retry-After and the X-RateLimit-* headers (HTML or JSON by Accept), successful responses
carry the headers of their tightest limit, X-Forwarded-For is believed only from trusted proxies,
RATELIMIT_ENABLED=0 turns it all off, the Redis store counts like the database, and two app
processes sharing a store enforce one global limit.

The suite runs with the limiter off (tests/settings.py); every test here turns it on, and
freezes the limiter's clock one second into a day, so no window ends in the middle of a test.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from prometheus_client import REGISTRY

from microblog import jobs, ratelimit
from microblog.accounts.models import User
from microblog.core.models import RateLimitCounter
from microblog.follows.models import Follow
from microblog.posts.models import Post
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
NOW = (int(time.time()) // 86400) * 86400 + 1  # one second into today (UTC)
REDIS_TEST_URL = os.environ.get("RATELIMIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


# --- A view that reports, as the moderation feature will (no reports feature exists yet) ---


def report_view(request: HttpRequest) -> HttpResponse:
    ratelimit.enforce(request, "reports")
    return JsonResponse({"reported": True})


urlpatterns = [path("test/report", report_view), path("", include("microblog.urls"))]


# --- Fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def limiter(settings: Any, monkeypatch: pytest.MonkeyPatch, db: None) -> Any:
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_STORE = "database"
    settings.TRUSTED_PROXIES = []
    monkeypatch.setattr(ratelimit, "clock", lambda: float(NOW))
    return settings


def redis_reachable(url: str = REDIS_TEST_URL) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_limiter(limiter: Any) -> Iterator[Any]:
    if not redis_reachable():
        pytest.skip(f"Redis is not reachable at {REDIS_TEST_URL} (start redis-server to run it)")
    limiter.REDIS_URL = REDIS_TEST_URL
    limiter.RATELIMIT_STORE = "redis"
    limiter.RATELIMIT_KEY_PREFIX = f"microblog-test:{uuid.uuid4().hex}:"
    yield limiter
    _delete_redis_keys(limiter.RATELIMIT_KEY_PREFIX)


def ip_client(address: str = "203.0.113.7", **extra: str) -> Client:
    return Client(REMOTE_ADDR=address, **extra)


def assert_throttled(response: HttpResponse, limit: int, period: int) -> None:
    assert response.status_code == 429, response.content[:300]
    assert response["X-RateLimit-Limit"] == str(limit)
    assert response["X-RateLimit-Remaining"] == "0"
    window_end = NOW // period * period + period
    assert response["X-RateLimit-Reset"] == str(window_end)
    assert response["Retry-After"] == str(window_end - NOW)


def rejections(rule: str) -> float:
    value = REGISTRY.get_sample_value("microblog_rate_limit_rejections_total", {"limit": rule})
    return value or 0.0


# --- Settings -------------------------------------------------------------------------------


def test_default_rules_are_those_of_the_issue() -> None:
    rules = {name: (rule.limit, rule.period) for name, rule in ratelimit.rules().items()}
    assert rules == {
        "requests": (300, 300),
        "posts": (10, 60),
        "follows": (50, 3600),
        "feeds": (100, 60),
        "login_failures": (5, 300),
        "signups": (3, 3600),
        "reports": (10, 3600),
        "searches": (30, 60),  # issue 16: search is rate limited
    }


def _settings_in_subprocess(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMIT_")}
    environment.update(SECRET_KEY="x", DJANGO_SETTINGS_MODULE="microblog.settings", **env)
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return result.stdout.decode().strip()


def test_limits_are_on_by_default_and_each_overridable_by_environment() -> None:
    show = (
        "from django.conf import settings as s; "
        "print(s.RATELIMIT_ENABLED, s.RATELIMIT_STORE, s.RATELIMIT_RULES['posts'])"
    )
    assert _settings_in_subprocess(show) == "True database 10/1m"
    assert (
        _settings_in_subprocess(
            show, RATELIMIT_ENABLED="0", RATELIMIT_POSTS="20/30s", REDIS_URL="redis://x:1/0"
        )
        == "False redis 20/30s"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("300/5m", (300, 300)), ("10/1m", (10, 60)), ("3/1h", (3, 3600)), ("7/90", (7, 90))],
)
def test_rates_parse(text: str, expected: tuple[int, int]) -> None:
    rule = ratelimit.parse_rate("x", text)
    assert (rule.limit, rule.period) == expected


@pytest.mark.parametrize("text", ["", "10", "ten/1m", "10/0m", "0/1m", "10/1w"])
def test_a_malformed_rate_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="COUNT/PERIOD"):
        ratelimit.parse_rate("posts", text)


# --- Every rule fires at its limit + 1 ------------------------------------------------------


def test_requests_per_ip_overall(limiter: Any) -> None:
    client = ip_client()
    for n in range(300):
        response = client.get("/login")
        assert response.status_code == 200, n
    before = rejections("requests")
    assert_throttled(client.get("/login"), 300, 300)
    assert rejections("requests") == before + 1
    # Counted whatever the path: an unknown page too, and the POST of a form.
    assert_throttled(client.get("/no-such-page"), 300, 300)
    assert client.post("/login", {"username": "x", "password": "y"}).status_code == 429
    # Another address is not affected; health probes are never counted.
    assert ip_client("203.0.113.8").get("/login").status_code == 200
    assert client.get("/up").status_code == 200


def test_unknown_paths_count_towards_the_overall_limit(limiter: Any) -> None:
    limiter.RATELIMIT_RULES = {**limiter.RATELIMIT_RULES, "requests": "5/5m"}
    client = ip_client()
    for _ in range(5):
        assert client.get("/no-such-page").status_code == 404
    assert_throttled(client.get("/no-such-page"), 5, 300)


def test_posts_and_replies_per_user(
    limiter: Any, alice: User, bob: User, client_for: Any, make_post: Callable[..., Post]
) -> None:
    client = client_for(alice)
    first = make_post(bob, "parent")
    for n in range(10):
        data = {"content": f"post {n}"}
        if n % 2:
            data["parent_id"] = str(first.id)  # replies count too
        assert client.post("/posts", data).status_code == 302, n
    before = rejections("posts")
    assert_throttled(client.post("/posts", {"content": "one too many"}), 10, 60)
    assert rejections("posts") == before + 1
    assert not Post.objects.filter(content="one too many").exists()
    assert Post.objects.filter(author=alice).count() == 10
    # Per user: bob still posts.
    assert client_for(bob).post("/posts", {"content": "bob"}).status_code == 302


def test_follows_and_unfollows_per_user(
    limiter: Any, alice: User, bob: User, make_user: Callable[..., User], client_for: Any
) -> None:
    client = client_for(alice)
    for n in range(50):
        action = "follow" if n % 2 == 0 else "unfollow"
        assert client.post(f"/@bob/{action}").status_code == 302, n
    response = client.post("/@bob/follow")
    assert_throttled(response, 50, 3600)
    assert not Follow.objects.filter(follower=alice, followed=bob).exists()
    assert User.objects.get(id=bob.id).followers_count == 0
    # Another user follows freely.
    carol = make_user("carol")
    assert client_for(carol).post("/@bob/follow").status_code == 302


def test_feed_pages_per_user(
    limiter: Any, alice: User, bob: User, client_for: Any, make_user: Callable[..., User]
) -> None:
    client = client_for(alice)
    pages = ["/", "/following", "/all", "/@bob"]
    for n in range(100):
        assert client.get(pages[n % 4]).status_code == 200, n
    assert_throttled(client.get("/all"), 100, 60)
    assert_throttled(client.get("/@bob"), 100, 60)
    # Other pages (a post, the settings) are not feed pages.
    assert client.get("/settings").status_code == 200
    # Per user, not per address: bob, from the same address, reads on.
    assert client_for(bob).get("/").status_code == 200


def test_feed_pages_per_ip_when_signed_out(limiter: Any, alice: User) -> None:
    client = ip_client()
    for n in range(100):
        assert client.get("/all" if n % 2 else "/@alice").status_code == 200, n
    assert_throttled(client.get("/"), 100, 60)
    assert ip_client("198.51.100.1").get("/").status_code == 200


def test_failed_log_ins_per_ip(limiter: Any, alice: User, make_user: Callable[..., User]) -> None:
    client = ip_client()
    for n in range(5):
        response = client.post("/login", {"username": f"user{n}", "password": "wrong"})
        assert response.status_code == 400, n
    before = rejections("login_failures")
    response = client.post("/login", {"username": "alice", "password": PASSWORD})
    assert_throttled(response, 5, 300)
    assert b"Too many failed log-ins" in response.content
    assert "_auth_user_id" not in client.session
    assert rejections("login_failures") == before + 1
    # Another address logs in.
    other = ip_client("198.51.100.2")
    assert other.post("/login", {"username": "alice", "password": PASSWORD}).status_code == 302


def test_failed_log_ins_per_username_across_addresses(
    limiter: Any, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        client = ip_client(f"198.51.100.{n + 10}")
        name = "alice" if n % 2 else "ALICE"  # usernames are case-insensitive
        assert client.post("/login", {"username": name, "password": "nope"}).status_code == 400
    # The sixth attempt is refused before the password is checked, even the right one.
    from microblog.accounts import views

    checked: list[str] = []
    real = views.authenticate

    def counting(*args: Any, **kwargs: Any) -> Any:
        checked.append(kwargs.get("username", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "authenticate", counting)
    client = ip_client("198.51.100.99")
    response = client.post("/login", {"username": "Alice", "password": PASSWORD})
    assert_throttled(response, 5, 300)
    assert checked == []
    assert "_auth_user_id" not in client.session
    # Other usernames from that address are fine.
    assert client.post("/login", {"username": "bob", "password": "x"}).status_code == 400
    assert checked == ["bob"]


def test_successful_log_ins_are_not_counted(limiter: Any, alice: User) -> None:
    for _ in range(8):
        client = ip_client()
        assert client.post("/login", {"username": "alice", "password": PASSWORD}).status_code == 302
    # A malformed form (no password checked) is not a failure either.
    client = ip_client()
    for _ in range(8):
        assert client.post("/login", {"username": "alice"}).status_code == 400
    assert client.post("/login", {"username": "alice", "password": PASSWORD}).status_code == 302


def test_sign_ups_per_ip_fire_on_the_form_post(limiter: Any) -> None:
    def sign_up(name: str, address: str = "203.0.113.50") -> HttpResponse:
        return ip_client(address).post(
            "/signup",
            {"username": name, "password": PASSWORD, "password_confirmation": PASSWORD},
        )

    for n in range(3):
        assert sign_up(f"newcomer{n}").status_code == 302, n
    before = rejections("signups")
    assert_throttled(sign_up("newcomer3"), 3, 3600)
    assert rejections("signups") == before + 1
    assert not User.objects.filter(username="newcomer3").exists()
    assert User.objects.filter(username__startswith="newcomer").count() == 3
    # A form with errors creates nothing and is not counted; another address signs up.
    client = ip_client("203.0.113.50")
    assert client.post("/signup", {"username": "x", "password": "a"}).status_code == 400
    assert sign_up("newcomer4", "203.0.113.51").status_code == 302


@pytest.mark.urls("tests.ratelimit.test_ratelimit")
def test_reports_per_user(limiter: Any, alice: User, bob: User, client_for: Any) -> None:
    client = client_for(alice)
    for n in range(10):
        assert client.post("/test/report").status_code == 200, n
    response = client.post("/test/report", HTTP_ACCEPT="application/json")
    assert_throttled(response, 10, 3600)
    assert response.json()["error"]["status"] == 429
    assert client_for(bob).post("/test/report").status_code == 200


# --- The 429 and the headers ----------------------------------------------------------------


def test_throttled_json_and_html(limiter: Any, alice: User, client_for: Any) -> None:
    limiter.RATELIMIT_RULES = {**limiter.RATELIMIT_RULES, "posts": "1/1m"}
    client = client_for(alice)
    assert client.post("/posts", {"content": "one"}).status_code == 302
    response = client.post("/posts", {"content": "two"}, HTTP_ACCEPT="application/json")
    assert_throttled(response, 1, 60)
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["status"] == 429
    assert "Wait 59 seconds" in body["error"]["message"]
    html = client.post("/posts", {"content": "three"}, HTTP_ACCEPT="text/html")
    assert_throttled(html, 1, 60)
    assert html["Content-Type"].startswith("text/html")
    # The compose page again, with the text kept (issue 11: a refused form keeps what was typed).
    assert b"three" in html.content
    assert b"posting too fast" in html.content


def test_successful_responses_carry_the_tightest_limit(
    limiter: Any, alice: User, client_for: Any
) -> None:
    anonymous = ip_client()
    first = anonymous.get("/login")
    assert first["X-RateLimit-Limit"] == "300"
    assert first["X-RateLimit-Remaining"] == "299"
    assert first["X-RateLimit-Reset"] == str(NOW // 300 * 300 + 300)
    assert anonymous.get("/login")["X-RateLimit-Remaining"] == "298"

    client = client_for(alice)  # from 127.0.0.1
    page = client.get("/")
    assert page.status_code == 200
    # Feeds (100/min, 99 left) is tighter than requests (300, 299 left).
    assert (page["X-RateLimit-Limit"], page["X-RateLimit-Remaining"]) == ("100", "99")
    # A post touches "posts" (10/min): 9 left.
    posted = client.post("/posts", {"content": "hello"})
    assert posted.status_code == 302
    assert (posted["X-RateLimit-Limit"], posted["X-RateLimit-Remaining"]) == ("10", "9")
    # The log-in page shows what failures are left once some were made.
    other = ip_client("192.0.2.1")
    other.post("/login", {"username": "alice", "password": "bad"})
    failed = other.post("/login", {"username": "alice", "password": "bad"})
    assert (failed["X-RateLimit-Limit"], failed["X-RateLimit-Remaining"]) == ("5", "3")
    assert failed["X-RateLimit-Reset"] == str(NOW // 300 * 300 + 300)


def test_one_statement_per_check(limiter: Any, alice: User, client_for: Any) -> None:
    client = client_for(alice)
    client.get("/")
    with CaptureQueriesContext(connection) as on:
        client.get("/")
    limiter.RATELIMIT_ENABLED = False
    with CaptureQueriesContext(connection) as off:
        client.get("/")
    added = [q["sql"] for q in on.captured_queries if "ratelimitcounter" in q["sql"]]
    assert len(on.captured_queries) - len(off.captured_queries) == 1
    assert len(added) == 1
    assert "ON CONFLICT" in added[0]
    assert "RETURNING" in added[0]


# --- Client addresses -----------------------------------------------------------------------


def _address(remote: str, forwarded: str | None, proxies: list[str], settings: Any) -> str:
    settings.TRUSTED_PROXIES = proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    request = RequestFactory().get("/", REMOTE_ADDR=remote, **extra)
    return ratelimit.client_ip(request)


@pytest.mark.parametrize(
    ("remote", "forwarded", "proxies", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", [], "203.0.113.9"),  # no proxy trusted: header ignored
        ("203.0.113.9", "1.2.3.4", ["10.0.0.0/8"], "203.0.113.9"),  # peer is not a proxy
        ("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),  # spoofed left part
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.7", ["10.0.0.0/8"], "1.2.3.4"),  # two proxies
        ("10.0.0.2", "not-an-ip, 10.0.0.7", ["10.0.0.0/8"], "10.0.0.7"),
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", None, ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "10.0.0.9", ["10.0.0.0/8"], "10.0.0.9"),  # all trusted: left-most
        ("::1", "2001:db8::5", ["::1/128"], "2001:db8::5"),
    ],
)
def test_client_address(
    settings: Any, remote: str, forwarded: str | None, proxies: list[str], expected: str
) -> None:
    assert _address(remote, forwarded, proxies, settings) == expected


def test_ipv6_clients_are_counted_by_their_64(settings: Any) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="2001:db8:1:2:aaaa::1")
    assert ratelimit.ip_subject(request) == "ip:2001:db8:1:2::/64"


def test_forwarded_for_is_honoured_only_from_trusted_proxies(limiter: Any) -> None:
    limiter.RATELIMIT_RULES = {**limiter.RATELIMIT_RULES, "requests": "3/5m"}
    # Untrusted peer: changing the header does not escape the limit.
    direct = ip_client("203.0.113.20")
    for n in range(3):
        assert direct.get("/login", HTTP_X_FORWARDED_FOR=f"1.1.1.{n}").status_code == 200
    assert direct.get("/login", HTTP_X_FORWARDED_FOR="1.1.1.99").status_code == 429

    # Through a trusted proxy: each forwarded client has its own count...
    limiter.TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy = ip_client("10.0.0.2")
    for _ in range(3):
        assert proxy.get("/login", HTTP_X_FORWARDED_FOR="1.1.1.1").status_code == 200
    assert proxy.get("/login", HTTP_X_FORWARDED_FOR="1.1.1.1").status_code == 429
    assert proxy.get("/login", HTTP_X_FORWARDED_FOR="1.1.1.2").status_code == 200
    # ...and what the client prepends to the header changes nothing.
    spoofed = proxy.get("/login", HTTP_X_FORWARDED_FOR="9.9.9.9, 1.1.1.1")
    assert spoofed.status_code == 429


# --- Off switch -----------------------------------------------------------------------------


def test_ratelimit_enabled_0_turns_every_limit_off(
    limiter: Any, alice: User, client_for: Any
) -> None:
    limiter.RATELIMIT_ENABLED = False
    limiter.RATELIMIT_RULES = {name: "1/1h" for name in limiter.RATELIMIT_RULES}
    client = client_for(alice)
    for n in range(3):
        for response in (
            client.get("/"),
            client.post("/posts", {"content": f"post {n}"}),
            client.post("/@alice/follow"),
            ip_client().post("/login", {"username": "alice", "password": "wrong"}),
            ip_client().post(
                "/signup",
                {"username": f"free{n}", "password": PASSWORD, "password_confirmation": PASSWORD},
            ),
        ):
            assert response.status_code != 429
            assert "X-RateLimit-Limit" not in response
    assert not RateLimitCounter.objects.exists()


# --- Stores ---------------------------------------------------------------------------------


def test_expired_windows_are_pruned_by_the_maintenance_job(limiter: Any) -> None:
    assert "ratelimit_prune" in jobs.SCHEDULED
    assert "ratelimit_prune" in django_settings.MAINTENANCE_INTERVALS
    RateLimitCounter.objects.create(key="posts:u:1", window_start=NOW - 120, expires_at=NOW - 60)
    RateLimitCounter.objects.create(key="posts:u:1", window_start=NOW - 60, expires_at=NOW)
    RateLimitCounter.objects.create(key="signups:ip:x", window_start=NOW, expires_at=NOW + 3600)
    jobs.ratelimit_prune.enqueue()  # the immediate backend runs it now
    assert sorted(RateLimitCounter.objects.values_list("window_start", flat=True)) == [
        NOW - 60,
        NOW,
    ]
    assert ratelimit.prune(now=NOW + 1) == 1
    assert list(RateLimitCounter.objects.values_list("key", flat=True)) == ["signups:ip:x"]


def test_a_new_window_starts_a_new_count(
    limiter: Any, alice: User, client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter.RATELIMIT_RULES = {**limiter.RATELIMIT_RULES, "posts": "1/1m"}
    client = client_for(alice)
    assert client.post("/posts", {"content": "one"}).status_code == 302
    assert client.post("/posts", {"content": "two"}).status_code == 429
    monkeypatch.setattr(ratelimit, "clock", lambda: float(NOW + 60))
    assert client.post("/posts", {"content": "three"}).status_code == 302


def test_redis_store(redis_limiter: Any, alice: User, client_for: Any) -> None:
    import redis

    client = client_for(alice)
    for n in range(10):
        assert client.post("/posts", {"content": f"post {n}"}).status_code == 302, n
    assert_throttled(client.post("/posts", {"content": "too many"}), 10, 60)
    # Failed log-ins (reserved before the password is checked) on Redis too.
    other = ip_client()
    for _ in range(5):
        assert other.post("/login", {"username": "alice", "password": "x"}).status_code == 400
    assert_throttled(other.post("/login", {"username": "alice", "password": PASSWORD}), 5, 300)
    assert not RateLimitCounter.objects.exists()  # nothing on the database
    store = redis.Redis.from_url(REDIS_TEST_URL)
    key = f"{redis_limiter.RATELIMIT_KEY_PREFIX}posts:u:{alice.id}:{NOW // 60 * 60}"
    assert int(store.get(key) or 0) == 11
    assert store.ttl(key) > 0  # expires with its window
    # The refused attempt was counted before the check and given back (the refund script).
    name_key = f"{redis_limiter.RATELIMIT_KEY_PREFIX}login_failures:name:alice:{NOW // 300 * 300}"
    assert int(store.get(name_key) or 0) == 5


def test_redis_unreachable_lets_requests_through(limiter: Any, alice: User) -> None:
    limiter.RATELIMIT_STORE = "redis"
    limiter.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = ip_client().get("/login")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


@pytest.mark.postgres_only
def test_concurrent_checks_count_every_request_once(limiter: Any) -> None:
    """Threads on their own connections hit one counter at once: no count is lost or repeated."""
    limiter.RATELIMIT_RULES = {**limiter.RATELIMIT_RULES, "posts": "1000/1h"}
    counts: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        from django.db import connections

        try:
            for _ in range(25):
                request = RequestFactory().post("/posts")
                (decision,) = ratelimit.hit(request, [("posts", "u:1")])
                with lock:
                    counts.append(decision.count)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(counts) == list(range(1, 201))


# --- Two app processes sharing the store ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, str]]:
    """Status and headers (names lower-cased) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        try:
            return error.code, {k.lower(): v for k, v in error.headers.items()}
        finally:
            error.close()


def _database_url(tmp_path: Path, env: dict[str, str]) -> str:
    """The test database on PostgreSQL; on SQLite (whose test database lives in memory) a file
    migrated for the occasion."""
    params = connection.settings_dict
    if connection.vendor == "postgresql":
        user = params.get("USER") or "postgres"
        password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
        host = params.get("HOST") or "127.0.0.1"
        return f"postgres://{user}{password}@{host}:{params.get('PORT') or 5432}/{params['NAME']}"
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    subprocess.run(
        [sys.executable, "-m", "microblog", "migrate", "--no-input", "-v", "0"],
        env={**env, "DATABASE_URL": url},
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    return url


@contextmanager
def _app_process(port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--blocking-threads",
        "4",
        "--no-ws",
        "microblog.wsgi:application",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if _get(f"http://127.0.0.1:{port}/up")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("store", ["database", "redis"])
def test_the_limit_is_global_across_two_app_processes(
    limiter: Any, tmp_path: Path, store: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RATELIMIT_", "REDIS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="microblog.settings",
        SECRET_KEY="two-processes-test-key",
        SECURE_SSL_REDIRECT="0",
        LOG_LEVEL="WARNING",
        RATELIMIT_ENABLED="1",
        # A window of 1000 days: none ends during the test.
        RATELIMIT_REQUESTS="10/1000d",
        RATELIMIT_FEEDS="1000/1000d",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with ExitStack() as stack:
        if store == "redis":
            if not redis_reachable():
                pytest.skip(f"Redis is not reachable at {REDIS_TEST_URL} (start redis-server)")
            prefix = f"microblog-test:{uuid.uuid4().hex}:"
            env.update(REDIS_URL=REDIS_TEST_URL, RATELIMIT_KEY_PREFIX=prefix)
            stack.callback(_delete_redis_keys, prefix)
        env["DATABASE_URL"] = _database_url(tmp_path, env)
        ports = [_free_port(), _free_port()]
        for n, port in enumerate(ports):
            stack.enter_context(_app_process(port, env, tmp_path / f"app{n}.log"))
        seen = []
        for n in range(12):
            status, headers = _get(f"http://127.0.0.1:{ports[n % 2]}/all")
            seen.append((status, headers.get("x-ratelimit-remaining")))
    # One count for both processes: 10 pages, then both refuse.
    assert seen == [(200, str(9 - n)) for n in range(10)] + [(429, "0"), (429, "0")]
    if store == "database" and connection.vendor == "postgresql":
        assert RateLimitCounter.objects.get(key="requests:ip:127.0.0.1").count == 12
