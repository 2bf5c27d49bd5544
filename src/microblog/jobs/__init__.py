"""Every background job, behind one module so the job engine can change without touching callers.

Jobs run on `django.tasks` with the django-tasks-db backend (`microblog worker`). The engine has no
retries, so `job()` adds them: a failed attempt is recorded as failed and, until JOB_MAX_ATTEMPTS,
enqueued again after an exponential backoff. Every job is idempotent, so a retry, or a second run
after a crash, changes nothing that was already done. A job interrupted because its worker is
stopping (`JobInterrupted`, or SystemExit/KeyboardInterrupt) is not a failure: the worker puts it
back in the queue (ops/management/commands/worker.py). Writes enqueue with `enqueue_with_write`:
the job commits or rolls back with the write.
"""

import functools
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, router, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.tasks import Task, TaskResultStatus, task
from django.utils import timezone
from django_tasks_db import DatabaseBackend
from django_tasks_db.models import DBTaskResult

logger = logging.getLogger("microblog.jobs")

# Queues: fan-out has its own queue and the highest priority, so it never waits behind
# maintenance; workers can also be started per queue (`microblog worker --queues fanout`).
FANOUT = "fanout"
DEFAULT = "default"
MAINTENANCE = "maintenance"
PRIORITY = {FANOUT: 50, DEFAULT: 0, MAINTENANCE: -50}


class JobInterrupted(BaseException):
    """Raised in a job when its worker is stopping; the worker puts the job back in the queue.
    A BaseException, so no `except Exception` in a job mistakes it for a failure to retry."""


# Shutdown arrives as these in a running job; each means "run it again", never "it failed".
INTERRUPTIONS = (JobInterrupted, SystemExit, KeyboardInterrupt)

# Set by the worker when it is asked to stop.
stop_requested = threading.Event()


def checkpoint() -> None:
    """Called by long jobs at points where stopping loses nothing (a fan-out between chunks)."""
    if stop_requested.is_set():
        raise JobInterrupted("the worker is stopping")


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


def failed_without_retry() -> "QuerySet[DBTaskResult]":
    """Failed jobs that nothing will run again: no later run of the same job (a retry, the
    dashboard's "queue again", the safety net's) exists. Whatever the cause: the last attempt, a
    retry that could not be enqueued, a retry row deleted by hand."""
    later_run = DBTaskResult.objects.filter(
        task_path=OuterRef("task_path"),
        args_kwargs__args=OuterRef("args_kwargs__args"),
        enqueued_at__gt=OuterRef("enqueued_at"),
    )
    return DBTaskResult.objects.filter(status=TaskResultStatus.FAILED).exclude(Exists(later_run))


def _queue_shares_database(job_task: Task[..., Any], using: str) -> bool:
    return isinstance(job_task.get_backend(), DatabaseBackend) and (
        router.db_for_write(DBTaskResult) == using
    )


