from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "microblog.ops"
    label = "ops"
