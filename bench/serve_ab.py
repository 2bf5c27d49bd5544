"""Load runs of several app configurations against each other, in alternating rounds, so each
is a ratio against the first in the same run on the same (shared, noisy) machine.

A configuration is `label=tree[:serve arguments]`: the source tree (PYTHONPATH) and extra
`microblog serve` arguments, e.g.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_perf_seed .venv/bin/python \\
        bench/serve_ab.py --fixture /tmp/load_fixture.json --seconds 10 --rounds 3 \\
        --config "base=/tmp/base/src:--stream same-port" --config "new=src:--stream off"

For each round and configuration it starts `microblog serve` (production mode as `make bench`:
DEBUG=0, rate limits off, request log at WARNING, no job worker) on --port, signs in
--connections seeded readers through the log-in form, runs each wrk script (bench/wrk) for
--seconds with that many connections, records req/s, p50/p99 and the CPU time the app's
processes used per request, and stops the app by its PID. Traffic goes to 127.0.0.1 only.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run_bench import (
    BIN,
    ROOT,
    cpu_ticks,
    cpu_used,
    descendants,
    granian_workers,
    rss_mb,
    run_wrk,
    sign_in_cookies,
    stop_app,
    wait_up,
)

SCRIPTS = {
    "for_you": ("for_you.lua", {}),
    "profile": ("profile_celebrity.lua", {}),
    "thread": ("for_you.lua", {}),
    "following": ("for_you.lua", {}),
}


def start(tree: str, serve_args: list[str], port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": tree,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-" + "x" * 50,
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "RATELIMIT_ENABLED": "0",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        str(BIN / "microblog"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--job-workers",
        "0",
        *serve_args,
    ]
    return subprocess.Popen(
        command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def port_free(port: int) -> bool:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    return not out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fixture", required=True)
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--pages", default="for_you")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8431)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    fixture = json.loads(Path(args.fixture).read_text())
    configs = []
    for spec in args.config:
        label, _, rest = spec.partition("=")
        tree, _, serve = rest.partition(":")
        configs.append((label, str(Path(tree).resolve()), shlex.split(serve)))
    pages = args.pages.split(",")
    base = f"http://127.0.0.1:{args.port}"
    work = Path(f"/tmp/serve_ab_{os.getpid()}")
    work.mkdir(exist_ok=True)
    results: dict[str, dict[str, list[dict]]] = {c[0]: {p: [] for p in pages} for c in configs}
    loads = [os.getloadavg()[0]]
    for round_no in range(args.rounds):
        order = configs if round_no % 2 == 0 else list(reversed(configs))
        for label, tree, serve_args in order:
            if not port_free(args.port):
                sys.exit(f"port {args.port} is in use: stop that server first")
            app = start(tree, serve_args, args.port, work / f"{label}.log")
            try:
                wait_up(base, app)
                cookies = sign_in_cookies(
                    base, fixture["readers"][: args.connections], "seeded-password-1"
                )
                cookie_file = work / "cookies.txt"
                cookie_file.write_text("\n".join(cookies) + "\n")
                for page in pages:
                    script, _ = SCRIPTS[page]
                    wrk_env = {"WRK_COOKIES": str(cookie_file)}
                    if page == "profile":
                        wrk_env["WRK_PATH"] = f"/@{fixture['celebrity']}"
                    if page == "thread":
                        wrk_env["WRK_PATH"] = f"/posts/{fixture['thread_id']}"
                    if page == "following":
                        wrk_env["WRK_PATH"] = "/following"
                    # A short warm-up (prepared statements, templates), not measured.
                    run_wrk(base, script, 2, args.connections, wrk_env)
                    pids = [app.pid, *descendants(app.pid)]
                    before, t0 = cpu_ticks(pids), time.monotonic()
                    _, gen_cpu, out = run_wrk(base, script, args.seconds, args.connections, wrk_env)
                    wall = time.monotonic() - t0
                    app_cpu = cpu_used(before, cpu_ticks(pids))
                    figures = {
                        "rps": round(out["rps"], 1),
                        "p50_ms": round(out["p50_ms"], 2),
                        "p99_ms": round(out["p99_ms"], 2),
                        "errors": out["bad_responses"] + out["socket_errors"],
                        "app_cpu_ms_per_request": round(
                            app_cpu / max(1, out["requests"]) * 1000, 3
                        ),
                        "app_cores": round(app_cpu / wall, 2),
                        "generator_cores": round(gen_cpu / wall, 2),
                        "load_average": os.getloadavg()[0],
                    }
                    results[label][page].append(figures)
                    print(
                        f"round {round_no + 1} {label:12} {page:8} {json.dumps(figures)}",
                        flush=True,
                    )
                rss = [round(rss_mb(pid), 1) for pid in granian_workers(app.pid)]
                results[label].setdefault("rss_mb", []).append(rss)  # type: ignore[arg-type]
            finally:
                stop_app(app)
            loads.append(os.getloadavg()[0])
            deadline = time.monotonic() + 15
            while not port_free(args.port) and time.monotonic() < deadline:
                time.sleep(0.5)
    first = configs[0][0]
    print(
        f"\nmedians of {args.rounds} rounds, {args.seconds} s each, {args.connections} "
        f"connections; load average {min(loads):.2f}-{max(loads):.2f}"
    )
    print("| config | page | req/s | p50 ms | p99 ms | app CPU ms/request | req/s vs first |")
    print("|---|---|---|---|---|---|---|")
    summary: dict = {"configs": {c[0]: [c[1], c[2]] for c in configs}, "results": results}
    for label, _, _ in configs:
        for page in pages:
            runs = results[label][page]
            rps = statistics.median(r["rps"] for r in runs)
            base_rps = statistics.median(r["rps"] for r in results[first][page])
            print(
                f"| {label} | {page} | {rps:,.0f} | "
                f"{statistics.median(r['p50_ms'] for r in runs):.1f} | "
                f"{statistics.median(r['p99_ms'] for r in runs):.1f} | "
                f"{statistics.median(r['app_cpu_ms_per_request'] for r in runs):.2f} | "
                f"x{rps / base_rps:.2f} |"
            )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    _ = ROOT


if __name__ == "__main__":
    main()
