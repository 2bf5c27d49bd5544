"""Delivery latency and memory of the streaming tier (docs/benchmarks.md, "Live updates").

Starts `microblog stream` against DATABASE_URL, opens STREAMS Server-Sent Events connections
(one reader; the per-user cap raised for the run), measures the streaming process's RSS before
and after, then publishes POSTS posts through the service and records, for every stream, when
each event arrived: latency = arrival - the post's creation time (its id carries it).

    DATABASE_URL=postgres://... DEBUG=1 .venv/bin/python bench/stream_latency.py
"""

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STREAMS = int(os.environ.get("STREAMS", "1000"))
POSTS = int(os.environ.get("POSTS", "20"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def reader(
    port: int, cookie: str, arrivals: dict[int, list[float]], ready: list[int]
) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(
        f"GET /events/?feed=for_you HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={cookie}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await w.drain()
    status = await r.readline()
    assert b" 200 " in status, status
    ready.append(1)
    while True:
        line = await r.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            post_id = int(json.loads(line[6:])["id"])
            arrivals.setdefault(post_id, []).append(time.time())


async def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
    import django

    django.setup()
    from django.test import Client

    from microblog.accounts.models import User
    from microblog.core.ids import id_to_ms
    from microblog.follows.services import follow_create
    from microblog.posts.services import post_create

    def prepare() -> tuple[User, str]:
        suffix = str(int(time.time()))[-6:]
        author = User.objects.create_user(username=f"sa{suffix}", password="x" * 12)
        reader_user = User.objects.create_user(username=f"sr{suffix}", password="x" * 12)
        follow_create(follower=reader_user, followed=author)
        client = Client()
        client.force_login(reader_user)
        return author, client.cookies["sessionid"].value

    author, cookie = await asyncio.to_thread(prepare)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "STREAM_MAX_CONNECTIONS_PER_USER": str(STREAMS + 10)}
    env["LOG_LEVEL"] = "WARNING"
    process = subprocess.Popen(
        [sys.executable, "-m", "microblog", "stream", "--port", str(port)], env=env, cwd=ROOT
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        worker = children(process.pid)[0]
        await asyncio.sleep(1)
        before = rss_mb(worker)
        arrivals: dict[int, list[float]] = {}
        ready: list[int] = []
        tasks = []
        for _ in range(STREAMS):
            tasks.append(asyncio.create_task(reader(port, cookie, arrivals, ready)))
            if len(tasks) % 100 == 0:
                await asyncio.sleep(0.2)
        for _ in range(300):
            if len(ready) == STREAMS:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        after = rss_mb(worker)
        ids = []
        for n in range(POSTS):
            post = await asyncio.to_thread(post_create, author=author, content=f"bench {n}")
            ids.append(post.id)
            await asyncio.sleep(0.25)
        await asyncio.sleep(3)
        latencies = sorted(t - id_to_ms(i) / 1000 for i in ids for t in arrivals.get(i, []))
        delivered = len(latencies)
        q = statistics.quantiles(latencies, n=100) if delivered > 1 else [0.0] * 99
        print(
            json.dumps(
                {
                    "streams": len(ready),
                    "posts": POSTS,
                    "deliveries": delivered,
                    "expected": POSTS * STREAMS,
                    "latency_p50_ms": round(q[49] * 1000, 1),
                    "latency_p99_ms": round(q[98] * 1000, 1),
                    "latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
                    "rss_idle_mb": round(before, 1),
                    "rss_with_streams_mb": round(after, 1),
                    "kb_per_stream": round((after - before) * 1024 / max(1, len(ready)), 1),
                }
            )
        )
        for task in tasks:
            task.cancel()
    finally:
        process.terminate()
        process.wait(timeout=15)


if __name__ == "__main__":
    asyncio.run(main())
