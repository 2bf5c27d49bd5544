"""Operations surface: /health, /metrics, request logs and ids, slow queries, slow-queries."""

import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.tasks import TaskResultStatus
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client import REGISTRY

from microblog import jobs
from microblog.follows.services import follow_create
from microblog.ops import health, metrics
from microblog.ops.management.commands.serve import Command as ServeCommand
from microblog.ops.requestlog import JsonFormatter
from microblog.posts.services import post_create
from tests.conftest import is_postgres

# --- /health ------------------------------------------------------------------------------


def test_health_is_ok_with_every_check_reported(db):
    response = health_get()
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert set(checks) == {"database", "replica", "cache", "jobs", "stream"}
    assert checks["database"]["ok"] is True
    assert checks["database"]["latency_ms"] >= 0
    assert checks["replica"] == {"configured": False}
    assert checks["cache"]["ok"] is True
    assert checks["jobs"] == {
        "ok": True,
        "depth": 0,
        "depth_by_queue": {},
        "oldest_queued_age_s": 0.0,
        "failed": 0,
        "failed_recently": 0,
        "failed_window_s": 3600,
        "fan_outs_abandoned": 0,
    }
    assert checks["stream"] == {"configured": False}


def health_get():
    from django.test import Client

    return Client().get("/health")


def test_health_is_degraded_when_the_oldest_queued_job_waits_too_long(db_job_backend, settings):
    settings.HEALTH_QUEUE_MAX_AGE_SECONDS = 60
    jobs.feeds_trim.enqueue()
    assert health_get().json()["status"] == "ok"  # just queued

    DBTaskResult.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    response = health_get()
    assert response.status_code == 200  # still serving: degraded, not down
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["jobs"]["ok"] is False
    assert body["checks"]["jobs"]["depth"] == 1
    assert body["checks"]["jobs"]["depth_by_queue"] == {"maintenance": 1}
    assert body["checks"]["jobs"]["oldest_queued_age_s"] >= 299
    assert "oldest queued job waits" in body["checks"]["jobs"]["problems"][0]

    db_job_backend()  # the worker catches up
    assert health_get().json()["status"] == "ok"


def failed_job(finished_ago: timedelta, post_id: int, attempt: int = 5) -> DBTaskResult:
    finished = timezone.now() - finished_ago
    return DBTaskResult.objects.create(
        status=TaskResultStatus.FAILED,
        args_kwargs={"args": [post_id], "kwargs": {"attempt": attempt}},
        priority=50,
        task_path="microblog.jobs.fan_out_post",
        queue_name="fanout",
        backend_name="default",
        run_after=finished,
        started_at=finished,
        finished_at=finished,
        exception_class_path="django.db.utils.OperationalError",
        traceback="OperationalError: server closed the connection",
    )


def test_health_is_degraded_while_jobs_failed_recently(db_job_backend, settings):
    """A recent failure degrades /health unless a later run of the same job is pending,
    whatever its attempt: a first attempt whose retry is missing is work lost all the same."""
    settings.HEALTH_FAILED_JOBS_WINDOW_SECONDS = 3600
    failed_job(timedelta(hours=3), post_id=1)
    body = health_get().json()
    # An old failure is still counted (it waits for review) but no longer degrades.
    assert body["status"] == "ok"
    assert body["checks"]["jobs"]["failed"] == 1
    assert body["checks"]["jobs"]["failed_recently"] == 0

    # A failed attempt that was retried (a transient blip) is not a failure for good.
    failed_job(timedelta(minutes=1), post_id=2, attempt=2)
    jobs.fan_out_post.enqueue(2, attempt=3)
    body = health_get().json()
    assert body["status"] == "ok"
    assert body["checks"]["jobs"]["failed_recently"] == 0

    # A first attempt with no retry behind it (the retry was never enqueued, or deleted).
    failed_job(timedelta(minutes=1), post_id=3, attempt=1)
    body = health_get().json()
    assert body["status"] == "degraded"
    assert body["checks"]["jobs"]["failed"] == 3
    assert body["checks"]["jobs"]["failed_recently"] == 1
    assert "with no retry pending" in body["checks"]["jobs"]["problems"][0]

    failed_job(timedelta(minutes=1), post_id=4)  # the last attempt
    assert health_get().json()["checks"]["jobs"]["failed_recently"] == 2


class BrokenConnection:
    vendor = "broken"

    def cursor(self):
        raise OperationalError("connection to server at 10.0.0.9 failed: secret details")


