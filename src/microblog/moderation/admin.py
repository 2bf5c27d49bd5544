"""Read-only admin views of moderation records: decisions go through the review queue
(/staff/moderation), which keeps the audit log; blocks and mutes belong to their users."""

from django.contrib import admin

from microblog.core.admin import ReadOnlyAdmin
from microblog.moderation.models import ModerationAction, Report


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    list_display = ("id", "post_id", "reporter", "reason", "created_at", "resolution")
    list_filter = ("reason", "resolution")
    list_select_related = ("reporter",)
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(ModerationAction)
class ModerationActionAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "actor_username", "action", "post_id", "reports_closed")
    list_filter = ("action",)
    ordering = ("-id",)
    show_full_result_count = False
