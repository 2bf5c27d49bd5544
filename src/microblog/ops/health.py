"""`GET /health`: what works and what does not, as JSON, for a load balancer and an operator.

`status` is `down` (503) when the primary database does not answer, `degraded` (200) when it does
but something else is wrong (replica lagging or unreachable, cache broken, jobs waiting too long or
failing, streaming process not answering), else `ok`. `/up` stays the cheap liveness check.
"""

import logging
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache, caches
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from microblog.core.replicas import REPLICA_LAG_SQL

logger = logging.getLogger("microblog.health")

Check = dict[str, Any]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _failure(error: BaseException, start: float | None = None) -> Check:
    # Only the error's class goes out: its message can name hosts and users. The log has it all.
    check: Check = {"ok": False, "error": type(error).__name__}
    if start is not None:
        check["latency_ms"] = _ms(start)
    return check


def check_database() -> Check:
    start = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:
        logger.error("health: primary database unreachable: %s", error)
        return _failure(error, start)
    return {"ok": True, "vendor": connection.vendor, "latency_ms": _ms(start)}


def replica_urls() -> list[str]:
    if settings.REPLICA_DATABASE_URLS:
        return list(settings.REPLICA_DATABASE_URLS)
    return [settings.REPLICA_DATABASE_URL] if settings.REPLICA_DATABASE_URL else []


def check_replica() -> Check:
    """One standby: its check. Several: `ok` when every one is, and each one's check."""
    urls = replica_urls()
    if not urls:
        return {"configured": False}
    if len(urls) == 1:
        return check_one_replica(urls[0])
    replicas = [check_one_replica(url) for url in urls]
    return {
        "configured": True,
        "ok": all(replica["ok"] for replica in replicas),
        "replicas": replicas,
    }


def check_one_replica(url: str) -> Check:
    if urlsplit(url).scheme not in {"postgres", "postgresql", "pgsql"}:
        return {"configured": True, "ok": False, "error": "a replica must be PostgreSQL"}
    import psycopg

    start = time.perf_counter()
    try:
        with (
            psycopg.connect(url, connect_timeout=settings.HEALTH_TIMEOUT_SECONDS) as replica,
            replica.cursor() as cursor,
        ):
            cursor.execute(REPLICA_LAG_SQL)
            row = cursor.fetchone()
    except Exception as error:
        logger.warning("health: replica unreachable: %s", error)
        return {"configured": True, **_failure(error, start)}
    assert row is not None
    lag = round(float(row[1]), 3)
    check: Check = {
        "configured": True,
        "ok": lag <= settings.REPLICA_MAX_LAG_SECONDS,
        "in_recovery": bool(row[0]),
        "lag_seconds": lag,
        "latency_ms": _ms(start),
    }
    if not row[0]:
        check["warning"] = "the replica's URL points at a server that is not a standby"
    return check


def check_cache() -> Check:
    start = time.perf_counter()
    key = f"health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", timeout=10)
        value = cache.get(key)
        cache.delete(key)
    except Exception as error:
        logger.warning("health: cache failed: %s", error)
        return _failure(error, start)
    backend = type(caches["default"]).__name__
    if value != "1":
        return {"ok": False, "backend": backend, "error": "value not read back"}
    return {"ok": True, "backend": backend, "latency_ms": _ms(start)}


def check_jobs() -> Check:
    from microblog import jobs
    from microblog.jobs.queue import queue_stats

    try:
        stats = queue_stats()
        window = timedelta(seconds=settings.HEALTH_FAILED_JOBS_WINDOW_SECONDS)
        failed_recently = (
            jobs.failed_without_retry().filter(finished_at__gte=timezone.now() - window).count()
        )
        fan_outs_abandoned = len(jobs.abandoned_fan_outs())
    except Exception as error:
        logger.warning("health: job queue unreadable: %s", error)
        return _failure(error)
    age = round(float(stats["oldest_queued_age_s"]), 3)  # type: ignore[arg-type]
    problems = []
    if age > settings.HEALTH_QUEUE_MAX_AGE_SECONDS:
        problems.append(
            f"oldest queued job waits {age:.0f}s (> {settings.HEALTH_QUEUE_MAX_AGE_SECONDS}s)"
        )
    if failed_recently:
        problems.append(f"{failed_recently} job(s) failed in the last window with no retry pending")
    if fan_outs_abandoned:
        problems.append(
            f"{fan_outs_abandoned} fan-out(s) unfinished with no job to run them "
            "(the fanouts_resume job queues them again)"
        )
    check: Check = {
        "ok": not problems,
        "depth": stats["queue_depth"],
        "depth_by_queue": stats["depth_by_queue"],
        "oldest_queued_age_s": age,
        "failed": stats["failed"],
        "failed_recently": failed_recently,
        "failed_window_s": settings.HEALTH_FAILED_JOBS_WINDOW_SECONDS,
        "fan_outs_abandoned": fan_outs_abandoned,
    }
    if problems:
        check["problems"] = problems
    return check


def check_stream() -> Check:
    url = settings.STREAM_URL
    if not url:
        if "microblog.stream.combined" in sys.modules:
            # `microblog serve` (make run) serves /events/ from this very process, beside the
            # pages (stream/combined.py): it is up when this answers.
            return {"configured": True, "ok": True, "same_port": True}
        return {"configured": False}
    if urlsplit(url).scheme not in {"http", "https"}:
        return {"configured": True, "ok": False, "error": "STREAM_URL must be http(s)"}
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(  # noqa: S310 (scheme checked above)
            url, timeout=settings.HEALTH_TIMEOUT_SECONDS
        ) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except Exception as error:
        logger.warning("health: streaming process unreachable: %s", error)
        return {"configured": True, **_failure(error, start)}
    return {"configured": True, "ok": status < 500, "http_status": status, "latency_ms": _ms(start)}


def health_report() -> tuple[str, dict[str, Check]]:
    checks = {"database": check_database()}
    if not checks["database"]["ok"]:
        # Without the primary nothing else matters, and the job check would only fail again.
        return "down", checks
    checks["replica"] = check_replica()
    checks["cache"] = check_cache()
    checks["jobs"] = check_jobs()
    checks["stream"] = check_stream()
    degraded = any(check.get("ok") is False for check in checks.values())
    return ("degraded" if degraded else "ok"), checks


@never_cache
@require_safe
def health(request: HttpRequest) -> HttpResponse:
    status, checks = health_report()
    return JsonResponse(
        {"status": status, "instance": settings.INSTANCE_NAME, "checks": checks},
        status=503 if status == "down" else 200,
    )