def enqueue_with_write(
    job_task: Task[..., Any], *args: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    """Enqueues a job that a write starts, as part of that write. When the job queue lives in
    the write's database (django-tasks-db), the job row is inserted in the write's transaction:
    it commits or rolls back with the write, no worker sees it before the commit, and no crash
    can fall between the two. With another backend, the job is enqueued after the commit."""
    if _queue_shares_database(job_task, using):
        job_task.enqueue(*args, **kwargs)
    else:
        transaction.on_commit(lambda: job_task.enqueue(*args, **kwargs), using=using)


# --- Fan-out -----------------------------------------------------------------------------


@job(FANOUT)
def fan_out_post(post_id: int) -> int:
    from microblog.ops import metrics
    from microblog.timelines import fanout

    inserted = fanout.fan_out_post(post_id, checkpoint=checkpoint)
    # Commit to the last feed entry written: the post's id carries its creation time.
    metrics.observe_fanout_lag(post_id)
    return inserted


@job(FANOUT)
def fan_out_repost(post_id: int, reposter_id: int) -> int:
    """A repost into the reposter's active followers' feeds (interactions.services)."""
    from microblog.timelines import fanout

    return fanout.fan_out_repost(post_id, reposter_id, checkpoint=checkpoint)


@job(FANOUT)
def backfill_author(author_id: int) -> int:
    from microblog.timelines import fanout

    return fanout.backfill_author(author_id)


@job(DEFAULT)
def rebuild_feed(user_id: int) -> None:
    """A returning inactive reader's feed (accounts.services.user_mark_seen)."""
    from microblog.accounts.models import User
    from microblog.timelines import fanout

    user = User.objects.filter(id=user_id).first()
    if user is not None:
        fanout.rebuild(user)


# --- Notifications -----------------------------------------------------------------------


@job(DEFAULT)
def fold_notifications(recipient_id: int, kind: str, group_key: int) -> bool:
    """Folds a group's pending events (likes, reposts, follows) into its notification, once per
    NOTIFICATIONS_GROUP_DELAY_SECONDS however many events came (notifications.services)."""
    from microblog.notifications import services

    return services.notifications_fold(recipient_id=recipient_id, kind=kind, group_key=group_key)


def after_delay(job_task: Task[..., Any], seconds: float) -> Task[..., Any]:
    """The job set to run `seconds` from now, on backends that can defer (the database queue);
    others (the tests' immediate backend) run it at once."""
    if seconds <= 0 or not job_task.get_backend().supports_defer:
        return job_task
    return job_task.using(run_after=timezone.now() + timedelta(seconds=seconds))


# --- Maintenance (scheduled by `microblog worker`) ---------------------------------------


@job(MAINTENANCE)
def feeds_trim() -> int:
    from microblog.timelines import maintenance

    return maintenance.trim_active_feeds()


@job(MAINTENANCE)
def jobs_prune() -> int:
    from microblog.jobs import queue
    from microblog.timelines import fanout

    kept_since = timezone.now() - timedelta(days=settings.JOBS_KEEP_FINISHED_DAYS)
    return queue.prune_finished_jobs() + fanout.prune_finished(kept_since)


@job(MAINTENANCE)
def counters_check() -> dict[str, int]:
    from microblog.ops.counters import reconcile

    return reconcile(fix=True).drift_by_counter()


@job(MAINTENANCE)
def fanouts_resume() -> int:
    """The safety net: fan-outs that have not finished and that no job will run (whatever the
    cause: a bug, a job row deleted by hand) are enqueued again; returns how many."""
    from microblog.ops import metrics

    lost = abandoned_fan_outs()
    for post_id in lost:
        logger.warning("fan-out of post %d had no job left to run it: enqueued again", post_id)
        fan_out_post.enqueue(post_id)
        metrics.JOBS_REQUEUED.labels(reason="safety_net").inc()
    return len(lost)


def abandoned_fan_outs() -> list[int]:
    """Post ids whose fan-out has not finished and has no job queued or running."""
    from microblog.timelines import fanout

    pending = fanout.pending_fan_outs()
    if not pending:
        return []
    queued = {
        args[0] if args else None
        for args in DBTaskResult.objects.filter(
            task_path=fan_out_post.module_path,
            status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING],
        ).values_list("args_kwargs__args", flat=True)
    }
    candidates = [post_id for post_id in pending if post_id not in queued]
    # Read again: a fan-out that finished between the two reads above is not abandoned.
    still_pending = set(fanout.pending_fan_outs()) if candidates else set()
    return [post_id for post_id in candidates if post_id in still_pending]


@job(MAINTENANCE)
def ratelimit_prune() -> int:
    from microblog import ratelimit

    return ratelimit.prune()


@job(MAINTENANCE)
def api_idempotency_prune() -> int:
    """Expired Idempotency-Keys of the client API (api.services.idempotency_keys_prune)."""
    from microblog.api.services import idempotency_keys_prune

    return idempotency_keys_prune()


@job(MAINTENANCE)
def tags_trending() -> int:
    """The trending hashtags, stored for the pages (tags.services.trending_refresh)."""
    from microblog.tags.services import trending_refresh

    return trending_refresh()


SCHEDULED: dict[str, Task[..., Any]] = {
    "feeds_trim": feeds_trim,
    "jobs_prune": jobs_prune,
    "counters_check": counters_check,
    "ratelimit_prune": ratelimit_prune,
    "fanouts_resume": fanouts_resume,
    "tags_trending": tags_trending,
    "api_idempotency_prune": api_idempotency_prune,
}
