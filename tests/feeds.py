"""The oracle for feed contents, shared by every test that checks a For You: the feed as the
views read it, page by page to the end, and the reference pull query it must equal."""

from microblog.accounts.models import User
from microblog.timelines import selectors


def _reader(user: User | int) -> User:
    # Fresh from the database: horizons and flags change under a test's feet.
    return User.objects.get(id=user if isinstance(user, int) else user.id)


def feed_ids(user: User | int, max_pages: int = 1000) -> list[int]:
    """Every post id of the reader's For You, page by page (selectors.for_you) to the end; each
    page's cursor must be older than the last, so a feed can neither loop nor end early."""
    reader = _reader(user)
    ids: list[int] = []
    cursor = None
    for _ in range(max_pages):
        page = selectors.for_you(reader, cursor)
        ids += [p.id for p in page.items]
        if not page.has_more:
            return ids
        assert page.next_cursor is not None and page.next_cursor < (cursor or 1 << 63)
        cursor = page.next_cursor
    raise AssertionError(f"For You of {reader} had more than {max_pages} pages")


def pull_ids(user: User | int) -> list[int]:
    """The reader's For You by the reference pull query, newest first."""
    query = selectors.for_you_pull_query(_reader(user))
    return list(query.order_by("-id").values_list("id", flat=True))
