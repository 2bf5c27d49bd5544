"""What the connection health check costs per request: Django's `SELECT 1` (the stock
CONN_HEALTH_CHECKS) against the socket poll of core/postgresql, on one reused psycopg connection.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_h4 \
        .venv/bin/python bench/health_check_cost.py

Prints CPU (time.process_time) and wall microseconds per check, median of 5 rounds of 3,000.
"""

import json
import os
import statistics
import time

import psycopg

from microblog.core.postgresql.base import quiet


def per_call(check, count: int = 3000) -> tuple[float, float]:
    for _ in range(200):
        check()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        check()
    return (time.process_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


def main() -> None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    connection = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)

    def select_1() -> None:
        with connection.cursor() as cursor:  # what Django's is_usable runs
            cursor.execute("SELECT 1")

    def poll() -> None:
        assert quiet(connection)

    result = {}
    for name, check in (("select_1", select_1), ("socket_poll", poll)):
        rounds = [per_call(check) for _ in range(5)]
        result[name] = {
            "cpu_us": round(statistics.median(r[0] for r in rounds), 1),
            "wall_us": round(statistics.median(r[1] for r in rounds), 1),
        }
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
