"""Every background job, behind one module so the job engine can change without touching callers.

Jobs run on `django.tasks` with the django-tasks-db backend (`microblog worker`). The engine has no
retries, so `job()` adds them: a failed attempt is recorded as failed and, until JOB_MAX_ATTEMPTS,
enqueued again after an exponential backoff. Every job is idempotent, so a retry, or a second run
after a crash, changes nothing that was already done. Callers enqueue with `enqueue_after_commit`,
so a rolled-back write never starts a job.
"""

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.tasks import Task, task
from django.utils import timezone

logger = logging.getLogger("microblog.jobs")

# Queues: fan-out has its own queue and the highest priority, so it never waits behind
# maintenance; workers can also be started per queue (`microblog worker --queues fanout`).
FANOUT = "fanout"
DEFAULT = "default"
MAINTENANCE = "maintenance"
PRIORITY = {FANOUT: 50, DEFAULT: 0, MAINTENANCE: -50}


def retry_delay(attempt: int) -> timedelta:
    return timedelta(seconds=settings.JOB_RETRY_BASE_SECONDS * (2 ** (attempt - 1)))


def job(queue: str) -> Callable[[Callable[..., Any]], Task[..., Any]]:
    def decorate(function: Callable[..., Any]) -> Task[..., Any]:
        @functools.wraps(function)
        def run(*args: Any, attempt: int = 1, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception:
                if attempt < settings.JOB_MAX_ATTEMPTS:
                    delay = retry_delay(attempt)
                    logger.warning(
                        "job %s attempt %d failed; retrying in %ss",
                        function.__name__,
                        attempt,
                        delay.total_seconds(),
                    )
                    runner.using(run_after=timezone.now() + delay).enqueue(
                        *args, attempt=attempt + 1, **kwargs
                    )
                else:
                    logger.error("job %s gave up after %d attempts", function.__name__, attempt)
                raise

        runner: Task[..., Any] = task(queue_name=queue, priority=PRIORITY[queue])(run)
        return runner

    return decorate


def failed_for_good() -> Q:
    """Failed job rows whose job was not retried: the last attempt (every earlier failed
    attempt also stays as a FAILED row, with a retry queued behind it)."""
    final = Q(args_kwargs__kwargs__attempt__gte=settings.JOB_MAX_ATTEMPTS)
    if settings.JOB_MAX_ATTEMPTS <= 1:
        final |= Q(args_kwargs__kwargs__attempt__isnull=True)  # a first attempt is the last
    return final


def enqueue_after_commit(job_task: Task[..., Any], *args: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: job_task.enqueue(*args, **kwargs))


# --- Fan-out -----------------------------------------------------------------------------


@job(FANOUT)
def fan_out_post(post_id: int) -> int:
    from microblog.core import metrics
    from microblog.timelines import fanout

    inserted = fanout.fan_out_post(post_id)
    # Commit to the last feed entry written: the post's id carries its creation time.
    metrics.observe_fanout_lag(post_id)
    return inserted


@job(FANOUT)
def backfill_author(author_id: int) -> int:
    from microblog.timelines import fanout

    return fanout.backfill_author(author_id)


@job(DEFAULT)
def rebuild_feed(user_id: int) -> None:
    from microblog.accounts.models import User
    from microblog.timelines import fanout

    user = User.objects.filter(id=user_id).first()
    if user is not None:
        fanout.rebuild(user)


# --- Maintenance (scheduled by `microblog worker`) ---------------------------------------


@job(MAINTENANCE)
def feeds_trim() -> int:
    from microblog.timelines import maintenance

    return maintenance.trim_active_feeds()


@job(MAINTENANCE)
def jobs_prune() -> int:
    from microblog.core import maintenance

    return maintenance.prune_finished_jobs()


@job(MAINTENANCE)
def counters_check() -> dict[str, int]:
    from microblog.core.counters import reconcile

    return reconcile(fix=True).drift_by_counter()


@job(MAINTENANCE)
def ratelimit_prune() -> int:
    from microblog.core import ratelimit

    return ratelimit.prune()


SCHEDULED: dict[str, Task[..., Any]] = {
    "feeds_trim": feeds_trim,
    "jobs_prune": jobs_prune,
    "counters_check": counters_check,
    "ratelimit_prune": ratelimit_prune,
}
