"""Pages and stream on one port, for `make run` (`microblog serve --stream same-port`, the default).

`/events/` and the client API's `/api/v1/streaming` go to the streaming app (stream/app.py,
`is_stream_path`); everything else to Django's WSGI app, run in a thread pool of
STREAM_WSGI_THREADS threads (`serve --threads`). The request body is not read ahead: Django
reads it from the socket as it parses it (`RequestBody`), so a body larger than the route can use
is refused unread (core.middleware.RequestBodyLimitMiddleware, with the 413 page and the security
headers) instead of being held in memory first. The adapter buffers each response, which suits
pages; production runs pages under granian's native WSGI (`serve --stream off`) and the stream as
its own process (`microblog stream`), with the load balancer routing `/events/` to it
(docs/architecture.md, "Real-time").
"""

import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.wsgi import WsgiToAsgiInstance

from microblog.wsgi import application as wsgi_application  # sets Django up

from microblog.stream.app import Receive, Scope, Send  # isort: skip
from microblog.stream.app import application as stream_application  # isort: skip
from microblog.stream.app import is_stream_path  # isort: skip

# A client that stops sending its body for this long gets its request ended (the body is short).
BODY_READ_TIMEOUT_SECONDS = 30
_pool = ThreadPoolExecutor(
    max_workers=int(os.environ.get("STREAM_WSGI_THREADS", "8")), thread_name_prefix="wsgi"
)


def _run_wsgi(environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    captured: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        return written.append

    result = wsgi_application(environ, start_response)
    try:
        for chunk in result:
            written.append(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()  # Django's request_finished: closes the request's database connections
    return captured["status"], captured["headers"], b"".join(written)


class RequestBody(io.RawIOBase):
    """`wsgi.input` for a WSGI app run in a worker thread: reads the ASGI request body from the
    event loop as the app asks for it, never more (Django reads at most Content-Length)."""

    def __init__(self, receive: Receive, loop: asyncio.AbstractEventLoop) -> None:
        self._receive = receive
        self._loop = loop
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    async def _next_message(self) -> dict[str, Any]:
        return await self._receive()

    def _pull(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._next_message(), self._loop)
        try:
            message = future.result(BODY_READ_TIMEOUT_SECONDS)
        except TimeoutError:
            future.cancel()
            message = {"type": "http.disconnect"}
        if message["type"] != "http.request":
            self._done = True  # the client went away: the body ends here
            return
        self._buffer += message.get("body", b"")
        if not message.get("more_body"):
            self._done = True

    def _take(self, size: int) -> bytes:
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read(self, size: int | None = -1, /) -> bytes:
        while not self._done and (size is None or size < 0 or len(self._buffer) < size):
            self._pull()
        return self._take(len(self._buffer) if size is None or size < 0 else size)

    def readline(self, size: int | None = -1, /) -> bytes:
        while not self._done and b"\n" not in self._buffer:
            if size is not None and 0 <= size <= len(self._buffer):
                break
            self._pull()
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size is not None and size >= 0:
            end = min(end, size)
        return self._take(end)


def _environ(scope: Scope, body: RequestBody) -> dict[str, Any]:
    # No limit of asgiref's own on repeated headers (its ValueError would be an answer without
    # Django's headers): granian already bounds a request's headers.
    adapter = WsgiToAsgiInstance(wsgi_application, duplicate_header_limit=None)
    # build_environ reads the headers from adapter.scope; the query string is set here as WSGI
    # wants it (latin-1, as granian's own WSGI does), since asgiref's ASCII decoding would raise on
    # a raw non-ASCII byte.
    adapter.scope = {**scope, "query_string": b""}
    environ: dict[str, Any] = adapter.build_environ(adapter.scope, body)
    environ["QUERY_STRING"] = scope.get("query_string", b"").decode("latin-1")
    return environ


async def _wsgi(scope: Scope, receive: Receive, send: Send) -> None:
    loop = asyncio.get_running_loop()
    environ = _environ(scope, RequestBody(receive, loop))
    status, headers, content = await loop.run_in_executor(_pool, _run_wsgi, environ)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    is_stream = scope["type"] == "http" and is_stream_path(scope["path"])
    if scope["type"] == "lifespan" or is_stream:
        await stream_application(scope, receive, send)
    elif scope["type"] == "http":
        await _wsgi(scope, receive, send)
