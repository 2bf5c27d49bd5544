"""Cursor pagination on time-sortable ids: `WHERE id < cursor ORDER BY id DESC LIMIT n + 1`.

No OFFSET anywhere: page 50 costs what page 1 costs.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from microblog.core.errors import InvalidInput
from microblog.core.ids import MAX_ID, parse_id

__all__ = ["MAX_ID", "Page", "make_page", "parse_cursor"]


class HasId(Protocol):
    @property
    def id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Page[T]:
    items: Sequence[T]
    next_cursor: int | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def parse_cursor(raw: str | None) -> int | None:
    """`?cursor=` as a post id; a clear 400 for anything that is not one."""
    if raw is None or raw == "":
        return None
    cursor = parse_id(raw)
    if cursor is None:
        raise InvalidInput("That page link is not valid. Go back to the first page and try again.")
    return cursor


def make_page[T: HasId](rows: Sequence[T], size: int) -> Page[T]:
    """`rows` were fetched with LIMIT size + 1; the extra row only says whether more exist."""
    if len(rows) > size:
        items = rows[:size]
        return Page(items=items, next_cursor=items[-1].id)
    return Page(items=rows, next_cursor=None)
