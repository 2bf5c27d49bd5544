"""Does a failed log-in take as long for an unknown username as for a wrong password?

With the production hasher (Argon2, the first of `PASSWORD_HASHERS` in microblog.settings), times
three kinds of attempt, interleaved so machine noise hits each alike:

- `wrong_password`: an existing account, a wrong password (one Argon2 verify of the stored hash);
- `unknown_user`: no such account (Django's ModelBackend hashes the password once anyway);
- `right_password`: a successful check, for reference;
- `lookup_only` (authenticate() table only): the user lookup without any hashing, i.e. what an
  unknown username would cost if the backend skipped the hash; the gap enumeration would measure;

first through `authenticate()` alone, then as whole `POST /login` requests through the test
client (form, session, page). Prints medians and p95 per kind and the unknown/wrong ratio, and
writes bench/results/login_timing.json.

    .venv/bin/python bench/login_timing.py --rounds 60

It uses a throwaway SQLite database in a temporary directory unless DATABASE_URL is set (then it
adds one user, `timing_probe`, to that database; never point it at production). Rate limits are
off for the run (RATELIMIT_ENABLED=0): they would refuse the repeated failures.
"""

# ruff: noqa: E402 (Django is set up before the app modules are imported)
import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TMP = tempfile.mkdtemp(prefix="login_timing_")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{TMP}/timing.sqlite3")
os.environ["RATELIMIT_ENABLED"] = "0"
sys.path.insert(0, str(ROOT / "src"))

import django

django.setup()
logging.getLogger("django.request").setLevel(logging.ERROR)  # not a line per refused log-in

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import get_hasher
from django.core.management import call_command
from django.test import Client

from microblog.accounts.models import User

USERNAME = "timing_probe"
PASSWORD = "correct-horse-battery-staple"
WRONG = "wrong-horse-battery-staple"


def prepare() -> None:
    call_command("migrate", verbosity=0)
    user = User.objects.filter(username=USERNAME).first()
    if user is None:
        user = User.objects.create_user(username=USERNAME, password=PASSWORD)
    else:
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
    assert user.password.startswith("argon2$"), user.password[:20]


def timed(attempt: Callable[[], object]) -> float:
    start = time.perf_counter()
    attempt()
    return (time.perf_counter() - start) * 1000


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * len(ordered)))]


def run(attempts: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name in attempts}
    for attempt in attempts.values():  # warm-up: imports, connections, caches
        attempt()
    for round_number in range(rounds):
        # Rotate the order each round so no kind always runs first.
        names = list(attempts)
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(attempts[name]))
    return {
        name: {
            "n": len(values),
            "median_ms": round(statistics.median(values), 2),
            "mean_ms": round(statistics.fmean(values), 2),
            "p95_ms": round(p95(values), 2),
            "stdev_ms": round(statistics.stdev(values), 2),
        }
        for name, values in samples.items()
    }


def report(title: str, results: dict[str, dict[str, float]]) -> float:
    print(title)
    for name, row in results.items():
        print(
            f"  {name:15} median {row['median_ms']:8.2f} ms   p95 {row['p95_ms']:8.2f} ms"
            f"   mean {row['mean_ms']:8.2f} ms   stdev {row['stdev_ms']:6.2f}"
        )
    ratio = results["unknown_user"]["median_ms"] / results["wrong_password"]["median_ms"]
    print(f"  unknown_user / wrong_password (medians): {ratio:.3f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60, help="attempts of each kind (60)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "login_timing.json"))
    args = parser.parse_args()
    prepare()
    hasher = get_hasher("default")
    print(
        f"hasher {hasher.algorithm} (time_cost={getattr(hasher, 'time_cost', '?')}, "
        f"memory_cost={getattr(hasher, 'memory_cost', '?')} KiB, "
        f"parallelism={getattr(hasher, 'parallelism', '?')}); "
        f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; "
        f"{args.rounds} rounds"
    )

    backend = run(
        {
            "wrong_password": lambda: authenticate(username=USERNAME, password=WRONG),
            "unknown_user": lambda: authenticate(username="no_such_user_here", password=WRONG),
            "right_password": lambda: authenticate(username=USERNAME, password=PASSWORD),
            # What an unknown username would cost without the dummy hash: the lookup alone.
            "lookup_only": lambda: User.objects.filter(username__iexact="no_such_user").first(),
        },
        args.rounds,
    )

    def post(username: str, password: str, status: int) -> Callable[[], object]:
        def attempt() -> None:
            response = Client().post("/login", {"username": username, "password": password})
            assert response.status_code == status, response.status_code

        return attempt

    requests = run(
        {
            "wrong_password": post(USERNAME, WRONG, 400),
            "unknown_user": post("no_such_user_here", WRONG, 400),
            "right_password": post(USERNAME, PASSWORD, 302),
        },
        args.rounds,
    )
    results = {
        "hasher": hasher.algorithm,
        "hasher_parameters": {
            name: getattr(hasher, name, None)
            for name in ("time_cost", "memory_cost", "parallelism")
        },
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "rounds": args.rounds,
        "authenticate": backend,
        "post_login": requests,
        "ratio_authenticate": round(report("authenticate():", backend), 3),
        "ratio_post_login": round(report("POST /login:", requests), 3),
    }
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
