"""Delivery latency of the client API's user stream (stream/api.py) to many open streams.

Against DATABASE_URL (PostgreSQL; it writes users and posts, so use a scratch database) and a
running `microblog stream` on STREAM_PORT: READERS users who follow one author each open
`/api/v1/streaming/user` with a token of their own; the author posts POSTS times; for each post,
the time from post_create's return to each stream's `event: update`. Prints p50/p99/max and the
wall time of the fan-out.

    DATABASE_URL=postgres://... STREAM_PORT=8001 READERS=200 POSTS=20 \\
        .venv/bin/python bench/stream_api_fanout.py
"""

import asyncio
import os
import secrets
import statistics
import sys
import time
from datetime import timedelta


def setup(readers: int) -> tuple[int, list[str]]:
    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    from microblog.accounts.models import User
    from microblog.api.services import app_register
    from microblog.follows.services import follow_create

    run = secrets.token_hex(3)
    author = User.objects.create_user(username=f"bench_author_{run}", password=None)
    app, _ = app_register(name="bench", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scopes="read")
    tokens = []
    for n in range(readers):
        reader = User.objects.create_user(username=f"bench_reader_{run}_{n}", password=None)
        follow_create(follower=reader, followed=author)
        raw = secrets.token_urlsafe(32)
        AccessToken.objects.create(
            user=reader,
            application=app,
            token=raw,
            scope="read",
            expires=timezone.now() + timedelta(hours=1),
        )
        tokens.append(raw)
    return author.id, tokens


async def open_stream(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /api/v1/streaming/user HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status, status
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


async def next_update(reader: asyncio.StreamReader) -> float:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("stream ended")
        if b"event: update" in line:
            return time.monotonic()


async def main() -> None:
    port = int(os.environ["STREAM_PORT"])
    readers = int(os.environ.get("READERS", "200"))
    posts = int(os.environ.get("POSTS", "20"))
    author_id, tokens = await asyncio.to_thread(setup, readers)
    streams = [await open_stream(port, token) for token in tokens]
    from microblog.accounts.models import User
    from microblog.posts.services import post_create

    author = await asyncio.to_thread(User.objects.get, id=author_id)
    latencies: list[float] = []
    walls: list[float] = []
    for n in range(posts):
        waiting = [asyncio.create_task(next_update(r)) for r, _w in streams]
        await asyncio.to_thread(post_create, author=author, content=f"bench {n}")
        posted = time.monotonic()
        arrived = await asyncio.wait_for(asyncio.gather(*waiting), 30)
        latencies += [(t - posted) * 1000 for t in arrived]
        walls.append((max(arrived) - posted) * 1000)
    for _r, writer in streams:
        writer.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"{readers} streams x {posts} posts: delivery p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms; last stream served after "
        f"{statistics.median(walls):.1f} ms (median over posts)"
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()
    asyncio.run(main())
