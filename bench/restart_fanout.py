"""A restart in the middle of a big fan-out loses nothing (issue 12), measured on a seeded database.

The most-followed account posts through the web form of `microblog serve` (production-like: DEBUG
off, a SECRET_KEY, plain HTTP on loopback); once part of its followers' feeds have the post, the
app gets Ctrl-C (SIGINT to its process group, as a terminal sends); then it is started again and
the script waits until the fan-out is finished. It reports how long the stop took, what was
written before it, the time from the restart to completion, and checks that every active
follower's feed has the post exactly once. The account is fanned out for this run only
(FANOUT_CELEBRITY_FOLLOWERS raised, its `is_celebrity` flag cleared, then set back), and the post
is removed at the end, so the database can be used again.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mb_seed .venv/bin/python bench/restart_fanout.py

Settings (environment): RESTART_AT (0.3: the share of the followers written when Ctrl-C comes),
BENCH_PORT (8771).
"""

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
SEED_PASSWORD = "seeded-password-1"  # every seeded account's (microblog.seeding.seeder)


def app_env() -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", "bench-only-" + "x" * 50),
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "RATELIMIT_ENABLED": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        # The top account is a celebrity (merged at read time): fan it out for this run.
        "FANOUT_CELEBRITY_FOLLOWERS": str(10**9),
    }


def start(port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [str(BIN / "microblog"), "serve", "--stream", "off", "--port", str(port)]
    app = subprocess.Popen(
        command, env=app_env(), stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert app.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=2):
                return app
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the app did not answer /up")


def post_as(base: str, username: str, password: str, content: str) -> None:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )

    def token(path: str) -> str:
        with opener.open(base + path, timeout=30) as response:
            found = re.search(
                r'name="csrfmiddlewaretoken" value="([^"]+)"', response.read().decode()
            )
        assert found, f"no form on {path}"
        return found.group(1)

    def submit(path: str, form: dict[str, str]) -> None:
        data = urllib.parse.urlencode(form).encode()
        with opener.open(base + path, data=data, timeout=60) as response:
            assert response.status == 200, response.status

    submit("/login", {"csrfmiddlewaretoken": token("/login"), "username": username,
                      "password": password})  # fmt: skip
    submit("/posts", {"csrfmiddlewaretoken": token("/"), "content": content, "next": "/"})


def main() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a seeded PostgreSQL bench database.")
    port = int(os.environ.get("BENCH_PORT", "8771"))
    cut_at = float(os.environ.get("RESTART_AT", "0.3"))
    base = f"http://127.0.0.1:{port}"
    log = ROOT / "bench" / "results" / "restart_fanout.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    db = psycopg.connect(url, autocommit=True)

    def one(sql: str, *params: object) -> object:
        row = db.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    top, username = db.execute(
        "SELECT id, username FROM accounts_user ORDER BY followers_count DESC LIMIT 1"
    ).fetchone() or (None, None)
    was_celebrity = one("SELECT is_celebrity FROM accounts_user WHERE id = %s", top)
    active_sql = (
        "SELECT count(*) FROM follows_follow f JOIN accounts_user u ON u.id = f.follower_id "
        "WHERE f.followed_id = %s AND u.last_seen_at >= now() - interval '30 days'"
    )
    active = int(one(active_sql, top))  # type: ignore[call-overload]
    followers = one("SELECT followers_count FROM accounts_user WHERE id = %s", top)
    print(f"top account {username}: {followers:,} followers, {active:,} active")
    content = f"Restart measurement {time.time():.0f}"
    post_id = None
    try:
        db.execute("UPDATE accounts_user SET is_celebrity = false WHERE id = %s", [top])
        app = start(port, log)
        posted = time.monotonic()
        post_as(base, username, SEED_PASSWORD, content)
        post_id = one("SELECT id FROM posts_post WHERE content = %s", content)

        def entries() -> int:
            return int(one("SELECT count(*) FROM timelines_feedentry WHERE post_id = %s", post_id))  # type: ignore[call-overload]

        deadline = time.monotonic() + 600
        while entries() < cut_at * active:
            assert time.monotonic() < deadline and app.poll() is None, "fan-out did not start"
            time.sleep(0.05)
        os.killpg(app.pid, signal.SIGINT)  # Ctrl-C in the terminal running `microblog serve`
        signalled = time.monotonic()
        app.wait(120)
        stopped = time.monotonic()
        at_stop = entries()
        status, workers = db.execute(
            "SELECT status, worker_ids FROM django_tasks_database_dbtaskresult "
            "WHERE task_path = 'microblog.jobs.fan_out_post' AND args_kwargs -> 'args' -> 0 "
            "= to_jsonb(%s::bigint)",
            [post_id],
        ).fetchone() or (None, None)
        done_through = one("SELECT done_through FROM timelines_fanout WHERE post_id = %s", post_id)
        print(
            f"Ctrl-C after {signalled - posted:.1f}s with {at_stop - 1:,} entries written; the app "
            f"stopped {stopped - signalled:.1f}s later; job {status} (workers {len(workers)}), "
            f"progress through follower id {done_through}"
        )
        assert status == "READY", status

        restarted = time.monotonic()
        app = start(port, log)
        try:
            while one(
                "SELECT finished_at IS NULL FROM timelines_fanout WHERE post_id = %s", post_id
            ):
                assert time.monotonic() - restarted < 1800 and app.poll() is None
                time.sleep(0.2)
            completed = time.monotonic()
        finally:
            os.killpg(app.pid, signal.SIGINT)
            app.wait(120)
        final = entries()
        still_active = int(one(active_sql, top))  # type: ignore[call-overload]
        missing = one(
            "SELECT count(*) FROM follows_follow f JOIN accounts_user u ON u.id = f.follower_id "
            "WHERE f.followed_id = %s AND u.last_seen_at >= now() - interval '30 days' AND NOT "
            "EXISTS (SELECT 1 FROM timelines_feedentry e WHERE e.user_id = f.follower_id AND "
            "e.post_id = %s)",
            top,
            post_id,
        )
        distinct = one(
            "SELECT count(DISTINCT user_id) FROM timelines_feedentry WHERE post_id = %s", post_id
        )
        job = db.execute(
            "SELECT status, worker_ids, return_value FROM django_tasks_database_dbtaskresult "
            "WHERE task_path = 'microblog.jobs.fan_out_post' AND args_kwargs -> 'args' -> 0 "
            "= to_jsonb(%s::bigint)",
            [post_id],
        ).fetchone()
        assert job is not None
        print(
            f"restart to completion {completed - restarted:.1f}s (start-up included); the resumed "
            f"run wrote {job[2]:,} entries; {final - 1:,} followers have the post "
            f"({distinct - 1:,} distinct), {still_active:,} active now, {missing} active "  # type: ignore[operator]
            f"follower(s) without it; job {job[0]}, run by {len(job[1])} workers; from the post "
            f"to completion {completed - posted:.1f}s"
        )
        assert missing == 0 and distinct == final and job[0] == "SUCCESSFUL"
    finally:
        if post_id is not None:  # leave the bench database as it was
            db.execute("DELETE FROM timelines_feedentry WHERE post_id = %s", [post_id])
            db.execute("DELETE FROM timelines_fanout WHERE post_id = %s", [post_id])
            db.execute("DELETE FROM posts_post WHERE id = %s", [post_id])
            db.execute(
                "UPDATE accounts_user SET posts_count = posts_count - 1 WHERE id = %s", [top]
            )
        db.execute("UPDATE accounts_user SET is_celebrity = %s WHERE id = %s", [was_celebrity, top])


if __name__ == "__main__":
    main()
