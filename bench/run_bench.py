"""`make bench`: the load tests of issue 4 against the database DATABASE_URL names (seed it first).

1. bench/load_setup.py prepares the data (a 200-reply thread) and the fixture (readers to sign
   in as, the most-followed account, dataset counts).
2. Starts the app in production mode with `microblog serve` (granian WSGI with several workers
   plus the job worker; DEBUG=0, a SECRET_KEY, plain-HTTP loopback: no SSL redirect, non-secure
   cookies, no HSTS; RATELIMIT_ENABLED=0) in its own process group, and waits for /up.
3. Warms up, then runs each locust scenario headless for BENCH_SECONDS, then the wrk scripts,
   and writes one JSON file per scenario to bench/results/load_<label>_<scenario>.json.
4. Measures each web worker's RSS from /proc, stops the app by its PID and writes a summary
   (bench/results/load_<label>_summary.json) and a Markdown table on stdout.

Settings (environment): DATABASE_URL (PostgreSQL, seeded), BENCH_SECONDS (30), BENCH_USERS (32,
simulated users = connections), BENCH_SCENARIOS (all), BENCH_LABEL (the database name),
BENCH_WEB_WORKERS (2), BENCH_THREADS (4), BENCH_PORT (8765), BENCH_WARMUP (10 s),
BENCH_WRK_SECONDS (15; 0 skips wrk), BENCH_LOG_LEVEL (WARNING: no per-request log lines),
BENCH_FIXTURE (a fixture bench/load_setup.py wrote earlier: used as it is, load_setup.py not run).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_load_medium make bench
"""

import contextlib
import csv
import http.cookiejar
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from _common import RESULTS, ROOT, machine, setup_django

