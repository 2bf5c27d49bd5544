"""The staff job dashboard: jobs by state, queue depth and age, failed jobs with a retry button.
It reads and writes the job table only through microblog.jobs.queue."""

from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.tasks import TaskResultStatus
from django.views.decorators.http import require_POST, require_safe

from microblog.core.http import staff_required
from microblog.jobs import queue

FAILED_SHOWN = 50


@staff_required
@require_safe
def jobs(request: HttpRequest) -> HttpResponse:
    context = {
        "stats": queue.queue_stats(),
        "failed": queue.failed_jobs(FAILED_SHOWN),
        "states": list(TaskResultStatus),
    }
    return render(request, "ops/jobs.html", context)


@staff_required
@require_POST
def retry(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """Enqueues a failed job again with the same arguments, as a fresh first attempt."""
    task_path = queue.queue_again(job_id)
    if task_path is None:
        raise Http404("No such failed job")
    messages.success(request, f"{task_path} was queued again.")
    return redirect("staff_jobs")
