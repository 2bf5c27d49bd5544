from django.contrib import admin
from django.urls import path, register_converter
from django.views.generic import RedirectView

from microblog.accounts import views as accounts
from microblog.api import urls as api_urls
from microblog.core import views as core
from microblog.core.ids import ID_PATTERN, parse_id
from microblog.interactions import views as interactions
from microblog.moderation import views as moderation
from microblog.notifications import views as notifications
from microblog.ops import dashboard, health, metrics
from microblog.posts import views as posts
from microblog.search import views as search
from microblog.tags import views as tags
from microblog.timelines import views as timelines


class PostIdConverter:
    """Post ids are positive 64-bit integers; longer digit strings are a 404, not an overflow."""

    regex = ID_PATTERN

    def to_python(self, value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise ValueError(value)
        return number

    def to_url(self, value: int) -> str:
        return str(value)


class UsernameConverter:
    regex = "[A-Za-z0-9_]{1,50}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(PostIdConverter, "post_id")
register_converter(UsernameConverter, "username")

USERNAME = "<username:username>"

urlpatterns = [
    path("", timelines.home, name="home"),
    path("following", timelines.following, name="following"),
    path("all", timelines.everyone, name="all"),
    path("notifications", notifications.notifications, name="notifications"),
    path("signup", accounts.signup, name="signup"),
    path("login", accounts.login_view, name="login"),
    path("logout", accounts.logout_view, name="logout"),
    path("settings", accounts.settings_view, name="settings"),
    path("settings/password", accounts.settings_password, name="settings_password"),
    path("settings/delete", accounts.settings_delete, name="settings_delete"),
    path("posts", posts.create, name="post_create"),
    path("posts/<post_id:post_id>", posts.detail, name="post_detail"),
    path("posts/<post_id:post_id>/delete", posts.delete, name="post_delete"),
    path("posts/<post_id:post_id>/report", moderation.report, name="post_report"),
    path("tags", tags.trending, name="trending"),
    path("tags/<str:name>", tags.tag, name="tag"),
    path("search", search.search, name="search"),
    path("posts/<post_id:post_id>/like", interactions.like, name="post_like"),
    path("posts/<post_id:post_id>/unlike", interactions.unlike, name="post_unlike"),
    path("posts/<post_id:post_id>/repost", interactions.repost, name="post_repost"),
    path("posts/<post_id:post_id>/unrepost", interactions.unrepost, name="post_unrepost"),
    path("posts/<post_id:post_id>/likes", interactions.liked_by, name="post_liked_by"),
    path(f"@{USERNAME}", accounts.profile, name="profile"),
    path(f"@{USERNAME}/followers", accounts.followers, name="followers"),
    path(f"@{USERNAME}/following", accounts.following, name="following_list"),
    path(f"@{USERNAME}/likes", interactions.likes, name="likes"),
    path(f"@{USERNAME}/follow", accounts.follow, name="follow"),
    path(f"@{USERNAME}/unfollow", accounts.unfollow, name="unfollow"),
    path(f"@{USERNAME}/block", moderation.block, name="block"),
    path(f"@{USERNAME}/unblock", moderation.unblock, name="unblock"),
    path(f"@{USERNAME}/mute", moderation.mute, name="mute"),
    path(f"@{USERNAME}/unmute", moderation.unmute, name="unmute"),
    path("up", core.up, name="up"),
    path("health", health.health, name="health"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("staff/jobs", dashboard.jobs, name="staff_jobs"),
    path("staff/jobs/<uuid:job_id>/retry", dashboard.retry, name="staff_job_retry"),
    path("staff/moderation", moderation.queue, name="staff_moderation"),
    path("staff/moderation/hidden", moderation.hidden, name="staff_moderation_hidden"),
    path("staff/moderation/log", moderation.log, name="staff_moderation_log"),
    path(
        "staff/moderation/posts/<post_id:post_id>/<slug:action>",
        moderation.review,
        name="staff_moderation_review",
    ),
    # The admin's log-in and password change are the app's (limited like /login; the current
    # password re-check limited as in settings): admin.site's own views are not reachable.
    path("admin/login/", accounts.admin_login, name="admin_login"),
    path("admin/password_change/", RedirectView.as_view(url="/settings"), name="admin_password"),
    path("admin/", admin.site.urls),
    # The Mastodon-compatible client API and its OAuth endpoints (microblog.api, docs/api.md).
    *api_urls.urlpatterns,
]

handler400 = core.bad_request
handler403 = core.permission_denied
handler404 = core.page_not_found
handler500 = core.server_error
