"""Every Prometheus metric of the app, defined once, and the `/metrics` view.

With several processes (granian workers, job workers, streaming processes) each process writes its
samples to files under PROMETHEUS_MULTIPROC_DIR and a scrape merges them (prometheus-client's
multiprocess mode); `microblog serve` creates that directory for its children. Without the variable
the metrics live in this process's registry, which is right for one process.

The job queue figures are not samples: they are read from the database at scrape time.

Label values are bounded: routes are URL pattern names, never raw paths.
"""

import hmac
import ipaddress
import os
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from microblog.core.ids import id_to_ms

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# --- HTTP (recorded by ops.requestlog.RequestLogMiddleware) ------------------------------

HTTP_REQUESTS = Counter(
    "microblog_http_requests_total",
    "HTTP requests answered, by URL pattern name, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "microblog_http_request_duration_seconds",
    "Time from the request entering the middleware stack to the response leaving it.",
    ["route", "status"],
    buckets=LATENCY_BUCKETS,
)
SQL_QUERIES = Histogram(
    "microblog_http_request_sql_queries",
    "SQL queries run on the default database while answering one request.",
    ["route"],
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100),
)

# --- Jobs ----------------------------------------------------------------------------------

FANOUT_LAG = Histogram(
    "microblog_fanout_lag_seconds",
    "From a post's creation (its commit) to the end of its fan-out job, i.e. the last feed entry "
    "written; retries included.",
    buckets=LAG_BUCKETS,
)
JOBS_REQUEUED = Counter(
    "microblog_jobs_requeued_total",
    "Jobs put back in the queue to run again, by reason: stopped (the worker was asked to stop "
    "while running it), worker_gone (its worker died), database_lost (its worker lost the "
    "database), safety_net (an unfinished fan-out had no job left, jobs.fanouts_resume).",
    ["reason"],
)

# --- Rate limiting (incremented by the limiter, when there is one) --------------------------

RATE_LIMIT_REJECTIONS = Counter(
    "microblog_rate_limit_rejections_total",
    "Requests refused by the rate limiter, by limit name.",
    ["limit"],
)

# --- Cache (counted by cached_get) ---------------------------------------------------------

CACHE_REQUESTS = Counter(
    "microblog_cache_requests_total",
    "Reads of the Django cache through ops.metrics.cached_get, by result (hit or miss).",
    ["result"],
)
CACHE_HITS = CACHE_REQUESTS.labels(result="hit")
CACHE_MISSES = CACHE_REQUESTS.labels(result="miss")

# --- Fragment cache (core.fragments; counted once per page, not per fragment) ----------------

FRAGMENT_CACHE_FRAGMENTS = Counter(
    "microblog_fragment_cache_fragments_total",
    "Cached fragments asked for (post cards, profile headers), by kind and by where each came "
    "from: local (this process), shared (Redis) or rendered (a miss in both).",
    ["fragment", "source"],
)
FRAGMENT_CACHE_RENDERED_BYTES = Counter(
    "microblog_fragment_cache_rendered_bytes_total",
    "Characters of HTML rendered on misses, by kind of fragment.",
    ["fragment"],
)
FRAGMENT_CACHE_LOCAL_BYTES = Gauge(
    "microblog_fragment_cache_local_bytes",
    "Characters of HTML held by the processes' local fragment caches (summed over live processes).",
    ["fragment"],
    multiprocess_mode="livesum",
)
FRAGMENT_CACHE_LOCAL_ENTRIES = Gauge(
    "microblog_fragment_cache_local_entries",
    "Fragments held by the processes' local fragment caches (summed over live processes).",
    ["fragment"],
    multiprocess_mode="livesum",
)
_fragment_children: dict[str, tuple[Any, ...]] = {}


def observe_fragments(name: str, lookup: Any, cache: Any) -> None:
    """One batch of fragment lookups (core.fragments.Lookup): a few metric updates per page,
    whatever the number of cards. The local size is written only when something was added."""
    children = _fragment_children.get(name)
    if children is None:
        children = _fragment_children[name] = (
            FRAGMENT_CACHE_FRAGMENTS.labels(fragment=name, source="local"),
            FRAGMENT_CACHE_FRAGMENTS.labels(fragment=name, source="shared"),
            FRAGMENT_CACHE_FRAGMENTS.labels(fragment=name, source="rendered"),
            FRAGMENT_CACHE_RENDERED_BYTES.labels(fragment=name),
            FRAGMENT_CACHE_LOCAL_BYTES.labels(fragment=name),
            FRAGMENT_CACHE_LOCAL_ENTRIES.labels(fragment=name),
        )
    local, shared, rendered, rendered_bytes, local_bytes, local_entries = children
    if lookup.local_hits:
        local.inc(lookup.local_hits)
    if lookup.shared_hits:
        shared.inc(lookup.shared_hits)
    if lookup.rendered:
        rendered.inc(lookup.rendered)
        rendered_bytes.inc(lookup.rendered_bytes)
    if (lookup.rendered or lookup.shared_hits) and cache.local is not None:
        local_bytes.set(cache.local.bytes)
        local_entries.set(len(cache.local))


