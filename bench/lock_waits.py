"""What the database's busy backends wait for, sampled during a load run (issue 15, item 4).

Every `--interval` seconds for `--seconds`, reads pg_stat_activity for the database's active
backends (not this one) and counts, per sample, what each is doing: running (no wait), or
waiting, by wait event (`Lock/transactionid`: a row another transaction holds; `Lock/tuple`;
`IO/WALSync`, `LWLock/WALWrite`: a commit's flush; `Client/ClientRead`: idle in a transaction,
waiting for the app's next statement) and, for lock waits, the waiting statement and what the
blocking backend runs. Read-only: nothing is written to the database.

    .venv/bin/python bench/lock_waits.py --database mb_seed --seconds 20 --out /tmp/waits.json &
    BENCH_SCENARIOS=posting ... .venv/bin/python bench/run_bench.py
"""

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

import psycopg

QUERY = """
SELECT a.pid, a.state, coalesce(a.wait_event_type, '') AS type, coalesce(a.wait_event, '') AS event,
       left(a.query, 200) AS query,
       (SELECT left(b.query, 200) FROM pg_stat_activity b
         WHERE b.pid = (pg_blocking_pids(a.pid))[1]) AS blocker
FROM pg_stat_activity a
WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
  AND a.state IN ('active', 'idle in transaction')
"""


def shape(sql: str | None) -> str:
    """A statement without its values, so samples of the same statement count together."""
    if not sql:
        return ""
    sql = re.sub(r"'[^']*'", "?", sql)
    sql = re.sub(r"\b\d+\b", "N", sql)
    return re.sub(r"\s+", " ", sql).strip()[:140]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default="mb_seed")
    parser.add_argument("--dsn", default="host=127.0.0.1 user=postgres dbname=postgres")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    states: Counter[str] = Counter()
    lock_waits: Counter[tuple[str, str, str]] = Counter()
    samples = 0
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            rows = conn.execute(QUERY, [args.database]).fetchall()
            samples += 1
            for _pid, state, kind, event, query, blocker in rows:
                if state == "idle in transaction":
                    states["idle in transaction (app's turn)"] += 1
                elif not kind:
                    states["running"] += 1
                else:
                    states[f"{kind}/{event}"] += 1
                if kind == "Lock":
                    lock_waits[(event, shape(query), shape(blocker))] += 1
            time.sleep(args.interval)
    report = {
        "database": args.database,
        "samples": samples,
        "interval_s": args.interval,
        "backend_states": dict(states.most_common()),
        "mean_backends_per_sample": {k: round(v / samples, 3) for k, v in states.most_common()},
        "lock_waits": [
            {"event": e, "waiting": q, "blocker": b, "samples": n}
            for (e, q, b), n in lock_waits.most_common(20)
        ],
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
