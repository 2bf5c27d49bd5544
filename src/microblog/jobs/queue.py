"""The job table (django-tasks-db's DBTaskResult): every read and write of it outside the job
engine goes through here or the jobs package (the staff dashboard, /health, /metrics, the
worker's upkeep), so a change of engine touches one package."""

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet
from django.tasks import TaskResultStatus
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks_db.models import DBTaskResult, get_date_max

logger = logging.getLogger("microblog.jobs")


def queue_stats() -> dict[str, object]:
    """Jobs by state, queue depth and the age of the oldest due job: the dashboard, /health and
    /metrics."""
    now = timezone.now()
    by_state = dict(DBTaskResult.objects.values_list("status").annotate(n=Count("id")).order_by())
    ready = DBTaskResult.objects.filter(status=TaskResultStatus.READY)
    depth_by_queue = dict(
        ready.values_list("queue_name").annotate(n=Count("id")).order_by("queue_name")
    )
    # A job is due since it was enqueued, or since its run_after when it has one (a retry's
    # backoff is not waiting); django-tasks-db stores "no run_after" as the maximum date.
    no_delay = Q(run_after=get_date_max())
    due = DBTaskResult.objects.ready().aggregate(
        enqueued=Min("enqueued_at", filter=no_delay), scheduled=Min("run_after", filter=~no_delay)
    )
    oldest = min((when for when in due.values() if when is not None), default=None)
    return {
        "by_state": by_state,
        "depth_by_queue": depth_by_queue,
        "queue_depth": sum(depth_by_queue.values()),
        "oldest_queued_age_s": (now - oldest).total_seconds() if oldest else 0.0,
        "failed": by_state.get(TaskResultStatus.FAILED, 0),
    }


def failed_jobs(limit: int) -> "QuerySet[DBTaskResult]":
    """The newest failed jobs, for review."""
    return DBTaskResult.objects.filter(status=TaskResultStatus.FAILED).order_by("-finished_at")[
        :limit
    ]


def queue_again(job_id: UUID) -> str | None:
    """Enqueues a failed job again with the same arguments, as a fresh first attempt; returns
    its task path, or None when no failed job has that id."""
    job = DBTaskResult.objects.filter(id=job_id, status=TaskResultStatus.FAILED).first()
    if job is None:
        return None
    kwargs = dict(job.args_kwargs.get("kwargs", {}))
    kwargs.pop("attempt", None)
    job.task.enqueue(*job.args_kwargs.get("args", []), **kwargs)
    return str(job.task_path)


def prune_finished_jobs() -> int:
    """Deletes successful jobs older than JOBS_KEEP_FINISHED_DAYS; failed ones stay for review."""
    cutoff = timezone.now() - timedelta(days=settings.JOBS_KEEP_FINISHED_DAYS)
    deleted, _ = DBTaskResult.objects.filter(
        status=TaskResultStatus.SUCCESSFUL, finished_at__lt=cutoff
    ).delete()
    return deleted


def worker_id() -> str:
    """A worker's id: host, process id and a random suffix, so `requeue_abandoned_jobs` can tell
    whether the worker that claimed a job still runs."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(8)}"


def _worker_is_gone(claimed_by: str, own_worker_id: str | None) -> bool:
    host, _, rest = claimed_by.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname()[:40] or not pid_text.isdigit():
        return False  # another machine's worker (or an id of another shape): only the timeout
    pid = int(pid_text)
    if pid == os.getpid():
        return claimed_by != own_worker_id  # an earlier process that had this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def requeue_abandoned_jobs(own_worker_id: str | None = None) -> int:
    """Puts RUNNING jobs whose worker died back to READY; returns how many.

    django-tasks-db marks a job RUNNING when a worker claims it and never looks at it again, so a
    worker killed mid-job (OOM, SIGKILL, a lost machine) would leave it RUNNING forever. Every job
    is idempotent, so running it again is safe. A job is abandoned when the worker that claimed it
    ran on this host and its process is gone, or when it has been RUNNING for longer than
    JOB_RUNNING_TIMEOUT_SECONDS (a worker on another machine). Called by every worker at
    start-up and on each scheduler tick.
    """
    timeout_cutoff = timezone.now() - timedelta(seconds=settings.JOB_RUNNING_TIMEOUT_SECONDS)

    def abandoned(claimed_by: str, started_at: datetime | None) -> bool:
        stale = started_at is not None and started_at < timeout_cutoff
        return stale or _worker_is_gone(claimed_by, own_worker_id)

    return _requeue_running(abandoned, reason="worker_gone")


def requeue_job(job_id: UUID | str) -> bool:
    """Puts one RUNNING job back to READY: its worker was asked to stop while running it."""
    from microblog.ops.metrics import JOBS_REQUEUED

    if DBTaskResult.objects.filter(id=job_id, status=TaskResultStatus.RUNNING).update(
        status=TaskResultStatus.READY
    ):
        JOBS_REQUEUED.labels(reason="stopped").inc()
        return True
    return False


def requeue_jobs_of(worker_id: str) -> int:
    """Puts the RUNNING jobs last claimed by `worker_id` back to READY; returns how many. For a
    worker that lost its database mid-job and no longer runs them (`microblog worker`)."""
    return _requeue_running(
        lambda claimed_by, _started_at: claimed_by == worker_id, reason="database_lost"
    )


def _requeue_running(should_requeue: Callable[[str, datetime | None], bool], reason: str) -> int:
    """Puts back to READY each RUNNING job for which `should_requeue(claimed_by, started_at)`."""
    from microblog.ops.metrics import JOBS_REQUEUED

    requeued = 0
    running = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING)
    for job_id, started_at, worker_ids in running.values_list("id", "started_at", "worker_ids"):
        claimed_by = worker_ids[-1] if worker_ids else ""
        if not should_requeue(claimed_by, started_at):
            continue
        # Conditional on the state read above, so a job that finished meanwhile stays finished.
        if DBTaskResult.objects.filter(
            id=job_id, status=TaskResultStatus.RUNNING, started_at=started_at
        ).update(status=TaskResultStatus.READY):
            logger.warning("job %s abandoned by worker %s: queued again", job_id, claimed_by)
            JOBS_REQUEUED.labels(reason=reason).inc()
            requeued += 1
    return requeued
