from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "microblog.api"
    label = "api"
