from datetime import timedelta

from django.conf import settings
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult


def prune_finished_jobs() -> int:
    """Deletes successful jobs older than JOBS_KEEP_FINISHED_DAYS; failed ones stay for review."""
    cutoff = timezone.now() - timedelta(days=settings.JOBS_KEEP_FINISHED_DAYS)
    deleted, _ = DBTaskResult.objects.filter(
        status=TaskResultStatus.SUCCESSFUL, finished_at__lt=cutoff
    ).delete()
    return deleted
