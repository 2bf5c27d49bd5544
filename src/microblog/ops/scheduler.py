"""The periodic maintenance schedule, run by every `microblog worker` in a background thread."""

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from microblog import jobs
from microblog.core.errors import DATABASE_UNAVAILABLE
from microblog.core.models import ScheduledJob
from microblog.jobs import queue

logger = logging.getLogger("microblog.scheduler")


def enqueue_due_jobs() -> list[str]:
    """Enqueues every maintenance job whose time has come; returns their names."""
    now = timezone.now()
    enqueued = []
    for name, interval in settings.MAINTENANCE_INTERVALS.items():
        ScheduledJob.objects.get_or_create(
            name=name, defaults={"next_run_at": now + timedelta(seconds=min(interval, 60))}
        )
        claimed = ScheduledJob.objects.filter(name=name, next_run_at__lte=now).update(
            next_run_at=now + timedelta(seconds=interval), last_enqueued_at=now
        )
        if claimed:
            jobs.SCHEDULED[name].enqueue()
            enqueued.append(name)
    return enqueued


def start(poll_seconds: float = 15.0, worker_id: str | None = None) -> threading.Event:
    """Starts the scheduler thread; set the returned event to stop it. Each tick also queues
    again the jobs of workers that died (`queue.requeue_abandoned_jobs`)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                for name in enqueue_due_jobs():
                    logger.info("scheduled job enqueued: %s", name)
                queue.requeue_abandoned_jobs(worker_id)
            except DATABASE_UNAVAILABLE as error:
                # The database is away (a restart, an outage): one line per tick, not a
                # traceback; the worker's own loop reports the outage too.
                logger.warning("scheduler: database unreachable (%s); trying again", error)
            except Exception:
                logger.exception("scheduler tick failed; trying again")
            finally:
                close_old_connections()
            stop.wait(poll_seconds)

    threading.Thread(target=loop, name="microblog-scheduler", daemon=True).start()
    return stop
