"""The client API's routes, each with the access it needs (api.auth.Access): the token's user,
and the granular scope a token must allow. `ROUTES` also feeds the OpenAPI document
(api/openapi.py), and a test checks that the two agree."""

from typing import Any

from django.urls import URLPattern, path, re_path

from microblog.api import (
    interaction_views,
    notification_views,
    oauth_views,
    openapi,
    search_views,
    views,
)
from microblog.api.auth import PUBLIC, Access, api_view
from microblog.core.ids import ID_PATTERN


def _id(name: str) -> str:
    return f"(?P<{name}>{ID_PATTERN})"


def route(pattern: str, view: Any, name: str) -> URLPattern:
    """An API address, with or without a trailing slash (Mastodon answers both, and clients
    use both: Mastodon.py asks for /api/v1/instance/)."""
    return re_path(rf"^{pattern}/?$", view, name=name)


def read(scope: str, *, user: bool = True) -> Access:
    """A read endpoint: `user=False` ones also answer without a token (public data)."""
    return Access(scope=f"read:{scope}", user=user, token=user)


def write(scope: str) -> Access:
    return Access(scope=f"write:{scope}")


APP_TOKEN = Access(scope=None, user=False, token=True)
# Start-up endpoints answered empty: any token, or none.
EMPTY = PUBLIC

ACCOUNT = _id("account_id")
STATUS = _id("status_id")
NOTIFICATION = _id("notification_id")
# A tag as written in a path (checked by search_views before any query): any text up to a slash.
HASHTAG = "(?P<hashtag>[^/]{1,200})"

