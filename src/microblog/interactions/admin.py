from django.contrib import admin
from django.http import HttpRequest

from microblog.interactions.models import Like, Repost


class ReadOnly(admin.ModelAdmin):
    """Likes and reposts are read here, never written: a row added, changed or removed outside
    interactions.services would leave the post's counter (and, for reposts, the feeds) wrong."""

    list_display = ("id", "user", "post_id", "created_at")
    list_select_related = ("user",)
    readonly_fields = ("id", "user", "post", "created_at")
    ordering = ("-id",)
    show_full_result_count = False
    raw_id_fields = ("user", "post")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


admin.register(Like)(ReadOnly)
admin.register(Repost)(type("RepostAdmin", (ReadOnly,), {}))
