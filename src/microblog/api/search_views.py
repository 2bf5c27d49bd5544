"""The client API's search and hashtags (docs/api.md, "Search and hashtags"): the search app's
parser and selectors (search.query, search.selectors) and the tags app's selectors, so who may
be listed is timelines.visibility's, as on the pages. Searches count against the `searches`
rate limit and the tag timeline against `feeds`, for the token's user (ratelimit.ROUTE_RULES)."""

from django.http import HttpRequest, HttpResponse

from microblog.api import serializers
from microblog.api.pagination import MAX_LIMIT, list_params
from microblog.api.params import query
from microblog.api.serializers import Context
from microblog.api.views import ok, posts_page, timeline_posts
from microblog.core.errors import InvalidInput, NotFound
from microblog.core.text import HASHTAG_MAX_LENGTH, hashtag_name
from microblog.search import query as search_query
from microblog.search import selectors as search
from microblog.tags import selectors as tags
from microblog.tags.models import Tag

SEARCH_TYPES = ("accounts", "statuses", "hashtags")
# Deep offsets make the database skip every match before them; the web's search pages by
# cursor instead, and apps rarely go past a few pages.
MAX_OFFSET = 1000
TRENDS_DEFAULT_LIMIT = 10
TRENDS_MAX_LIMIT = 20  # Mastodon's
NO_SUCH_TAG = "Record not found"


def _offset(request: HttpRequest) -> int:
    raw = request.GET.get("offset", "")
    if raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or int(raw) > MAX_OFFSET:
        raise InvalidInput(f"offset must be a whole number from 0 to {MAX_OFFSET}")
    return int(raw)


def _limit(request: HttpRequest, default: int) -> int:
    """`limit` as list_params reads it (clamped to 1..40), with this list's default."""
    return list_params(request).limit if request.GET.get("limit") else default


def _parsed(request: HttpRequest) -> search_query.SearchQuery:
    """The search's `q`, parsed by the web search's parser (Invalid, a 422 with its message, for
    an empty, too long or unsearchable text). A full address of a local account
    (`alice@this.host`, as apps send it) is searched as its username."""
    raw = query(request).text("q")
    suffix = "@" + request.get_host()
    if raw.lower().endswith(suffix.lower()):
        raw = raw[: -len(suffix)]
    return search_query.parse(raw)


def search_v2(request: HttpRequest) -> HttpResponse:
    """`q` in accounts (username prefix), statuses (every word) and hashtags (name prefix), or
    in the one `type` asked for; `limit` each, from `offset` (statuses also below `max_id`).
    `resolve`, `following`, `account_id` and `exclude_unreviewed` change nothing (every account
    is local; see docs/api.md)."""
    kind = query(request).text("type")
    if kind and kind not in SEARCH_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(SEARCH_TYPES)}")
    params = list_params(request)
    offset = _offset(request)
    parsed = _parsed(request)
    viewer = request.user
    ctx = Context.of(request)
    wanted = [kind] if kind else list(SEARCH_TYPES)
    accounts = (
        search.accounts(parsed, viewer, limit=params.limit, offset=offset)
        if "accounts" in wanted
        else []
    )
    posts = (
        search.posts(parsed, viewer, params.max_id, size=params.limit, offset=offset).items
        if "statuses" in wanted and parsed.posts_wanted
        else []
    )
    found_tags = (
        search.hashtags(parsed, limit=params.limit, offset=offset) if "hashtags" in wanted else []
    )
    return ok(
        {
            "accounts": [serializers.account(user, ctx) for user in accounts],
            "statuses": serializers.statuses(posts, ctx),
            "hashtags": _tags(found_tags, ctx),
        }
    )


def accounts_search(request: HttpRequest) -> HttpResponse:
    """`GET /api/v1/accounts/search?q=`: search_v2's accounts alone."""
    limit = _limit(request, MAX_LIMIT)  # Mastodon's default here is 40
    found = search.accounts(_parsed(request), request.user, limit=limit, offset=_offset(request))
    ctx = Context.of(request)
    return ok([serializers.account(user, ctx) for user in found])


def _tags(found: list[Tag], ctx: Context) -> list[dict[str, object]]:
    history = tags.tags_history([t.id for t in found]) if found else {}
    return [serializers.tag(t, history[t.id], ctx) for t in found]


def _tag_named(raw: str) -> Tag | None:
    """The tag a path names (`python`, `Python`, `#python`), checked before any query."""
    raw = raw.removeprefix("#")
    name = hashtag_name(raw) if len(raw) <= HASHTAG_MAX_LENGTH else None
    return tags.tag_named(name) if name is not None else None


def timeline_tag(request: HttpRequest, hashtag: str) -> HttpResponse:
    """The posts and replies carrying a tag, as its page shows them, newest first; an unknown
    tag has none (as on Mastodon). `remote` and `only_media` answer empty; `any[]`, `all[]`,
    `none[]` are not supported (docs/api.md)."""
    params = list_params(request)
    options = query(request)
    if options.flag("remote") or options.flag("only_media"):
        return ok([])
    found = _tag_named(hashtag)
    if found is None:
        return ok([])
    viewer = request.user
    posts = timeline_posts(
        params,
        newer=lambda: tags.tag_posts_query(found, viewer),
        older=lambda cursor: tags.tag_posts(found, viewer, cursor),
    )
    return posts_page(request, posts, params.limit)


def tag_detail(request: HttpRequest, hashtag: str) -> HttpResponse:
    found = _tag_named(hashtag)
    if found is None:
        raise NotFound(NO_SUCH_TAG)
    ctx = Context.of(request)
    return ok(serializers.tag(found, tags.tags_history([found.id])[found.id], ctx))


def trends_tags(request: HttpRequest) -> HttpResponse:
    """The trending list as the periodic job last stored it (tags.services.trending_refresh),
    `limit` (default 10, at most 20) from `offset`."""
    limit = min(_limit(request, TRENDS_DEFAULT_LIMIT), TRENDS_MAX_LIMIT)
    offset = _offset(request)
    found = [trend.tag for trend in tags.trending()[offset : offset + limit]]
    return ok(_tags(found, Context.of(request)))
