"""Mastodon's list conventions on our keyset pages: `limit` (default 20, at most 40),
`max_id` (older than), `since_id` (the newest above), `min_id` (just above, for paging forward),
and RFC 8288 `Link` headers with `next` (older) and `prev` (newer) pages."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse

from microblog.core.errors import InvalidInput
from microblog.core.ids import parse_id
from microblog.core.pagination import HasId, Page
from microblog.interactions.models import Repost

DEFAULT_LIMIT = 20
MAX_LIMIT = 40


@dataclass(frozen=True, slots=True)
class ListParams:
    limit: int
    max_id: int | None
    since_id: int | None
    min_id: int | None

    @property
    def newer(self) -> int | None:
        """The lower bound when the client asks for newer items (min_id wins, as on Mastodon)."""
        return self.min_id if self.min_id is not None else self.since_id


def _id_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    value = parse_id(raw)
    if value is None:
        raise InvalidInput(f"{name} must be an id (digits only)")
    return value


def list_params(request: HttpRequest) -> ListParams:
    raw = request.GET.get("limit", "")
    limit = DEFAULT_LIMIT
    if raw:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
            raise InvalidInput("limit must be a whole number")
        # Mastodon clamps rather than refuses.
        limit = max(1, min(int(raw), MAX_LIMIT))
    return ListParams(
        limit=limit,
        max_id=_id_param(request, "max_id"),
        since_id=_id_param(request, "since_id"),
        min_id=_id_param(request, "min_id"),
    )


def feed_positions(params: ListParams) -> ListParams:
    """A timeline with reblogs (home) is ordered by the posts' ids: a reposted post stands at
    its own id, as on the For You page (timelines.fanout), while its reblog's outer id is the
    Repost row's, made when it was reposted (Mastodon's reblog is a status of its own, with an
    id of its own, and a client keeps one entry per id: the post's id would make the reblog and
    the post one status to it). The Link headers carry the posts' ids, so clients that follow
    them page exactly; a client that pages from the ids it was shown (max_id, since_id or
    min_id = an outer id) has that id turned back into its post's, the reblog's place in the
    timeline, in one query of the repost ids (by primary key; only when a cursor is given)."""
    cursors = {c for c in (params.max_id, params.since_id, params.min_id) if c is not None}
    if not cursors:
        return params
    position = dict(Repost.objects.filter(id__in=cursors).values_list("id", "post_id"))
    if not position:
        return params

    def at(cursor: int | None) -> int | None:
        return position.get(cursor, cursor) if cursor is not None else None

    return ListParams(
        limit=params.limit,
        max_id=at(params.max_id),
        since_id=at(params.since_id),
        min_id=at(params.min_id),
    )


def collect[T](fetch: Callable[[int | None], Page[T]], cursor: int | None, limit: int) -> list[T]:
    """Up to `limit` items from a selector that reads PAGE_SIZE at a time from `cursor` down:
    one read for the default limit, two for a limit above the page size."""
    items: list[T] = []
    while True:
        page = fetch(cursor)
        items.extend(page.items)
        if len(items) >= limit or page.next_cursor is None:
            return items[:limit]
        cursor = page.next_cursor


def link_header(
    request: HttpRequest,
    response: HttpResponse,
    items: Sequence[HasId],
    *,
    limit: int,
    full: bool,
    prev: bool = True,
) -> HttpResponse:
    """`Link: <...?max_id=OLDEST>; rel="next", <...?min_id=NEWEST>; rel="prev"`, next only when
    the page was full (`full`); other query parameters are kept."""
    if not items:
        return response
    base = request.build_absolute_uri(request.path)
    kept = [
        (key, value)
        for key, values in request.GET.lists()
        if key not in {"max_id", "since_id", "min_id", "limit"}
        for value in values
    ]
    links = []
    if full:
        query = urlencode([*kept, ("limit", str(limit)), ("max_id", str(items[-1].id))])
        links.append(f'<{base}?{query}>; rel="next"')
    if prev:
        query = urlencode([*kept, ("limit", str(limit)), ("min_id", str(items[0].id))])
        links.append(f'<{base}?{query}>; rel="prev"')
    response["Link"] = ", ".join(links)
    return response
