from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from microblog.posts.models import Post
from microblog.posts.services import post_delete


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "author",
        "short_content",
        "parent_id",
        "replies_count",
        "is_hidden",
        "open_reports",
        "created_at",
    )
    list_select_related = ("author",)
    search_fields = ("content",)
    raw_id_fields = ("author", "parent")
    # Moderation state changes only through the review queue (/staff/moderation), which logs it.
    readonly_fields = ("id", "replies_count", "created_at", "is_hidden", "open_reports")
    ordering = ("-id",)
    show_full_result_count = False

    @admin.display(description="content")
    def short_content(self, obj: Post) -> str:
        return obj.content if len(obj.content) <= 60 else obj.content[:57] + "..."

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Posts are written through post_create (counters, feeds); the admin edits and deletes.
        return False

    def delete_model(self, request: HttpRequest, obj: Post) -> None:
        post_delete(post=obj, actor=request.user)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Post]) -> None:
        for post in queryset:
            post_delete(post=post, actor=request.user)  # type: ignore[arg-type]
