from django.apps import AppConfig


class TimelinesConfig(AppConfig):
    name = "microblog.timelines"
    label = "timelines"
