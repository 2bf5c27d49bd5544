"""Pages and stream on one port, for `make run` (`microblog serve --stream same-port`, the default).

`/events/` goes to the streaming app; everything else to Django's WSGI app, run in a thread pool
of STREAM_WSGI_THREADS threads (`serve --threads`). The adapter buffers each response, which suits
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

MAX_BODY = 16 * 1024 * 1024
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


async def _wsgi(scope: Scope, receive: Receive, send: Send) -> None:
    body = bytearray()
    for _ in range(1_000_000):
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            await send({"type": "http.response.start", "status": 413, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if not message.get("more_body"):
            break
    adapter = WsgiToAsgiInstance(wsgi_application)
    adapter.scope = scope  # build_environ reads the headers from it
    environ = adapter.build_environ(scope, io.BytesIO(bytes(body)))
    loop = asyncio.get_running_loop()
    status, headers, content = await loop.run_in_executor(_pool, _run_wsgi, environ)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    is_stream = scope["type"] == "http" and scope["path"].startswith("/events")
    if scope["type"] == "lifespan" or is_stream:
        await stream_application(scope, receive, send)
    elif scope["type"] == "http":
        await _wsgi(scope, receive, send)
