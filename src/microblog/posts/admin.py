from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from microblog.accounts.models import User
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
        "likes_count",
        "reposts_count",
        "is_hidden",
        "open_reports",
        "created_at",
    )
    list_select_related = ("author",)
    search_fields = ("content",)
    # Nothing here is editable: a post's author, parent and text are what its counters, feed
    # entries, thread and moderation log were computed from (changing them would make those
    # drift), and moderation state changes only through the review queue (/staff/moderation),
    # which logs it. Staff read posts here and delete them (through post_delete).
    readonly_fields = (
        "id",
        "author",
        "parent",
        "content",
        "replies_count",
        "likes_count",
        "reposts_count",
        "created_at",
        "is_hidden",
        "is_deleted",
        "open_reports",
        "mention_names",
    )
    ordering = ("-id",)
    show_full_result_count = False

    @admin.display(description="content")
    def short_content(self, obj: Post) -> str:
        return obj.content if len(obj.content) <= 60 else obj.content[:57] + "..."

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Posts are written through post_create (counters, feeds); the admin reads and deletes.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Post | None = None) -> bool:
        # Read-only (see readonly_fields); Django then shows the page without a Save button.
        return False

    def delete_model(self, request: HttpRequest, obj: Post) -> None:
        post_delete(post=obj, actor=_staff(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Post]) -> None:
        for post in queryset:
            post_delete(post=post, actor=_staff(request))


def _staff(request: HttpRequest) -> User:
    # The admin lets only signed-in staff this far.
    assert isinstance(request.user, User)
    return request.user
