"""The cluster on one machine (microblog.cluster, `make cluster-test`): HAProxy over 3 web
instances, the streaming process, a worker, PgBouncer, PostgreSQL primary + streaming replica.

Every request goes through the balancer with a real HTTP client; the balancer's X-Served-By
header and /health's "instance" say which instance answered. Failures are real: replay paused
on the replica, the replica stopped, a web instance SIGKILLed, the streaming process
restarted. Bounded: the whole module takes about two minutes.
"""

import contextlib
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from microblog.cluster import WEB_INSTANCES, Cluster
from tests.conftest import TIMEOUT_MS, log_in
from tests.ops.test_faults import WebUser
from tests.stream.helpers import EventStream

with contextlib.suppress(ImportError):  # the dev extra installs it; test_browser skips without
    from playwright.sync_api import Browser, expect

ROOT = Path(__file__).resolve().parents[2]
MAX_LAG = 8.0  # REPLICA_MAX_LAG_SECONDS of this cluster
READ_YOUR_WRITES = 5.0

# Limits that a test sending many requests from one address would trip are raised; the per-user
# post limit (10 a minute) stays, to show that it holds across instances.
CLUSTER_ENV = {
    "REPLICA_MAX_LAG_SECONDS": str(MAX_LAG),
    "READ_YOUR_WRITES_SECONDS": str(READ_YOUR_WRITES),
    "RATELIMIT_REQUESTS": "100000/5m",
    "RATELIMIT_FEEDS": "100000/1m",
    "RATELIMIT_SIGNUPS": "1000/1h",
    "RATELIMIT_POSTS": "10/1m",
    "STREAM_HEARTBEAT_SECONDS": "1",
    "LOG_LEVEL": "WARNING",
    # A Redis shared with other runs keeps its keys apart.
    "RATELIMIT_KEY_PREFIX": f"cluster-test-{secrets.token_hex(4)}:",
    "CACHE_KEY_PREFIX": f"cluster-test-{secrets.token_hex(4)}",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    for program in ("haproxy", "pgbouncer", "pg_config"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed (apt-get install haproxy pgbouncer)")
    root = ROOT / "data" / "cluster-test"
    Cluster(root).stop()  # what a previous, interrupted run left running
    shutil.rmtree(root, ignore_errors=True)
    cluster = Cluster(root)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CLUSTER_ENV.items():
            patch.setenv(name, value)
        patch.delenv("DATABASE_URL", raising=False)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


# --- clients ---------------------------------------------------------------------------------


def served_by(answer: Any) -> str:
    return str(answer.headers.get("X-Served-By", ""))


def session_of(user: WebUser) -> str:
    for handler in user.opener.handlers:
        jar = getattr(handler, "cookiejar", None)
        if isinstance(jar, http.cookiejar.CookieJar):
            for cookie in jar:
                if cookie.name == "sessionid" and cookie.value:
                    return cookie.value
    raise AssertionError(f"{user.name} has no session cookie")


def forget_recent_write(user: WebUser) -> None:
    """Drops the read-your-writes cookie, as if the write were older than the window."""
    for handler in user.opener.handlers:
        jar = getattr(handler, "cookiejar", None)
        if isinstance(jar, http.cookiejar.CookieJar):
            for cookie in list(jar):
                if cookie.name == "mb_primary":
                    jar.clear(cookie.domain, cookie.path, cookie.name)


def new_user(cluster: Cluster, prefix: str) -> WebUser:
    return WebUser(cluster.url.rstrip("/"), f"{prefix}{secrets.token_hex(3)}").sign_up()


def eventually(check: Any, timeout: float, message: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(interval)


# --- PostgreSQL counters ---------------------------------------------------------------------


def statement_calls(cluster: Cluster, server: str, table: str) -> int:
    """How many SELECTs that read `table` the server ran since the last reset."""
    value = cluster.psql(
        server,
        "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements "
        f"WHERE query ILIKE 'SELECT%' AND query LIKE '%\"{table}\"%'",
    )
    return int(value)


def reset_statements(cluster: Cluster) -> None:
    for server in ("primary", "replica"):
        cluster.psql(server, "SELECT pg_stat_statements_reset()")


def wait_replica_caught_up(cluster: Cluster, timeout: float = 15) -> None:
    """A commit on the primary (so the replica's last replayed commit is now), then until the
    replica has replayed everything the primary has written."""
    cluster.psql("primary", "CREATE TABLE IF NOT EXISTS cluster_tick (at timestamptz)")
    cluster.psql("primary", "INSERT INTO cluster_tick VALUES (now())")
    target = cluster.psql("primary", "SELECT pg_current_wal_lsn()")
    eventually(
        lambda: cluster.psql(
            "replica", f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
        ) == "t",
        timeout,
        "the replica did not catch up",
    )  # fmt: skip


# --- the tests ---------------------------------------------------------------------------------


def test_health_names_the_instance_and_requests_spread_over_all_three(cluster: Cluster) -> None:
    visitor = WebUser(cluster.url.rstrip("/"), "visitor")
    seen = set()
    for _ in range(6):
        answer = visitor.get("/health")
        assert answer.status == 200
        body = json.loads(answer.body)
        assert body["instance"] == served_by(answer)
        assert body["checks"]["replica"]["ok"] is True
        assert body["checks"]["stream"]["ok"] is True
        seen.add(body["instance"])
    assert seen == set(WEB_INSTANCES)


def test_sign_up_on_one_instance_and_go_on_through_the_others(cluster: Cluster) -> None:
    user = new_user(cluster, "hop")
    pages = [user.get("/") for _ in range(3)]
    assert {served_by(page) for page in pages} == set(WEB_INSTANCES)
    for page in pages:
        assert page.status == 200 and f"@{user.name}" in page.body  # signed in on each
    # A form's CSRF token from one instance is good on the next one.
    for n in range(3):
        form_page = user.get("/")
        answer = user.post(f"hop {n} from a form served by {served_by(form_page)}")
        assert answer.status == 302, answer.body
        assert served_by(answer) != served_by(form_page)
    profile = user.get(f"/@{user.name}")
    assert all(f"hop {n} from a form" in profile.body for n in range(3))
    # Logging out on one instance ends the session on all of them at once.
    assert user.request("POST", "/logout", {"csrfmiddlewaretoken": user.csrf}).status == 302
    for _ in range(3):
        assert user.get("/settings").status == 302


def test_a_post_reaches_a_followers_for_you_and_open_stream(cluster: Cluster) -> None:
    writer, reader = new_user(cluster, "writer"), new_user(cluster, "reader")
    assert reader.follow(writer.name).status == 302
    events = EventStream(cluster.ports["lb"], "feed=for_you", session_of(reader))
    try:
        assert events.status == 200
        answer = writer.post("across the balancer")
        assert answer.status == 302
        assert events.next_post(timeout=10) is not None
    finally:
        events.close()
    # The reader's page comes from any instance; the worker fanned the post out.
    pages = eventually(
        lambda: [p for p in (reader.get("/") for _ in range(3)) if "across the balancer" in p.body],
        15,
        "the post did not reach the follower's For You",
    )
    assert served_by(pages[0]) in WEB_INSTANCES


def test_page_reads_land_on_the_replica(cluster: Cluster) -> None:
    reader = new_user(cluster, "replicareader")
    forget_recent_write(reader)
    reset_statements(cluster)
    for _ in range(9):
        assert reader.get("/").status == 200  # For You
        assert reader.get("/all").status == 200
    assert statement_calls(cluster, "replica", "posts_post") >= 18
    assert statement_calls(cluster, "primary", "posts_post") == 0
    # Sessions and the signed-in user are read from the primary (a log-out acts at once).
    assert statement_calls(cluster, "primary", "accounts_usersession") >= 18
    assert statement_calls(cluster, "replica", "accounts_usersession") == 0


def test_read_your_writes_under_replication_lag(cluster: Cluster) -> None:
    writer = new_user(cluster, "ryw")
    visitor = WebUser(cluster.url.rstrip("/"), "visitor")
    wait_replica_caught_up(cluster)
    cluster.psql("replica", "SELECT pg_wal_replay_pause()")
    try:
        assert writer.post("written while the replica is paused").status == 302
        # The writer sees the post at once, on every instance (its reads go to the primary)...
        for answer in [writer.get(f"/@{writer.name}") for _ in range(3)]:
            assert "written while the replica is paused" in answer.body, served_by(answer)
        # ...another reader, on the replica, does not yet.
        for answer in [visitor.get(f"/@{writer.name}") for _ in range(3)]:
            assert answer.status == 200
            assert "written while the replica is paused" not in answer.body
    finally:
        cluster.psql("replica", "SELECT pg_wal_replay_resume()")
    eventually(
        lambda: "written while the replica is paused" in visitor.get(f"/@{writer.name}").body,
        5,
        "the other reader did not see the post after replay resumed",
    )


def test_a_live_reply_shows_on_an_open_thread_while_the_replica_lags(
    cluster: Cluster,
    browser: "Browser",
) -> None:
    author, reader = new_user(cluster, "threadauthor"), new_user(cluster, "threadreader")
    assert author.post("a thread read from the replica").status == 302
    match = re.search(r'id="post-(\d+)"', author.get(f"/@{author.name}").body)
    assert match
    post_id = match.group(1)
    context = browser.new_context(base_url=cluster.url)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        log_in(page, reader.name)
        context.clear_cookies(name="mb_primary")  # the log-in's read-your-writes window
        wait_replica_caught_up(cluster)
        page.goto(f"/posts/{post_id}")
        replies = page.locator(".replies-root > li.reply")
        expect(replies).to_have_count(0)
        expect(page.locator("[data-stream]")).to_have_attribute("data-stream-state", "open")
        wait_replica_caught_up(cluster)
        cluster.psql("replica", "SELECT pg_wal_replay_pause()")
        try:
            form = {"csrfmiddlewaretoken": author.csrf, "content": "a live reply"}
            answer = author.request("POST", "/posts", {**form, "parent_id": post_id})
            assert answer.status == 302, answer.body
            # The stream announces it; the page fetches it at once, from the primary (the
            # replica has not replayed it, and lags less than the cut-off all along).
            expect(replies).to_have_count(1, timeout=4_000)
            expect(replies.first).to_contain_text("a live reply")
        finally:
            cluster.psql("replica", "SELECT pg_wal_replay_resume()")
    finally:
        context.close()


def test_a_replica_lagging_past_the_cut_off_gets_no_reads(cluster: Cluster) -> None:
    writer = new_user(cluster, "lag")
    visitor = WebUser(cluster.url.rstrip("/"), "visitor")
    wait_replica_caught_up(cluster)
    cluster.psql("replica", "SELECT pg_wal_replay_pause()")
    try:
        assert writer.post("behind a lagging replica").status == 302
        paused_at = time.monotonic()
        assert "behind a lagging replica" not in visitor.get(f"/@{writer.name}").body
        # Replay stays paused: once the lag passes the cut-off, the visitor reads the primary.
        eventually(
            lambda: "behind a lagging replica" in visitor.get(f"/@{writer.name}").body,
            MAX_LAG + 5,
            "reads stayed on a replica lagging past REPLICA_MAX_LAG_SECONDS",
            interval=0.5,
        )
        assert time.monotonic() - paused_at >= MAX_LAG - 2
    finally:
        cluster.psql("replica", "SELECT pg_wal_replay_resume()")


def test_pages_go_on_when_the_replica_stops(cluster: Cluster) -> None:
    reader = new_user(cluster, "noreplica")
    forget_recent_write(reader)
    visitor = WebUser(cluster.url.rstrip("/"), "visitor")
    assert visitor.get("/all").status == 200
    cluster.pg_stop("replica")
    try:
        answers = []
        for _ in range(8):
            answers += [reader.get("/"), visitor.get("/all"), visitor.get(f"/@{reader.name}")]
        assert [a.status for a in answers] == [200] * len(answers)
        assert {served_by(a) for a in answers} == set(WEB_INSTANCES)
    finally:
        cluster.pg_start("replica")
    # Back in service: reads return to the replica.
    wait_replica_caught_up(cluster)
    reset_statements(cluster)

    def replica_reads() -> bool:
        visitor.get("/all")
        return statement_calls(cluster, "replica", "posts_post") >= 3

    eventually(replica_reads, 10, "reads did not return to the replica")


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None
    server: str


def test_a_killed_web_instance_is_dropped_and_rejoins(cluster: Cluster) -> None:
    base = cluster.url.rstrip("/")
    readers = [WebUser(base, f"load{n}") for n in range(4)]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(user: WebUser) -> None:
        for n in range(400):  # bounded in count and (below) in time
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                answer = user.get("/all" if n % 2 else "/")
                status, server = answer.status, served_by(answer)
            except OSError:
                status, server = None, ""
            with lock:
                outcomes.append(Outcome(started, time.monotonic(), status, server))
            stop.wait(0.02)

    threads = [threading.Thread(target=load, args=(user,), daemon=True) for user in readers]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        cluster.kill("web2")
        killed_at = time.monotonic()  # web2 and its workers are gone
        cluster.wait_for_balancer({"web/web2"}, "DOWN", timeout=10)
        time.sleep(2)
        dropped_at = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)

    failed = [o for o in outcomes if o.status != 200]
    # Only the requests web2 was serving when it died may fail: each began before it was gone,
    # and there can be no more of them than clients.
    assert len(failed) <= len(readers), failed
    assert all(o.started <= killed_at for o in failed), failed
    assert len([o for o in outcomes if o.started > killed_at]) > 20
    assert not [o for o in outcomes if o.server == "web2" and o.started > dropped_at - 2]

    cluster.start_app_process("web2")
    cluster.wait_until_up(("web2",), timeout=60)
    visitor = WebUser(base, "visitor")
    assert "web2" in {served_by(visitor.get("/all")) for _ in range(6)}


def test_rate_limits_hold_across_instances(cluster: Cluster) -> None:
    user = new_user(cluster, "limited")
    answers = [user.post(f"post {n}") for n in range(10)]
    assert [a.status for a in answers] == [302] * 10
    assert len({served_by(a) for a in answers}) == 3
    # The 11th in the minute is refused, whichever instance gets it.
    refused = [user.post("one too many") for _ in range(3)]
    assert [a.status for a in refused] == [429] * 3
    assert {served_by(a) for a in refused} == set(WEB_INSTANCES)


def test_open_streams_reconnect_after_the_stream_process_restarts(cluster: Cluster) -> None:
    writer, reader = new_user(cluster, "restarts"), new_user(cluster, "listener")
    assert reader.follow(writer.name).status == 302
    events = EventStream(cluster.ports["lb"], "feed=following", session_of(reader))
    assert events.status == 200
    assert writer.post("before the restart").status == 302
    first = events.next_post(timeout=10)
    assert first is not None
    cluster.stop_process("stream")
    # The open stream ends; a post made while no stream process runs is not lost.
    assert events.next(timeout=5) is None
    events.close()
    assert writer.post("while the stream process was down").status == 302
    cluster.start_app_process("stream")
    cluster.wait_until_up(("stream",), timeout=30)
    # The browser reconnects with the last event id it saw (EventSource does this itself).
    again = EventStream(
        cluster.ports["lb"], "feed=following", session_of(reader), last_event_id=first["event_id"]
    )
    try:
        assert again.status == 200
        caught_up = again.next_post(timeout=10)
        assert caught_up is not None and caught_up["id"] != first["id"]
        assert writer.post("after the restart").status == 302
        assert again.next_post(timeout=10) is not None
    finally:
        again.close()


def test_a_new_cluster_can_start_from_a_copy_of_a_database(cluster: Cluster) -> None:
    """`--from-database` (bench/cluster_bench.py runs the layout on a seeded database): the new
    primary holds the source's rows, and so does its replica, cloned after the copy."""
    user = new_user(cluster, "copied")
    root = ROOT / "data" / "cluster-test-copy"
    shutil.rmtree(root, ignore_errors=True)
    copy = Cluster(root, from_database=cluster.pg_url("primary"))
    try:
        copy.allocate_ports()
        copy.setup_postgres()
        query = f"SELECT count(*) FROM accounts_user WHERE username = '{user.name}'"
        assert copy.psql("primary", query) == "1"
        assert copy.psql("replica", query) == "1"
        assert copy.psql("replica", "SELECT pg_is_in_recovery()") == "t"
        analyzed = "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables"
        assert copy.psql("primary", f"{analyzed} WHERE relname = 'posts_post'") == "t"
    finally:
        copy.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_cluster_stop_leaves_nothing_running(cluster: Cluster, tmp_path: Path) -> None:
    assert all(cluster.status().values()), cluster.status()
    assert os.path.exists(cluster.root / "state.json")
