from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from microblog.core.admin import ReadOnlyAdmin
from microblog.notifications.models import Notification, PendingNotification


class NotificationsAdmin(ReadOnlyAdmin):
    """Read-only: notifications are written by notifications.services only (grouping, the
    pending rows and their jobs must agree). Deleting stays allowed: nothing is counted from
    these rows (unread counts are computed when read), and the admin's deletion of an account
    or a post lists its notifications among what goes with it."""

    show_full_result_count = False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)


@admin.register(Notification)
class NotificationAdmin(NotificationsAdmin):
    list_display = ("id", "recipient", "kind", "actor", "count", "post_id", "updated_at")
    list_select_related = ("recipient", "actor")
    list_filter = ("kind",)
    ordering = ("-id",)


@admin.register(PendingNotification)
class PendingNotificationAdmin(NotificationsAdmin):
    list_display = ("id", "recipient", "kind", "group_key", "actor", "count")
    list_select_related = ("recipient", "actor")
    ordering = ("-id",)