# --- Streaming (for the streaming process) -------------------------------------------------

STREAM_CONNECTIONS = Gauge(
    "microblog_stream_connections",
    "Server-Sent Events connections open now (summed over live streaming processes).",
    multiprocess_mode="livesum",
)
STREAM_DELIVERY_LATENCY = Histogram(
    "microblog_stream_delivery_latency_seconds",
    "From a post's commit to its event being written to a reader's stream.",
    buckets=LAG_BUCKETS,
)


def observe_fanout_lag(post_id: int, now: float | None = None) -> None:
    """The post's id carries its creation time in milliseconds (core.ids), so no query is
    needed to know how long ago it was committed."""
    created = id_to_ms(post_id) / 1000
    FANOUT_LAG.observe(max(0.0, (time.time() if now is None else now) - created))


_MISSING = object()


def cached_get(key: str, default: Any = None, alias: str = "default") -> Any:
    """`caches[alias].get(key, default)`, counted as a hit or a miss. Use it for the app's cache
    reads so microblog_cache_requests_total tells how well the cache works."""
    value = caches[alias].get(key, _MISSING)
    if value is _MISSING:
        CACHE_MISSES.inc()
        return default
    CACHE_HITS.inc()
    return value


# --- Exposition ----------------------------------------------------------------------------


class QueueCollector(Collector):
    """Job queue figures, read from the database when scraped (jobs.queue.queue_stats)."""

    def collect(self) -> Iterable[Any]:
        from microblog import jobs
        from microblog.jobs.queue import queue_stats

        stats = queue_stats()
        depth = GaugeMetricFamily(
            "microblog_job_queue_depth", "Jobs waiting to run, by queue.", labels=["queue"]
        )
        depth_by_queue: dict[str, int] = stats["depth_by_queue"]  # type: ignore[assignment]
        for queue in settings.TASKS["default"].get("QUEUES", []):
            depth.add_metric([queue], depth_by_queue.get(queue, 0))
        for queue, count in depth_by_queue.items():
            if queue not in settings.TASKS["default"].get("QUEUES", []):
                depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily(
            "microblog_job_queue_oldest_age_seconds",
            "Age of the oldest job that is due and still waiting (0 when none is).",
            value=float(stats["oldest_queued_age_s"]),  # type: ignore[arg-type]
        )
        yield GaugeMetricFamily(
            "microblog_jobs_failed",
            "Jobs that failed for good (after their last retry) and are kept for review.",
            value=float(stats["failed"]),  # type: ignore[arg-type]
        )
        abandoned = GaugeMetricFamily(
            "microblog_jobs_abandoned",
            "Work that nothing will run again: failed jobs with no later run pending (kind "
            "job), and unfinished fan-outs with no job (kind fan_out; jobs.fanouts_resume "
            "queues them again).",
            labels=["kind"],
        )
        abandoned.add_metric(["job"], jobs.failed_without_retry().count())
        abandoned.add_metric(["fan_out"], len(jobs.abandoned_fan_outs()))
        yield abandoned


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        yield from self.source.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(QueueCollector())
    return generate_latest(registry)


@lru_cache(maxsize=8)
def _networks(
    spec: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def allowed(request: HttpRequest) -> bool:
    """A scraper is let in with the bearer token, or from an allowed network when it reached
    the app directly (a request forwarded by a proxy has the proxy's address, so the network
    rule does not apply to it)."""
    token = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
        given_bytes = given.strip().encode("utf-8", "surrogatepass")
        if scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, token.encode()):
            return True
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 scraper on a dual-stack socket
    networks = _networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    return any(address in network for network in networks)


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse(
            "Metrics are not available to this client: send the METRICS_TOKEN as a bearer token, "
            "or scrape from a network in METRICS_ALLOWED_NETWORKS.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
