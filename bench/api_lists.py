"""Wall time and queries per request of the client API's notifications, search and tag
endpoints (issue 17), in-process through Django's test client (the whole middleware stack, no
HTTP server), on the seeded database in DATABASE_URL, beside `GET /api/v1/timelines/public`.

    DATABASE_URL=postgres://... DEBUG=0 RATELIMIT_ENABLED=0 SECRET_KEY=... \
        ALLOWED_HOSTS=127.0.0.1 .venv/bin/python bench/api_lists.py [requests]

It reads as the user with the most notification rows, through a token it creates (one
AccessToken row, expiring in a day), and computes the trending list if none is stored.
"""

import os
import secrets
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
django.setup()

from django.db import connections  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from oauth2_provider.models import AccessToken  # noqa: E402

from microblog.accounts.models import User  # noqa: E402
from microblog.api.models import ClientApp  # noqa: E402
from microblog.api.services import app_register  # noqa: E402
from microblog.notifications.models import Notification  # noqa: E402
from microblog.tags.models import Tag, Trend  # noqa: E402
from microblog.tags.services import trending_refresh  # noqa: E402

SCOPES = "read write follow"


def main(requests: int) -> None:
    top = Notification.objects.values("recipient_id").annotate(n=Count("*")).order_by("-n")[0]
    user = User.objects.get(id=top["recipient_id"])
    app = ClientApp.objects.filter(name="bench api_lists").first()
    if app is None:
        app, _secret = app_register(
            name="bench api_lists", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"], scopes=SCOPES
        )
    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=user,
        application=app,
        token=token,
        scope=SCOPES,
        expires=timezone.now() + timedelta(days=1),
    )
    if not Trend.objects.exists():
        trending_refresh()
    tag = Tag.objects.annotate(n=Count("post_links")).order_by("-n")[0]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
    print(f"reader {user.username}: {top['n']} notification rows; #{tag.name}: {tag.n} posts")
    cases = [
        ("notifications", "/api/v1/notifications", {}),
        ("notifications limit=40", "/api/v1/notifications", {"limit": 40}),
        ("notifications types[]=mention", "/api/v1/notifications", {"types[]": "mention"}),
        ("notifications/unread_count", "/api/v1/notifications/unread_count", {}),
        ("v2/search q=the", "/api/v2/search", {"q": "the"}),
        ("v2/search q=coffee morning", "/api/v2/search", {"q": "coffee morning"}),
        (
            "v2/search statuses offset=200",
            "/api/v2/search",
            {"q": "the", "type": "statuses", "offset": 200},
        ),
        (f"timelines/tag/{tag.name}", f"/api/v1/timelines/tag/{tag.name}", {}),
        (f"tags/{tag.name}", f"/api/v1/tags/{tag.name}", {}),
        ("trends/tags", "/api/v1/trends/tags", {}),
        ("timelines/public (reference)", "/api/v1/timelines/public", {}),
    ]
    print(f"{'endpoint':36} {'status':>6} {'queries':>7} {'median ms':>9} {'p99 ms':>7}")
    for name, path, params in cases:
        with ExitStack() as stack:
            captured = [
                stack.enter_context(CaptureQueriesContext(connections[alias]))
                for alias in connections
            ]
            first = client.get(path, params, secure=True)
        queries = sum(len(c.captured_queries) for c in captured)
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(path, params, secure=True)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == first.status_code
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"{name:36} {first.status_code:>6} {queries:>7} "
            f"{statistics.median(times):>9.1f} {p99:>7.1f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
