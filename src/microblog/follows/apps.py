from django.apps import AppConfig


class FollowsConfig(AppConfig):
    name = "microblog.follows"
    label = "follows"