BIN = Path(sys.executable).parent
# (scenario, locust user class); the writing scenarios run last so their fan-out jobs do not
# run during the read scenarios.
SCENARIOS = [
    ("home_for_you", "HomeForYou"),
    ("for_you_deep", "ForYouDeep"),
    ("profile_celebrity", "ProfileCelebrity"),
    ("thread", "Thread"),
    ("following_pull", "FollowingPull"),
    ("signed_out", "SignedOut"),
    ("notifications", "NotificationsPage"),
    ("tag_page", "TagPage"),
    ("search", "Search"),
    # Two user classes in one run (half the users each): each figure under the same load.
    ("api_home_vs_for_you", "ApiHome ForYouPage1"),
    # Each alone, one after the other: the capacity of each (in the mixed run above the shared
    # queue's wait dominates both latencies, so their req/s differ less than their costs).
    ("for_you_page1", "ForYouPage1"),
    ("api_home", "ApiHome"),
    ("posting", "Posting"),
    ("mixed", "Mixed"),
    ("liking", "Liking"),
]
WRK_SCRIPTS = [("wrk_for_you", "for_you.lua"), ("wrk_profile_celebrity", "profile_celebrity.lua")]
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Signing in hashes each password with Argon2 (slow on purpose: ~0.1 s of CPU each and 100 MB
# of memory), so the simulated users need time to sign in before the measured window, which
# starts once all have (bench/locustfile.py) and lasts BENCH_SECONDS; --run-time bounds it all.
SIGN_IN_ALLOWANCE = 120


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


# --- processes --------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for kid in children_of(todo.pop()):
            found.append(kid)
            todo.append(kid)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def cpu_used(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds used between two snapshots by the processes alive at the second one."""
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / CLK_TCK


def busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def postgres_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (other sessions' databases and the server's
    background processes are left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
            except OSError:
                continue
            if f" {database} " in cmdline(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def granian_workers(serve_pid: int) -> list[int]:
    """The granian worker processes: the children of the granian main process."""
    mains = [p for p in children_of(serve_pid) if "granian" in cmdline(p)]
    return [kid for main in mains for kid in children_of(main)]


# --- the app ----------------------------------------------------------------------------


def start_app(port: int, workers: int, threads: int, log: Path) -> subprocess.Popen:
    app_env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", "bench-only-" + "x" * 50),
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "RATELIMIT_ENABLED": "0",
        "LOG_LEVEL": env("BENCH_LOG_LEVEL", "WARNING"),
    }
    command = [
        str(BIN / "microblog"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--web-workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    print("app:", shlex.join(command), flush=True)
    return subprocess.Popen(
        command, env=app_env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_up(base: str, app: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise SystemExit(f"The app exited with status {app.returncode}; see its log.")
        try:
            with urllib.request.urlopen(base + "/up", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("The app did not answer /up in time.")


def stop_app(app: subprocess.Popen) -> None:
    """SIGTERM to `microblog serve` (it stops granian and the worker), then SIGKILL by PID to
    whatever of its tree is left after 20 s."""
    tree = descendants(app.pid)
    if app.poll() is None:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(timeout=5)
    for pid in tree:
        if Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def queue_drain(timeout: float = 60) -> float:
    """Waits until the job queue is empty (fan-out jobs of a writing scenario) or `timeout`."""
    from django.db import connection

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM django_tasks_database_dbtaskresult "
                "WHERE status IN ('READY', 'RUNNING')"
            )
            if cursor.fetchone()[0] == 0:
                break
        time.sleep(1)
    return time.monotonic() - started


# --- locust -----------------------------------------------------------------------------


def run_locust(
    base: str, cls: str, seconds: int, users: int, fixture: Path, prefix: Path, sample=None
) -> tuple[list[str], list, dict]:
    """Runs one scenario; `sample()` is called when the measured window starts (every user
    signed in) and after locust exits."""
    sample = sample or (lambda: None)
    extra_out = prefix.with_suffix(".extra.json")
    command = [
        str(BIN / "locust"),
        "-f",
        str(ROOT / "bench" / "locustfile.py"),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds + SIGN_IN_ALLOWANCE}s",
        "--stop-timeout",
        "5",
        "--host",
        base,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *cls.split(),
    ]
    started_marker = Path(f"{extra_out}.started")
    log = prefix.with_suffix(".locust.log")
    samples = []
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            command,
            env={
                **os.environ,
                "LOAD_FIXTURE": str(fixture),
                "LOAD_EXTRA_OUT": str(extra_out),
                "LOAD_MEASURE_SECONDS": str(seconds),
            },
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        deadline = time.monotonic() + seconds + SIGN_IN_ALLOWANCE + 60
        while proc.poll() is None:
            if not samples and started_marker.exists():
                samples.append(sample())
            if time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(0.1)
        proc.wait()
        samples.append(sample())
    if proc.returncode not in (0, 1):  # 1: some requests failed, which the results show
        print(log.read_text()[-2000:], file=sys.stderr)
    extra = json.loads(extra_out.read_text()) if extra_out.exists() else {}
    return command, samples, extra


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "N/A" when there were no requests
        return 0.0


def read_stats(prefix: Path) -> tuple[dict, dict[str, dict]]:
    with Path(f"{prefix}_stats.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    by_name: dict[str, dict] = {}
    aggregated: dict = {}
    for row in rows:
        figures = {
            "requests": int(row["Request Count"]),
            "errors": int(row["Failure Count"]),
            "rps": round(number(row["Requests/s"]), 1),
            "p50_ms": number(row["50%"]),
            "p95_ms": number(row["95%"]),
            "p99_ms": number(row["99%"]),
            "avg_ms": round(number(row["Average Response Time"]), 2),
        }
        if row["Name"] == "Aggregated":
            aggregated = figures
        elif figures["requests"]:  # the sign-in rows are empty after the reset
            by_name[f"{row['Type']} {row['Name']}"] = figures
    return aggregated, by_name


def read_failures(prefix: Path) -> list[dict]:
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    return [
        {
            "request": f"{r['Method']} {r['Name']}",
            "error": r["Error"][:200],
            "count": r["Occurrences"],
        }
        for r in csv.DictReader(path.open())
    ]


# --- wrk --------------------------------------------------------------------------------


def sign_in_cookies(base: str, usernames: list[str], password: str) -> list[str]:
    cookies = []
    for username in usernames:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "/login", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": username, "password": password}
        ).encode()
        opener.open(base + "/login", data=data, timeout=10).read()
        pairs = {c.name: c.value for c in jar}
        if "sessionid" not in pairs:
            raise SystemExit(f"wrk: could not sign in as {username}")
        cookies.append(f"sessionid={pairs['sessionid']}")
    return cookies


def run_wrk(base: str, script: str, seconds: int, connections: int, wrk_env: dict) -> tuple:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(ROOT / "bench" / "wrk" / script),
        base,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        command,
        env={**os.environ, **wrk_env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no summary:\n{out}")
    return command, cpu, json.loads(line.removeprefix("WRK_JSON "))


# --- main -------------------------------------------------------------------------------


def main() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "Set DATABASE_URL to a seeded PostgreSQL database, e.g.\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_load_medium "
            ".venv/bin/microblog seed --preset medium\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_load_medium make bench"
        )
    seconds = int(env("BENCH_SECONDS", "30"))
    users = int(env("BENCH_USERS", "32"))
    port = int(env("BENCH_PORT", "8765"))
    workers = int(env("BENCH_WEB_WORKERS", "2"))
    threads = int(env("BENCH_THREADS", "4"))
    warmup = int(env("BENCH_WARMUP", "10"))
    wrk_seconds = int(env("BENCH_WRK_SECONDS", "15"))
    label = env("BENCH_LABEL", urllib.parse.urlparse(url).path.strip("/") or "bench")
    wanted = env("BENCH_SCENARIOS", ",".join(s for s, _ in SCENARIOS)).split(",")
    unknown = set(wanted) - {s for s, _ in SCENARIOS}
    if unknown:
        sys.exit(f"Unknown scenarios: {', '.join(sorted(unknown))}")
    base = f"http://127.0.0.1:{port}"
    database = urllib.parse.urlparse(url).path.strip("/")
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="microblog-bench-"))
    fixture_path = work / "fixture.json"

    if env("BENCH_FIXTURE", ""):
        # A fixture load_setup.py wrote before: running it again would replace its API tokens
        # (it deletes its own client's tokens), which other runs of a shared database may use.
        fixture_path.write_text(Path(env("BENCH_FIXTURE", "")).read_text())
    else:
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "load_setup.py"), "--out", str(fixture_path)],
            check=True,
            timeout=600,
        )
    fixture = json.loads(fixture_path.read_text())
    setup_django()
    info = machine()
    info.update({"web_workers": str(workers), "threads_per_worker": str(threads)})
    note = (
        f"{info['cores']} cores shared by the app (granian {workers} workers x {threads} "
        "threads + job worker), PostgreSQL and the load generator; /events/ served on the "
        "same port (microblog serve's default), no stream open during the runs; request "
        "logging at " + env("BENCH_LOG_LEVEL", "WARNING")
    )
    app_log = work / "app.log"
    app = start_app(port, workers, threads, app_log)
    summary: dict = {"label": label, "dataset": fixture["dataset"], "machine": info, "runs": {}}
    try:
        wait_up(base, app)
        app_pids = [app.pid, *descendants(app.pid)]
        print(f"app up: pid {app.pid}, web workers {granian_workers(app.pid)}", flush=True)
        if warmup:
            run_locust(base, "HomeForYou", warmup, users, fixture_path, work / "warmup")
        plan = [(s, c) for s, c in SCENARIOS if s in wanted]
        for scenario, cls in plan:
            if scenario in ("posting", "mixed", "liking"):
                queue_drain()
            app_pids = [app.pid, *descendants(app.pid)]

            def sample(app_pids=app_pids) -> tuple:
                return (
                    time.monotonic(),
                    busy_seconds(),
                    cpu_ticks(app_pids),
                    cpu_ticks(postgres_pids(database)),
                )

            prefix = work / scenario
            command, samples, extra = run_locust(
                base, cls, seconds, users, fixture_path, prefix, sample
            )
            if len(samples) == 2:
                (t0, busy0, app0, pg0), (t1, busy1, app1, pg1) = samples
                wall = t1 - t0
                app_cpu, pg_cpu = cpu_used(app0, app1), cpu_used(pg0, pg1)
                gen_cpu = extra.get("generator_cpu_s") or 0.0
                busy = busy1 - busy0
            else:
                wall, app_cpu, pg_cpu, gen_cpu, busy = 1.0, 0.0, 0.0, 0.0, 0.0
            aggregated, by_name = read_stats(prefix)
            if not aggregated:
                print(f"{scenario}: no statistics", file=sys.stderr)
                continue
            duration = (
                round(extra["measure_end"] - extra["measure_start"], 1)
                if extra.get("measure_start")
                else seconds
            )
            result = {
                "scenario": scenario,
                "dataset": fixture["dataset"],
                "rps": aggregated["rps"],
                "p50_ms": aggregated["p50_ms"],
                "p95_ms": aggregated["p95_ms"],
                "p99_ms": aggregated["p99_ms"],
                "requests": aggregated["requests"],
                "errors": aggregated["errors"] + extra.get("setup_errors", 0),
                "connections": users,
                "duration_s": duration,
                "machine": {
                    **info,
                    "note": note,
                    "generator_cores": round(gen_cpu / wall, 2),
                    "app_cores": round(app_cpu / wall, 2),
                    "postgres_cores": round(pg_cpu / wall, 2),
                    # Everything else on the (shared) machine during the run.
                    "other_cores": round(max(0.0, busy - gen_cpu - app_cpu - pg_cpu) / wall, 2),
                    "load_average": os.getloadavg()[0],
                },
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "command": f"DATABASE_URL={url} BENCH_SECONDS={seconds} make bench  # "
                + shlex.join(command),
                "by_request": by_name,
                "failures": read_failures(prefix),
                "extra": extra,
                "tool": "locust 2.47.0 (FastHttpUser, no wait time: closed loop)",
            }
            (RESULTS / f"load_{label}_{scenario}.json").write_text(json.dumps(result, indent=2))
            summary["runs"][scenario] = result
            print(
                f"{scenario:18} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.1f}  "
                f"p95 {result['p95_ms']:6.1f}  p99 {result['p99_ms']:6.1f} ms  "
                f"{result['requests']:7d} req  {result['errors']} errors  cores: generator "
                f"{result['machine']['generator_cores']}, app {result['machine']['app_cores']}, "
                f"PostgreSQL {result['machine']['postgres_cores']}, other "
                f"{result['machine']['other_cores']}",
                flush=True,
            )
        if wrk_seconds:
            readers = fixture["readers"][:users]
            cookies = sign_in_cookies(base, readers, "seeded-password-1")
            cookie_file = work / "cookies.txt"
            cookie_file.write_text("\n".join(cookies) + "\n")
            for scenario, script in WRK_SCRIPTS:
                wrk_env = {"WRK_COOKIES": str(cookie_file)}
                if "profile" in scenario:
                    wrk_env["WRK_PATH"] = f"/@{fixture['celebrity']}"
                t0 = time.monotonic()
                command, gen_cpu, out = run_wrk(base, script, wrk_seconds, users, wrk_env)
                wall = time.monotonic() - t0
                result = {
                    "scenario": scenario,
                    "dataset": fixture["dataset"],
                    "rps": round(out["rps"], 1),
                    "p50_ms": round(out["p50_ms"], 2),
                    "p95_ms": round(out["p95_ms"], 2),
                    "p99_ms": round(out["p99_ms"], 2),
                    "requests": out["requests"],
                    "errors": out["bad_responses"] + out["socket_errors"],
                    "connections": users,
                    "duration_s": round(out["duration_s"], 1),
                    "machine": {**info, "note": note, "generator_cores": round(gen_cpu / wall, 2)},
                    "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "command": " ".join(f"{k}={v}" for k, v in wrk_env.items())
                    + " "
                    + shlex.join(command),
                    "tool": "wrk 4 (1 thread), session cookies of signed-in seeded users",
                    "raw": out,
                }
                (RESULTS / f"load_{label}_{scenario}.json").write_text(json.dumps(result, indent=2))
                summary["runs"][scenario] = result
                print(
                    f"{scenario:18} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.1f}  "
                    f"p95 {result['p95_ms']:6.1f}  p99 {result['p99_ms']:6.1f} ms  "
                    f"{result['requests']:7d} req  {result['errors']} errors  generator cores "
                    f"{result['machine']['generator_cores']}",
                    flush=True,
                )
        workers_rss = {str(pid): round(rss_mb(pid), 1) for pid in granian_workers(app.pid)}
        summary["web_worker_rss_mb"] = workers_rss
        print(f"web worker RSS (MB) after the runs: {workers_rss}", flush=True)
    finally:
        stop_app(app)
    summary["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = RESULTS / f"load_{label}_summary.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nResults: {RESULTS}/load_{label}_*.json (app log: {app_log})")
    print("\n| scenario | req/s | p50 ms | p95 ms | p99 ms | requests | errors |")
    print("|---|---|---|---|---|---|---|")
    for scenario, r in summary["runs"].items():
        print(
            f"| {scenario} | {r['rps']:,.0f} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
            f"{r['requests']:,} | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
