"""Read-only admin views of hashtags: tags and their posts are written at post creation
(posts.services.post_create), the trending list by its periodic job; a change here would
bypass both. (PostTag has a composite primary key, which the admin cannot show; a tag's posts
are its page, /tags/<name>.)"""

from django.contrib import admin
from django.http import HttpRequest

from microblog.tags.models import Tag, Trend


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Tag)
class TagAdmin(ReadOnlyAdmin):
    list_display = ("id", "name")
    search_fields = ("name__startswith",)
    ordering = ("name",)
    show_full_result_count = False


@admin.register(Trend)
class TrendAdmin(ReadOnlyAdmin):
    list_display = ("rank", "tag", "authors", "posts", "computed_at")
    list_select_related = ("tag",)
    ordering = ("rank",)
