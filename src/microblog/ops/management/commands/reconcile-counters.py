"""`microblog reconcile-counters`: recompute every counter, report drift, fix it."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from microblog.ops.counters import reconcile


class Command(BaseCommand):
    help = "Recompute follower, following, post and reply counters; report and fix drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Report drift without fixing it."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = reconcile(fix=not options["dry_run"])
        if not report.drifts:
            self.stdout.write("No drift: every counter matches the rows it counts.")
            return
        for drift in report.drifts:
            self.stdout.write(
                f"{drift.counter} of #{drift.object_id}: stored {drift.stored}, "
                f"actual {drift.actual}"
            )
        verb = "would fix" if options["dry_run"] else "fixed"
        totals = ", ".join(f"{name}: {n}" for name, n in report.drift_by_counter().items())
        self.stdout.write(f"Drift found in {len(report.drifts)} counters ({totals}); {verb}.")