api_urlpatterns = [
    # apps and instance
    route("api/v1/apps", api_view(POST=(PUBLIC, oauth_views.app_create)), name="api_apps"),
    route(
        "api/v1/apps/verify_credentials",
        api_view(GET=(APP_TOKEN, oauth_views.app_verify)),
        name="api_apps_verify",
    ),
    route("api/v1/instance", api_view(GET=(PUBLIC, views.instance_v1)), name="api_instance_v1"),
    route("api/v2/instance", api_view(GET=(PUBLIC, views.instance_v2)), name="api_instance_v2"),
    # accounts
    route(
        "api/v1/accounts/verify_credentials",
        api_view(GET=(read("accounts"), views.verify_credentials)),
        name="api_verify_credentials",
    ),
    route(
        "api/v1/accounts/update_credentials",
        api_view(PATCH=(write("accounts"), views.update_credentials)),
        name="api_update_credentials",
    ),
    route(
        "api/v1/accounts/lookup",
        api_view(GET=(read("accounts", user=False), views.account_lookup)),
        name="api_account_lookup",
    ),
    route(
        "api/v1/accounts/relationships",
        api_view(GET=(read("follows"), views.relationships)),
        name="api_relationships",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}",
        api_view(GET=(read("accounts", user=False), views.account_detail)),
        name="api_account",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/statuses",
        api_view(GET=(read("statuses", user=False), views.account_statuses)),
        name="api_account_statuses",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/followers",
        api_view(GET=(read("accounts", user=False), views.account_followers)),
        name="api_account_followers",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/following",
        api_view(GET=(read("accounts", user=False), views.account_following)),
        name="api_account_following",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/follow",
        api_view(POST=(write("follows"), views.account_follow)),
        name="api_account_follow",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/unfollow",
        api_view(POST=(write("follows"), views.account_unfollow)),
        name="api_account_unfollow",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/block",
        api_view(POST=(write("blocks"), views.account_block)),
        name="api_account_block",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/unblock",
        api_view(POST=(write("blocks"), views.account_unblock)),
        name="api_account_unblock",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/mute",
        api_view(POST=(write("mutes"), views.account_mute)),
        name="api_account_mute",
    ),
    route(
        f"api/v1/accounts/{ACCOUNT}/unmute",
        api_view(POST=(write("mutes"), views.account_unmute)),
        name="api_account_unmute",
    ),
    route("api/v1/blocks", api_view(GET=(read("blocks"), views.blocks)), name="api_blocks"),
    route("api/v1/mutes", api_view(GET=(read("mutes"), views.mutes)), name="api_mutes"),
    # statuses
    route(
        "api/v1/statuses",
        api_view(POST=(write("statuses"), views.status_create_view)),
        name="api_statuses",
    ),
    route(
        f"api/v1/statuses/{STATUS}",
        api_view(
            GET=(read("statuses", user=False), interaction_views.status_detail),
            DELETE=(write("statuses"), interaction_views.status_delete),
        ),
        name="api_status",
    ),
    route(
        f"api/v1/statuses/{STATUS}/context",
        api_view(GET=(read("statuses", user=False), views.status_context)),
        name="api_status_context",
    ),
    # likes and reposts (Mastodon's favourites and reblogs): api/interaction_views.py
    route(
        f"api/v1/statuses/{STATUS}/favourite",
        api_view(POST=(write("favourites"), interaction_views.status_favourite)),
        name="api_status_favourite",
    ),
    route(
        f"api/v1/statuses/{STATUS}/unfavourite",
        api_view(POST=(write("favourites"), interaction_views.status_unfavourite)),
        name="api_status_unfavourite",
    ),
    route(
        f"api/v1/statuses/{STATUS}/reblog",
        api_view(POST=(write("statuses"), interaction_views.status_reblog)),
        name="api_status_reblog",
    ),
    route(
        f"api/v1/statuses/{STATUS}/unreblog",
        api_view(POST=(write("statuses"), interaction_views.status_unreblog)),
        name="api_status_unreblog",
    ),
    route(
        f"api/v1/statuses/{STATUS}/favourited_by",
        api_view(GET=(read("statuses", user=False), interaction_views.status_favourited_by)),
        name="api_status_favourited_by",
    ),
    route(
        f"api/v1/statuses/{STATUS}/reblogged_by",
        api_view(GET=(read("statuses", user=False), interaction_views.status_reblogged_by)),
        name="api_status_reblogged_by",
    ),
    route(
        "api/v1/favourites",
        api_view(GET=(read("favourites"), interaction_views.favourites)),
        name="api_favourites",
    ),
    # timelines
    route(
        "api/v1/timelines/home",
        api_view(GET=(read("statuses"), views.timeline_home)),
        name="api_timeline_home",
    ),
    route(
        "api/v1/timelines/public",
        api_view(GET=(read("statuses", user=False), views.timeline_public)),
        name="api_timeline_public",
    ),
    # notifications, search and hashtags (api/notification_views.py, api/search_views.py)
    route(
        "api/v1/notifications",
        api_view(GET=(read("notifications"), notification_views.notifications)),
        name="api_notifications",
    ),
    route(
        "api/v1/notifications/clear",
        api_view(POST=(write("notifications"), notification_views.notifications_clear)),
        name="api_notifications_clear",
    ),
    route(
        "api/v1/notifications/unread_count",
        api_view(GET=(read("notifications"), notification_views.unread_count)),
        name="api_notifications_unread_count",
    ),
    route(
        f"api/v1/notifications/{NOTIFICATION}",
        api_view(GET=(read("notifications"), notification_views.notification_detail)),
        name="api_notification",
    ),
    route(
        f"api/v1/notifications/{NOTIFICATION}/dismiss",
        api_view(POST=(write("notifications"), notification_views.notification_dismiss)),
        name="api_notification_dismiss",
    ),
    route(
        "api/v2/search",
        api_view(GET=(read("search", user=False), search_views.search_v2)),
        name="api_search",
    ),
    route(
        "api/v1/accounts/search",
        api_view(GET=(read("accounts", user=False), search_views.accounts_search)),
        name="api_accounts_search",
    ),
    route(
        f"api/v1/timelines/tag/{HASHTAG}",
        api_view(GET=(read("statuses", user=False), search_views.timeline_tag)),
        name="api_timeline_tag",
    ),
    route(
        f"api/v1/tags/{HASHTAG}",
        api_view(GET=(read("statuses", user=False), search_views.tag_detail)),
        name="api_tag",
    ),
    route(
        "api/v1/trends/tags",
        api_view(GET=(EMPTY, search_views.trends_tags)),
        name="api_trends_tags",
    ),
    # reports
    route(
        "api/v1/reports",
        api_view(POST=(write("reports"), views.report_create)),
        name="api_reports",
    ),
    # what apps ask for on start-up: documented empty values
    route(
        "api/v1/custom_emojis",
        api_view(GET=(EMPTY, views.empty_list)),
        name="api_custom_emojis",
    ),
    route("api/v1/filters", api_view(GET=(read("filters"), views.empty_list)), name="api_filters"),
    route(
        "api/v2/filters", api_view(GET=(read("filters"), views.empty_list)), name="api_filters_v2"
    ),
    route("api/v1/lists", api_view(GET=(read("lists"), views.empty_list)), name="api_lists"),
    route(
        "api/v1/markers", api_view(GET=(read("statuses"), views.empty_object)), name="api_markers"
    ),
    route(
        "api/v1/preferences",
        api_view(GET=(read("accounts"), views.preferences)),
        name="api_preferences",
    ),
    route(
        "api/v1/announcements",
        api_view(GET=(EMPTY, views.empty_list)),
        name="api_announcements",
    ),
    # Mastodon's older name of trends/tags.
    route("api/v1/trends", api_view(GET=(EMPTY, search_views.trends_tags)), name="api_trends"),
    route(
        "api/v1/trends/statuses",
        api_view(GET=(EMPTY, views.empty_list)),
        name="api_trends_statuses",
    ),
    route("api/v1/trends/links", api_view(GET=(EMPTY, views.empty_list)), name="api_trends_links"),
    route(
        "api/v1/follow_requests",
        api_view(GET=(read("follows"), views.empty_list)),
        name="api_follow_requests",
    ),
    route(
        "api/v1/followed_tags",
        api_view(GET=(read("follows"), views.empty_list)),
        name="api_followed_tags",
    ),
    route(
        "api/v1/conversations",
        api_view(GET=(read("statuses"), views.empty_list)),
        name="api_conversations",
    ),
    route(
        "api/v1/bookmarks",
        api_view(GET=(read("bookmarks"), views.empty_list)),
        name="api_bookmarks",
    ),
]

# OAuth and discovery: not under /api/ (no bearer token), answered by oauth_views.
oauth_urlpatterns = [
    path("oauth/authorize", oauth_views.authorize, name="oauth_authorize"),
    path("oauth/token", oauth_views.token, name="oauth_token"),
    path("oauth/revoke", oauth_views.revoke, name="oauth_revoke"),
    path(
        ".well-known/oauth-authorization-server",
        oauth_views.authorization_server_metadata,
        name="oauth_metadata",
    ),
    path(".well-known/nodeinfo", api_view(GET=(PUBLIC, views.nodeinfo_links)), name="nodeinfo"),
    path("nodeinfo/2.0", api_view(GET=(PUBLIC, views.nodeinfo)), name="nodeinfo_20"),
    path("settings/apps", oauth_views.authorized_apps, name="authorized_apps"),
    path(
        "settings/apps/<str:app_id>/revoke",
        oauth_views.authorized_app_revoke,
        name="authorized_app_revoke",
    ),
]

urlpatterns = [
    *api_urlpatterns,
    *oauth_urlpatterns,
    route("api/openapi.json", api_view(GET=(PUBLIC, openapi.openapi_view)), name="api_openapi"),
]
