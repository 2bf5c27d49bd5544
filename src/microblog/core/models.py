from django.db import models


class ScheduledJob(models.Model):
    """When a periodic maintenance job is next due. Workers race to move `next_run_at` forward
    with one conditional UPDATE; the one that wins enqueues the job, so several workers (on
    several machines) enqueue each run once."""

    name = models.CharField(max_length=64, primary_key=True)
    next_run_at = models.DateTimeField()
    last_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
