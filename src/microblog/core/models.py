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


class RateLimitCounter(models.Model):
    """One fixed-window counter of the rate limiter (microblog.ratelimit): how many times `key` (a
    rule and a subject, e.g. "posts:u:42") was counted in the window starting at `window_start`
    (Unix seconds). Each check is one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING count`;
    rows past `expires_at` are pruned by the `ratelimit_prune` maintenance job."""

    pk = models.CompositePrimaryKey("key", "window_start")
    key = models.CharField(max_length=200)
    window_start = models.BigIntegerField()
    count = models.IntegerField(default=0)
    expires_at = models.BigIntegerField(db_index=True)

    def __str__(self) -> str:
        return f"{self.key}@{self.window_start}: {self.count}"
