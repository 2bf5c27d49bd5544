"""Read-only admin views of hashtags: tags and their posts are written at post creation
(posts.services.post_create), the trending list by its periodic job; a change here would
bypass both. (PostTag has a composite primary key, which the admin cannot show; a tag's posts
are its page, /tags/<name>.)"""

from django.contrib import admin

from microblog.core.admin import ReadOnlyAdmin
from microblog.tags.models import Tag, Trend


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