def test_health_is_down_with_503_when_the_primary_is_unreachable(db, monkeypatch):
    monkeypatch.setattr(health, "connection", BrokenConnection())
    response = health_get()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert "secret" not in response.content.decode()  # no host names leak


def test_up_is_liveness_only_and_never_touches_the_database(db, django_assert_num_queries):
    # 200 while the process serves, whatever the database does (a restart would not bring the
    # database back; /health reports it). tests/ops/test_faults.py stops a real database under it.
    from django.test import Client

    with django_assert_num_queries(0):
        response = Client().get("/up")
    assert response.status_code == 200
    assert response.content == b"ok\n"


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


def test_health_probes_the_streaming_process_when_configured(db, settings):
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.STREAM_URL = f"http://127.0.0.1:{server.server_port}/up"
        body = health_get().json()
        assert body["status"] == "ok"
        assert body["checks"]["stream"]["configured"] is True
        assert body["checks"]["stream"]["ok"] is True
        assert body["checks"]["stream"]["http_status"] == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    # Nothing listens there any more: degraded, quickly.
    body = health_get().json()
    assert body["status"] == "degraded"
    assert body["checks"]["stream"] == {
        "configured": True,
        "ok": False,
        "error": "URLError",
        "latency_ms": body["checks"]["stream"]["latency_ms"],
    }


def test_health_reports_a_replica_that_is_not_postgresql(db, settings):
    settings.REPLICA_DATABASE_URL = "sqlite:///replica.sqlite3"
    body = health_get().json()
    assert body["status"] == "degraded"
    assert body["checks"]["replica"]["configured"] is True
    assert body["checks"]["replica"]["ok"] is False


@pytest.mark.postgres_only
def test_health_reports_replica_lag_on_postgresql(db, settings):
    params = connection.get_connection_params()
    settings.REPLICA_DATABASE_URL = (
        f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
        f"{params.get('port', 5432)}/{connection.settings_dict['NAME']}"
    )
    replica = health_get().json()["checks"]["replica"]
    # The test server is a primary, not a standby: reachable, no lag, and said so.
    assert replica["configured"] is True
    assert replica["ok"] is True
    assert replica["in_recovery"] is False
    assert replica["lag_seconds"] == 0
    assert "not a standby" in replica["warning"]


# --- /metrics -----------------------------------------------------------------------------


def test_metrics_from_an_allowed_network(client, db):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"]
    response = client.get("/metrics", REMOTE_ADDR="::1")
    assert response.status_code == 200


def test_metrics_refused_to_other_addresses_and_through_proxies(client, settings, db):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.5").status_code == 403
    # A proxy on the same host would make every visitor look local.
    forwarded = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert forwarded.status_code == 403
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403


def test_metrics_with_the_token_from_anywhere(client, settings, db):
    settings.METRICS_TOKEN = "s3cret-token"
    remote = {"REMOTE_ADDR": "203.0.113.5"}
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", **remote)
    assert ok.status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **remote).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="s3cret-token", **remote).status_code == 403
    assert client.get("/metrics", **remote).status_code == 403


def test_metrics_need_a_token_when_none_is_configured_and_no_network_matches(client, settings, db):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 403


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_request_counts_under_its_route_name_and_status(client, alice, client_for):
    labels = {"route": "profile", "method": "GET", "status": "200"}
    before = sample("microblog_http_requests_total", **labels)
    latency_before = sample(
        "microblog_http_request_duration_seconds_count", route="profile", status="200"
    )
    queries_before = sample("microblog_http_request_sql_queries_count", route="profile")
    assert client.get("/@alice").status_code == 200
    assert sample("microblog_http_requests_total", **labels) == before + 1
    assert (
        sample("microblog_http_request_duration_seconds_count", route="profile", status="200")
        == latency_before + 1
    )
    assert sample("microblog_http_request_sql_queries_count", route="profile") == queries_before + 1

    missing = {"route": "unmatched", "method": "GET", "status": "404"}
    before_404 = sample("microblog_http_requests_total", **missing)
    client.get("/no/such/page")
    assert sample("microblog_http_requests_total", **missing) == before_404 + 1

    text = client.get("/metrics").content.decode()
    # Routes are pattern names, never raw paths.
    assert 'route="profile"' in text
    assert "@alice" not in text
    assert "/no/such/page" not in text
    for name in (
        "microblog_http_requests_total",
        "microblog_http_request_duration_seconds_bucket",
        "microblog_http_request_sql_queries_bucket",
        "microblog_fanout_lag_seconds_count",
        "microblog_cache_requests_total",
        "microblog_stream_connections",
        "microblog_stream_delivery_latency_seconds_count",
        "microblog_job_queue_depth",
        "microblog_job_queue_oldest_age_seconds",
        "microblog_jobs_failed",
    ):
        assert name in text, name
    assert "# TYPE microblog_rate_limit_rejections_total counter" in text


