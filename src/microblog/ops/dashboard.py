"""The staff job dashboard: jobs by state, queue depth and age, failed jobs with a retry button."""

from uuid import UUID

from django.contrib import messages
from django.db.models import Count, Min, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.tasks import TaskResultStatus
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe
from django_tasks_db.models import DBTaskResult, get_date_max

from microblog.core.http import staff_required

FAILED_SHOWN = 50


def queue_stats() -> dict[str, object]:
    """Shared by the dashboard (and later /health and /metrics)."""
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


@staff_required
@require_safe
def jobs(request: HttpRequest) -> HttpResponse:
    failed = DBTaskResult.objects.filter(status=TaskResultStatus.FAILED).order_by("-finished_at")[
        :FAILED_SHOWN
    ]
    context = {"stats": queue_stats(), "failed": failed, "states": list(TaskResultStatus)}
    return render(request, "ops/jobs.html", context)


@staff_required
@require_POST
def retry(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """Enqueues a failed job again with the same arguments, as a fresh first attempt."""
    job = DBTaskResult.objects.filter(id=job_id, status=TaskResultStatus.FAILED).first()
    if job is None:
        raise Http404("No such failed job")
    kwargs = dict(job.args_kwargs.get("kwargs", {}))
    kwargs.pop("attempt", None)
    job.task.enqueue(*job.args_kwargs.get("args", []), **kwargs)
    messages.success(request, f"{job.task_path} was queued again.")
    return redirect("staff_jobs")
