from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from microblog.notifications.models import Notification, PendingNotification


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only: notifications are written by notifications.services only (grouping, the
    pending rows and their jobs must agree). Deleting stays allowed: nothing is counted from
    these rows (unread counts are computed when read), and the admin's deletion of an account
    or a post lists its notifications among what goes with it."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("id", "recipient", "kind", "actor", "count", "post_id", "updated_at")
    list_select_related = ("recipient", "actor")
    list_filter = ("kind",)
    ordering = ("-id",)


@admin.register(PendingNotification)
class PendingNotificationAdmin(ReadOnlyAdmin):
    list_display = ("id", "recipient", "kind", "group_key", "actor", "count")
    list_select_related = ("recipient", "actor")
    ordering = ("-id",)
