"""The client API's notifications (docs/api.md, "Notifications"): one Mastodon Notification per
group row of ours (notifications.models), read through notifications.selectors (which asks
timelines.visibility what may be shown) and removed through notifications.services."""

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

from microblog.api import serializers
from microblog.api.auth import token_user
from microblog.api.pagination import link_header, list_params
from microblog.api.params import query
from microblog.api.serializers import NOTIFICATION_TYPES, Context
from microblog.api.views import ok
from microblog.core.errors import NotFound
from microblog.notifications import selectors, services
from microblog.notifications.models import Kind

NO_SUCH_NOTIFICATION = "Record not found"

# Mastodon's types onto our kinds ("mention" is both our replies and our mentions).
KINDS_OF_TYPE: dict[str, frozenset[str]] = {
    mastodon_type: frozenset(kind for kind, t in NOTIFICATION_TYPES.items() if t == mastodon_type)
    for mastodon_type in set(NOTIFICATION_TYPES.values())
}
ALL_KINDS = frozenset(Kind.values)


@dataclass(frozen=True, slots=True)
class _Cursor:
    """A notification's place in the list for the Link header: its `sort_id`."""

    id: int


def _kinds(request: HttpRequest) -> frozenset[str] | None:
    """`types[]` (only these) and `exclude_types[]` as our kinds; None for all. Types we never
    send (poll, status, update, admin.*...) match nothing, as on Mastodon."""
    options = query(request)
    kinds = ALL_KINDS
    if options.given("types"):
        kinds = frozenset().union(*(KINDS_OF_TYPE.get(t, ()) for t in options.texts("types")))
    if options.given("exclude_types"):
        excluded = frozenset().union(
            *(KINDS_OF_TYPE.get(t, ()) for t in options.texts("exclude_types"))
        )
        kinds = kinds - excluded
    return None if kinds == ALL_KINDS else kinds


def notifications(request: HttpRequest) -> HttpResponse:
    user = token_user(request)
    params = list_params(request)
    kinds = _kinds(request)
    rows = (
        selectors.notifications_list(
            user_id=user.id,
            kinds=kinds,
            actor_id=query(request).id("account_id"),
            before=params.max_id,
            after=params.newer,
            closest_first=params.min_id is not None,
            limit=params.limit,
        )
        if kinds is None or kinds
        else []
    )
    response = ok(serializers.notifications(rows, Context.of(request)))
    cursors = [_Cursor(row.sort_id) for row in rows]
    return link_header(
        request, response, cursors, limit=params.limit, full=len(rows) >= params.limit
    )


def notification_detail(request: HttpRequest, notification_id: int) -> HttpResponse:
    row = selectors.notification_shown(user_id=token_user(request).id, sort_id=notification_id)
    if row is None:
        raise NotFound(NO_SUCH_NOTIFICATION)
    return ok(serializers.notifications([row], Context.of(request))[0])


def notification_dismiss(request: HttpRequest, notification_id: int) -> HttpResponse:
    if not services.notification_dismiss(user_id=token_user(request).id, sort_id=notification_id):
        raise NotFound(NO_SUCH_NOTIFICATION)
    return ok({})


def notifications_clear(request: HttpRequest) -> HttpResponse:
    services.notifications_clear(user_id=token_user(request).id)
    return ok({})


def unread_count(request: HttpRequest) -> HttpResponse:
    """Unread as the top bar counts them (up to notifications.selectors.UNREAD_COUNTED_MAX):
    above the marker that the notifications page moves."""
    return ok({"count": selectors.unread_count_of(token_user(request).id)})
