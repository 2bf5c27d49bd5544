from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "microblog.core"
    label = "core"
