"""Time-sortable 64-bit ids (Snowflake-style), so a post's id is its cursor and its sort key.

Layout: milliseconds since EPOCH in the high bits, then 22 low bits. Within one process the low bits
count up (monotonic ids even inside one millisecond); each process starts that counter at a random
point so two processes rarely collide, and the primary key turns a rare collision into a retry.
"""

import secrets
import threading
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
LOW_BITS = 22
# Ids are positive and fit a signed 64-bit column (PostgreSQL's bigint).
MAX_ID = (1 << 63) - 1
# The digits of an id as it may appear in a request: at most 19, ASCII only.
ID_PATTERN = "[0-9]{1,19}"

_lock = threading.Lock()
_last_id = 0


def new_id(now_ms: int | None = None) -> int:
    global _last_id
    ms = (int(time.time() * 1000) if now_ms is None else now_ms) - EPOCH_MS
    candidate = (ms << LOW_BITS) | secrets.randbelow(1 << (LOW_BITS - 1))
    with _lock:
        if candidate <= _last_id:
            candidate = _last_id + 1
        _last_id = candidate
    return candidate


def id_to_ms(value: int) -> int:
    """Unix time in milliseconds at which the id was made."""
    return (value >> LOW_BITS) + EPOCH_MS


def first_id_at_ms(unix_ms: int) -> int:
    """The smallest id made at or after `unix_ms`: a cursor for "posts newer than this time"."""
    return max(0, unix_ms - EPOCH_MS) << LOW_BITS


def parse_id(raw: object) -> int | None:
    """A post id from a request (path, cursor, `since`, form field, header), or None for
    anything that is not one. 0 passes: it stands before every id (`?since=0` from an empty
    feed). The one place request text becomes an id, so nothing the database would refuse
    (beyond 64 bits) or that int() takes unexpectedly ("²", " 7", "+7", "7_0") gets through."""
    if not isinstance(raw, str) or not (0 < len(raw) <= 19 and raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


def is_id(value: int) -> bool:
    """Whether an integer can be an id (an int() already made, e.g. by a form field)."""
    return 0 < value <= MAX_ID
