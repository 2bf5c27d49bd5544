from django.apps import AppConfig


class InteractionsConfig(AppConfig):
    name = "microblog.interactions"
    default_auto_field = "django.db.models.BigAutoField"
