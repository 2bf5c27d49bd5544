from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from microblog.accounts.models import User
from microblog.accounts.services import user_erase


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = (
        "username",
        "is_staff",
        "is_active",
        "followers_count",
        "following_count",
        "posts_count",
        "date_joined",
        "last_seen_at",
    )
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("username",)
    ordering = ("-id",)
    show_full_result_count = False  # COUNT(*) over a million users on every page is not free
    readonly_fields = (
        "followers_count",
        "following_count",
        "posts_count",
        "last_seen_at",
        "date_joined",
        "last_login",
    )
    fieldsets = (
        (None, {"fields": ("username", "password", "description")}),
        ("Counters", {"fields": ("followers_count", "following_count", "posts_count")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined", "last_seen_at")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "password1", "password2")}),
    )

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        user_erase(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_erase(user=user)