def test_queue_metrics_are_read_at_scrape_time(db_job_backend, client):
    jobs.feeds_trim.enqueue()
    jobs.jobs_prune.enqueue()
    failed_job(timedelta(minutes=1), post_id=1)
    text = client.get("/metrics").content.decode()
    assert 'microblog_job_queue_depth{queue="maintenance"} 2.0' in text
    assert 'microblog_job_queue_depth{queue="fanout"} 0.0' in text
    assert "microblog_jobs_failed 1.0" in text
    assert 'microblog_jobs_abandoned{kind="job"} 1.0' in text
    assert 'microblog_jobs_abandoned{kind="fan_out"} 0.0' in text
    db_job_backend()
    text = client.get("/metrics").content.decode()
    assert 'microblog_job_queue_depth{queue="maintenance"} 0.0' in text
    assert "microblog_job_queue_oldest_age_seconds 0.0" in text


def test_fan_out_lag_is_observed_when_the_fan_out_job_finishes(db_job_backend, make_user):
    author, reader = make_user(), make_user()
    follow_create(follower=reader, followed=author)
    db_job_backend()
    count_before = sample("microblog_fanout_lag_seconds_count")
    sum_before = sample("microblog_fanout_lag_seconds_sum")

    post_create(author=author, content="lag me")
    assert sample("microblog_fanout_lag_seconds_count") == count_before  # queued, not run
    db_job_backend()
    assert sample("microblog_fanout_lag_seconds_count") == count_before + 1
    lag = sample("microblog_fanout_lag_seconds_sum") - sum_before
    assert 0 <= lag < 60


def test_cached_get_counts_hits_and_misses(db):
    from django.core.cache import cache

    hits, misses = (
        sample("microblog_cache_requests_total", result="hit"),
        sample("microblog_cache_requests_total", result="miss"),
    )
    assert metrics.cached_get("ops-test-key", "fallback") == "fallback"
    cache.set("ops-test-key", "value")
    assert metrics.cached_get("ops-test-key") == "value"
    cache.delete("ops-test-key")
    assert sample("microblog_cache_requests_total", result="hit") == hits + 1
    assert sample("microblog_cache_requests_total", result="miss") == misses + 1


MULTIPROCESS_CHILD = """
from microblog.ops import metrics
metrics.HTTP_REQUESTS.labels("home", "GET", "200").inc()
metrics.STREAM_CONNECTIONS.inc(3)
"""

MULTIPROCESS_SCRAPE = """
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
print(generate_latest(registry).decode())
"""


