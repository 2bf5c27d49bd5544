"""Shared setup for the fan-out benchmarks: Django on the bench database, timing helpers.

Every script needs DATABASE_URL naming a PostgreSQL database of its own (never production):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/microblog_bench .venv/bin/python bench/...
"""

import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL bench database (postgres://...).")
    sys.path.insert(0, str(ROOT / "src"))
    import django

    django.setup()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def machine() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": server,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
    }


def command_line() -> str:
    return (
        "DATABASE_URL="
        + os.environ.get("DATABASE_URL", "")
        + " .venv/bin/python "
        + " ".join(sys.argv)
    )
