from django.utils import timezone

from microblog.accounts.models import User
from microblog.timelines import fanout

BATCH = 1000


def trim_active_feeds() -> int:
    """Trims the feeds of active readers (only they receive new entries). Returns rows removed."""
    removed = 0
    after = 0
    cutoff = fanout.active_cutoff(timezone.now())
    while True:
        ids = list(
            User.objects.filter(id__gt=after, last_seen_at__gte=cutoff)
            .order_by("id")
            .values_list("id", flat=True)[:BATCH]
        )
        if not ids:
            return removed
        removed += fanout.trim(ids)
        after = ids[-1]