def test_metrics_from_several_processes_are_summed(tmp_path):
    """What `microblog serve` sets up: every child writes under PROMETHEUS_MULTIPROC_DIR and a
    scrape in any of them sees the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", MULTIPROCESS_CHILD], env=env, check=True, timeout=60)
    scraped = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRAPE],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert 'microblog_http_requests_total{method="GET",route="home",status="200"} 2.0' in scraped


def test_serve_makes_and_cleans_a_metrics_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    path, made = ServeCommand().metrics_dir()
    try:
        assert made and path.is_dir() and path.name.startswith("microblog-metrics-")
    finally:
        path.rmdir()

    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    path, made = ServeCommand().metrics_dir()
    assert (path, made) == (given, False)
    assert sorted(p.name for p in Path(given).iterdir()) == ["keep.txt"]


# --- Request ids and logs -------------------------------------------------------------------


def test_a_sane_request_id_is_kept_and_returned(client, db):
    response = client.get("/up", HTTP_X_REQUEST_ID="lb-4f2a.9_c:1-x")
    assert response["X-Request-ID"] == "lb-4f2a.9_c:1-x"


@pytest.mark.parametrize(
    "given", ["", "has space", "x" * 129, "<script>", "-leading-dash", "ünïcode", "a\nb"]
)
def test_an_absent_or_odd_request_id_is_replaced_by_a_generated_one(client, db, given):
    headers = {"HTTP_X_REQUEST_ID": given} if given else {}
    response = client.get("/up", **headers)
    generated = response["X-Request-ID"]
    assert generated != given
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/up")["X-Request-ID"] != generated  # a new one each time


def request_records(caplog):
    return [r for r in caplog.records if r.name == "microblog.requests"]


def test_one_json_log_line_per_request_with_its_fields(alice, client_for, caplog):
    client = client_for(alice)
    with (
        caplog.at_level(logging.INFO, logger="microblog.requests"),
        CaptureQueriesContext(connection) as queries,
    ):
        response = client.get("/", HTTP_X_REQUEST_ID="req-123")
    records = request_records(caplog)
    assert len(records) == 1
    line = JsonFormatter().format(records[0])
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "request"
    assert entry["logger"] == "microblog.requests"
    assert entry["level"] == "INFO"
    assert entry["request_id"] == "req-123" == response["X-Request-ID"]
    assert entry["user_id"] == alice.id
    assert entry["route"] == "home"
    assert entry["method"] == "GET"
    assert entry["path"] == "/"
    assert entry["status"] == 200
    assert entry["duration_ms"] > 0
    assert entry["queries"] == len(queries) > 0
    assert entry["time"].endswith("+00:00")


def test_anonymous_and_failed_requests_are_logged_too(client, db, caplog):
    with caplog.at_level(logging.INFO, logger="microblog.requests"):
        client.get("/no/such/page")
        client.post("/up")
    first, second = (r.fields for r in request_records(caplog))
    assert (first["route"], first["status"], first["user_id"]) == ("unmatched", 404, None)
    assert (second["route"], second["status"], second["method"]) == ("up", 405, "POST")


def test_queries_slower_than_the_setting_are_logged_with_the_request_id(
    alice, client_for, settings, caplog
):
    settings.SLOW_QUERY_MS = 0
    client = client_for(alice)
    with (
        caplog.at_level(logging.WARNING, logger="microblog.slow_queries"),
        CaptureQueriesContext(connection) as queries,
    ):
        response = client.get("/", HTTP_X_REQUEST_ID="slow-1")
    slow = [r for r in caplog.records if r.name == "microblog.slow_queries"]
    assert len(slow) == len(queries) > 0
    for record in slow:
        entry = json.loads(JsonFormatter().format(record))
        assert entry["message"] == "slow query"
        assert entry["request_id"] == "slow-1" == response["X-Request-ID"]
        assert entry["duration_ms"] >= 0
        assert entry["sql"].startswith("SELECT")


def test_fast_queries_are_not_logged_at_the_default_threshold(alice, client_for, caplog):
    with caplog.at_level(logging.WARNING, logger="microblog.slow_queries"):
        client_for(alice).get("/")
    assert not [r for r in caplog.records if r.name == "microblog.slow_queries"]


def test_json_formatter_carries_exceptions():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed here"
    assert "ValueError: boom" in entry["exception"]
    assert "request_id" not in entry


# --- slow-queries ---------------------------------------------------------------------------


def test_slow_queries_says_it_is_postgresql_only_on_sqlite(db):
    if is_postgres():
        pytest.skip("SQLite behaviour")
    with pytest.raises(CommandError, match="PostgreSQL-only"):
        call_command("slow-queries", stdout=StringIO())


@pytest.mark.postgres_only
def test_slow_queries_on_postgresql_lists_statements_or_says_how_to_enable(db):
    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_preload_libraries")
        loaded = "pg_stat_statements" in cursor.fetchone()[0]
    out = StringIO()
    if not loaded:
        with pytest.raises(CommandError, match="shared_preload_libraries") as error:
            call_command("slow-queries", stdout=out)
        assert "restart" in str(error.value)
    else:
        call_command("slow-queries", "--limit", "5", stdout=out)
        assert "total ms" in out.getvalue() or "no statements" in out.getvalue()


def test_slow_queries_exits_non_zero_from_the_command_line(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "microblog", "slow-queries"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PostgreSQL-only" in result.stderr


def test_health_reports_the_stream_served_on_the_same_port_by_microblog_serve(db, tmp_path):
    """`make run` serves /events/ beside the pages: /health says the stream is there."""
    from tests.stream.helpers import app_process, database_url, free_port, subprocess_env

    with database_url(tmp_path) as url:
        port = free_port()
        command = ["serve", "--port", str(port), "--job-workers", "0"]
        with (
            app_process(command, subprocess_env(url), port) as base,
            urllib.request.urlopen(base + "/health", timeout=10) as response,  # noqa: S310
        ):
            body = json.load(response)
    assert body["checks"]["stream"] == {"configured": True, "ok": True, "same_port": True}
