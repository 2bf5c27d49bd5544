"""One JSON log line and the metrics of every request, slow-query logging, and the JSON formatter.

RequestLogMiddleware sits first in MIDDLEWARE, so its duration covers the whole stack. It costs
no query: the user id is read only if something during the request already loaded the user or
the session. Queries are counted with `connection.execute_wrapper` (default database only).
"""

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

from microblog.ops import metrics

request_logger = logging.getLogger("microblog.requests")
slow_query_logger = logging.getLogger("microblog.slow_queries")

# Taken from the client (or the proxy in front) when it looks like an id, never echoed otherwise.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SQL_LOGGED_CHARS = 2000

# Methods counted under their own name; any other (made up by a client: `curl -X ZZZ`) is
# counted as "other", so a client cannot create metric series at will.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


def request_id_for(request: HttpRequest) -> str:
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    if given and REQUEST_ID_PATTERN.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.view_name or "unnamed"
    if request.path.startswith(settings.STATIC_URL or "/static/"):
        return "static"
    return "unmatched"


def _user_id(request: HttpRequest) -> int | None:
    """The signed-in user's id when the request already knows it; never a query to find out."""
    user = getattr(request, "user", None)
    if user is not None:
        wrapped = getattr(user, "_wrapped", user)
        if wrapped is not empty:
            return wrapped.pk
    session = getattr(request, "session", None)
    if session is not None and hasattr(session, "_session_cache"):
        value = session._session_cache.get(SESSION_KEY)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


class QueryCounter:
    """An execute wrapper: counts queries and logs those slower than SLOW_QUERY_MS."""

    __slots__ = ("count", "request_id", "slow_ms")

    def __init__(self, request_id: str, slow_ms: float) -> None:
        self.count = 0
        self.request_id = request_id
        self.slow_ms = slow_ms

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            elapsed_ms = (time.perf_counter() - start) * 1000
            if elapsed_ms >= self.slow_ms:
                slow_query_logger.warning(
                    "slow query",
                    extra={
                        "fields": {
                            "request_id": self.request_id,
                            "duration_ms": round(elapsed_ms, 2),
                            "many": many,
                            "sql": sql[:SQL_LOGGED_CHARS],
                        }
                    },
                )


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # The metric children of each (route, method, status), so a request skips labels().
        self.children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        request_id = request_id_for(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request_id.set(request_id)
        counter = QueryCounter(request_id, settings.SLOW_QUERY_MS)
        # What connection.execute_wrapper() does, without a generator-based context manager.
        wrappers = connection.execute_wrappers
        wrappers.append(counter)
        try:
            response = self.get_response(request)
        finally:
            wrappers.remove(counter)
            current_request_id.reset(token)
        duration = time.perf_counter() - start
        response["X-Request-ID"] = request_id

        route = _route(request)
        method = request.method if request.method in KNOWN_METHODS else "other"
        status = response.status_code
        key = (route, method, status)
        children = self.children.get(key)
        if children is None:
            status_text = str(status)
            children = (
                metrics.HTTP_REQUESTS.labels(route, method, status_text),
                metrics.HTTP_LATENCY.labels(route, status_text),
                metrics.SQL_QUERIES.labels(route),
            )
            if len(self.children) < 10_000:
                self.children[key] = children
        children[0].inc()
        children[1].observe(duration)
        children[2].observe(counter.count)

        if request_logger.isEnabledFor(logging.INFO):
            fields = {
                "request_id": request_id,
                "method": method,
                "path": request.path,
                "route": route,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
                "queries": counter.count,
                "user_id": _user_id(request),
            }
            # makeRecord + handle: logger.info() would also walk the stack to find its caller.
            request_logger.handle(
                request_logger.makeRecord(
                    request_logger.name,
                    logging.INFO,
                    __file__,
                    0,
                    "request",
                    (),
                    None,
                    extra={"fields": fields},
                )
            )
        return response


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id when there is one,
    the record's `fields` (passed as `extra={"fields": {...}}`) and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id is not None:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
