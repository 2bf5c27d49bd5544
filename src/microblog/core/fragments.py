"""Rendered HTML fragments cached by what they show, never by time.

A fragment's key is the complete list of values it shows (built by its owner, e.g.
`posts.cards.card_view`), so a fragment can never be stale: anything that changes what it shows
changes the key, and the old entry is simply never asked for again. Nothing is invalidated,
nothing expires for correctness, and every process and instance agrees without talking to the
others. Who may see what is decided before a fragment is asked for (the page's query); the cache
only saves rendering.

Two levels:

- **local**: a bounded LRU in each process (`FRAGMENT_CACHE_LOCAL_BYTES`), keyed by the value
  tuple itself (a dictionary lookup; no serialisation).
- **shared** (optional): Redis (`REDIS_URL`, `FRAGMENT_CACHE_SHARED=redis`), keyed by a digest
  of the value tuple and of the fragment's template source (a deploy that changes a template
  never reads the old HTML). Asked once per page for the local misses (`MGET`), written once per
  page for what was rendered (a pipeline of `SET ... EX`; the expiry only bounds memory). A
  Redis that fails or is slow is skipped for `FRAGMENT_CACHE_SHARED_RETRY_SECONDS`, and the
  page renders what it would have read.

Measured (docs/benchmarks.md, "Fragment cache"): a local hit costs about a microsecond, a
rendered post card about 30; the database as a shared level costs more than rendering, so
without Redis there is no shared level.
"""

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class SharedStore(Protocol):
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None: ...


class LocalLRU:
    """A dictionary bounded by the bytes of its values, least recently used out first.
    Thread-safe: granian runs several request threads per process."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> Any:
        with self._lock:
            found = self._data.get(key)
            if found is None:
                return None
            self._data.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._data[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._data.popitem(last=False)
                self.bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0


class RedisStore:
    """The shared level on Redis: `MGET` and a pipeline of `SET EX`, with short timeouts. After
    an error the store is skipped for `retry_seconds` (one slow Redis must not add its timeout
    to every page)."""

    def __init__(self, url: str, prefix: str, ttl_seconds: int, retry_seconds: float) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=0
        )
        self.errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.prefix = prefix
        self.ttl = ttl_seconds
        self.retry_seconds = retry_seconds
        self.down_until = 0.0

    def _usable(self) -> bool:
        return time.monotonic() >= self.down_until

    def _failed(self, error: Exception) -> None:
        if self._usable():
            logger.warning("fragment cache: Redis unavailable, rendering instead: %s", error)
        self.down_until = time.monotonic() + self.retry_seconds

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not self._usable():
            return [None] * len(keys)
        try:
            # A client made without decode_responses returns bytes (or None for a miss).
            found: list[bytes | None] = self.client.mget(  # type: ignore[assignment]
                [self.prefix + k for k in keys]
            )
        except self.errors as error:
            self._failed(error)
            return [None] * len(keys)
        return found

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not self._usable():
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(self.prefix + key, value, ex=self.ttl)
            pipe.execute()
        except self.errors as error:
            self._failed(error)


@dataclass(slots=True)
class Lookup:
    """What one batch of lookups found: counted by the caller's metrics."""

    local_hits: int = 0
    shared_hits: int = 0
    rendered: int = 0
    rendered_bytes: int = 0


@dataclass
class FragmentCache:
    """One kind of fragment. `render(values)` makes the fragment from its key alone (so the
    fragment cannot show anything the key leaves out); `encode`/`decode` turn a fragment into
    the shared level's bytes and back. `version` is mixed into the shared level's keys (the
    template source's digest)."""

    name: str
    render: Callable[[Any], Any]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    size: Callable[[Any], int]
    version: Callable[[], str]
    local: LocalLRU | None
    shared: SharedStore | None = None
    observe: Callable[[str, Lookup, "FragmentCache"], None] | None = None
    _version: str | None = field(default=None, repr=False)

    def shared_key(self, values: Hashable) -> str:
        if self._version is None:
            self._version = self.version()
        digest = hashlib.blake2b(repr(values).encode(), digest_size=20).hexdigest()
        return f"{self.name}:{self._version}:{digest}"

    def get_many(self, keys: Sequence[Hashable], use_shared: bool = True) -> list[Any]:
        """The fragments of `keys`, in order: from this process, else from the shared level
        (one round trip for all of them), else rendered (and stored in both)."""
        found: list[Any] = [None] * len(keys)
        lookup = Lookup()
        missing: list[int] = []
        local = self.local
        if local is not None:
            for n, key in enumerate(keys):
                value = local.get(key)
                if value is None:
                    missing.append(n)
                else:
                    found[n] = value
            lookup.local_hits = len(keys) - len(missing)
        else:
            missing = list(range(len(keys)))
        if missing and self.shared is not None and use_shared:
            shared_keys = [self.shared_key(keys[n]) for n in missing]
            still: list[int] = []
            to_write: list[tuple[str, bytes]] = []
            for n, shared_key, raw in zip(
                missing, shared_keys, self.shared.get_many(shared_keys), strict=True
            ):
                if raw is None:
                    value = self.render(keys[n])
                    to_write.append((shared_key, self.encode(value)))
                    still.append(n)
                else:
                    value = self.decode(raw)
                    lookup.shared_hits += 1
                found[n] = value
                if local is not None:
                    local.put(keys[n], value, self.size(value))
            if to_write:
                self.shared.set_many(to_write)
            missing = still
            for n in still:
                lookup.rendered_bytes += self.size(found[n])
        else:
            for n in missing:
                value = self.render(keys[n])
                size = self.size(value)
                found[n] = value
                lookup.rendered_bytes += size
                if local is not None:
                    local.put(keys[n], value, size)
        lookup.rendered = len(missing)
        if self.observe is not None and keys:
            self.observe(self.name, lookup, self)
        return found

    def clear_local(self) -> None:
        if self.local is not None:
            self.local.clear()
