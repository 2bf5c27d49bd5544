from django.apps import AppConfig


class SeedingConfig(AppConfig):
    name = "microblog.seeding"
    label = "seeding"
