"""The app's URLs plus one view that always raises, for the 500-page tests in test_bad_input.py.

Django takes handler500 (and the other handlers) from the active urlconf, so they are re-exported.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from microblog.urls import handler400, handler403, handler404, handler500, urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


def explode(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug, raised on purpose by a test")


urlpatterns = [path("test-only/explode", explode), *urlpatterns]
