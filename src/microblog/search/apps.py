from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "microblog.search"
    label = "search"
