from django.contrib import admin

from microblog.core.admin import ReadOnlyAdmin
from microblog.interactions.models import Like, Repost


class ReadOnly(ReadOnlyAdmin):
    """Likes and reposts are read here, never written: a row added, changed or removed outside
    interactions.services would leave the post's counter (and, for reposts, the feeds) wrong."""

    list_display = ("id", "user", "post_id", "created_at")
    list_select_related = ("user",)
    readonly_fields = ("id", "user", "post", "created_at")
    ordering = ("-id",)
    show_full_result_count = False
    raw_id_fields = ("user", "post")


admin.register(Like)(ReadOnly)
admin.register(Repost)(type("RepostAdmin", (ReadOnly,), {}))
