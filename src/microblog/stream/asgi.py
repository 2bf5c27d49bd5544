"""The streaming process's ASGI entry point, what `microblog stream` runs:
`granian --interface asgi microblog.stream.asgi:application`."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
django.setup()

from microblog.stream.app import application  # noqa: E402

__all__ = ["application"]
