"""Faults, tested (issue 6), against a PostgreSQL server this module starts and stops itself
(`initdb` into a temporary directory, `pg_ctl` on a free port on 127.0.0.1), so a test can stop the
database under the app without touching anyone else's:

- the database stopped under load: every page answers our 503 page (JSON for JSON clients) at
  once, never a 500 or a hang; `/up` stays 200 and `/health` says down; when the database is back
  the app recovers by itself, every post that was acknowledged is there, and the job worker
  carries on;
- a worker SIGKILLed in the middle of a fan-out: the next worker finishes its jobs, exactly once;
- the streaming process SIGKILLed: an open For You page reconnects and catches up with the post
  made while it was down.

The app runs as an operator runs it in production (docs/operations.md): production settings
(DEBUG off, Argon2, HTTPS settings relaxed for plain http on 127.0.0.1), `microblog serve --stream
off` for the pages and a job worker, `microblog stream` for `/events/` behind a reverse proxy that
routes by path, `microblog worker` processes. Users sign up, log in and post through the forms.

PostgreSQL pass only (`postgres_only`): the SQLite pass skips them. They need the PostgreSQL
server binaries (/usr/lib/postgresql/*/bin) and, as root, `runuser` and a `postgres` user; without
them they are skipped, and under REQUIRE_POSTGRES=1 (CI's PostgreSQL pass) they fail instead.
"""

import asyncio
import contextlib
import http.cookiejar
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from tests.conftest import PASSWORD, log_in
from tests.jobs.helpers import worker_command
from tests.stream.helpers import MICROBLOG, ROOT, free_port

with contextlib.suppress(ImportError):  # the dev extra installs it; test_browser skips without
    from playwright.sync_api import BrowserContext, expect

pytestmark = pytest.mark.postgres_only

REQUEST_TIMEOUT = 10.0  # no answer within this is a hang, and fails the test
UNAVAILABLE = "The service is temporarily unavailable"
SECRET_KEY = "faults-" + secrets.token_urlsafe(24)


# --- A PostgreSQL server of the test's own --------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REQUIRE_POSTGRES=1 but the fault tests cannot start PostgreSQL: {reason}")
    pytest.skip(f"fault tests need their own PostgreSQL server: {reason}")


def _postgres_bin() -> Path | None:
    def version(path: Path) -> int:
        return int(path.parent.name) if path.parent.name.isdigit() else 0

    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


class PgServer:
    """`initdb`, `pg_ctl start/stop` on 127.0.0.1:`port`; as the postgres user when we are root
    (PostgreSQL refuses to run as root)."""

    def __init__(self, bindir: Path, root: Path, run_as: list[str]) -> None:
        self.bindir, self.root, self.run_as = bindir, root, run_as
        self.data = root / "data"
        self.log = root / "postgresql.log"
        self.port = free_port()
        self.running = False

    def _run(self, program: str, *args: str, timeout: float = 90) -> None:
        result = subprocess.run(
            [*self.run_as, str(self.bindir / program), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{program} {args}: {result.stdout}{result.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--no-locale")  # fmt: skip

    def start(self) -> float:
        """Starts the server; returns the seconds `pg_ctl start -w` took (crash recovery
        included after an immediate stop)."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
        )
        began = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")  # fmt: skip
        self.running = True
        return time.monotonic() - began

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: every server process exits at once, no checkpoint (as in a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10)

    def rows(self, dbname: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            return conn.execute(sql, params).fetchall()

    def database(self, name: str) -> str:
        """A new database, a copy of the migrated template; its URL."""
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE mb_template')
        return self.url(name)


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    bindir = _postgres_bin()
    if bindir is None:
        _unavailable("no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH")
    assert bindir is not None
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="mb-faults-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            postgres = pwd.getpwnam("postgres")
        except KeyError:
            postgres = None
        if runuser is None or postgres is None:
            shutil.rmtree(root, ignore_errors=True)
            _unavailable("running as root needs `runuser` and a `postgres` user")
        assert runuser is not None and postgres is not None
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
        run_as = [runuser, "-u", "postgres", "--"]
    server = PgServer(bindir, root, run_as)
    try:
        server.init()
        server.start()
        with server.connect() as conn:
            conn.execute("CREATE DATABASE mb_template")
        subprocess.run(
            [*MICROBLOG, "migrate", "--noinput", "-v", "0"],
            env=app_env(server.url("mb_template")),
            cwd=ROOT,
            check=True,
            timeout=180,
        )
        yield server
    finally:
        if server.running:
            with contextlib.suppress(Exception):
                server.stop("fast")
        shutil.rmtree(root, ignore_errors=True)


# --- The app, as processes -------------------------------------------------------------------


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    """Production settings on `database_url`, with plain http on 127.0.0.1 allowed."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DJANGO_SETTINGS_MODULE",
            "PROMETHEUS_MULTIPROC_DIR",
            "TEST_TASKS_BACKEND",
            "TASKS_BACKEND",
            "STREAM_URL",
            "STREAM_PUBLIC_URL",
            "REPLICA_DATABASE_URL",
            "REDIS_URL",
        }
    }
    env.update(
        DJANGO_SETTINGS_MODULE="microblog.settings",
        DEBUG="0",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0",
        RATELIMIT_ENABLED="0",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Process:
    """A process of the app, its output in a log file; stopped (by its own PID, or its own
    process group when started in one) at the end."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, group: bool = False):
        self.command, self.log, self.group = command, log, group
        self.output: IO[bytes] = log.open("ab")
        self.popen = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=self.output, stderr=subprocess.STDOUT,
            start_new_session=group,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_up(self, port: int, timeout: float = 30) -> str:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive(), f"{self.command} exited:\n{_tail(self.log)}"
            try:
                with urllib.request.urlopen(base + "/up", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return base
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{self.command} did not answer /up"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the process (and, when it leads one, its process group) dies at once."""
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        else:
            self.popen.kill()
        self.popen.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.group:  # workers left behind by a killed leader
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.output.close()


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path, port: int | None = None, group: bool = False
) -> Iterator[Process]:
    process = Process(command, env, log, group)
    try:
        if port is not None:
            process.wait_for_up(port)
        yield process
    finally:
        process.stop()
        print(f"--- {' '.join(command[2:])} (last lines of its log)\n{_tail(log)}")


def django_shell(env: dict[str, str], code: str) -> str:
    """Runs `code` in `microblog shell` (the services, with the settings of `env`)."""
    result = subprocess.run(
        [*MICROBLOG, "shell", "-c", code],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- A signed-in user, over HTTP ---------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: Message
    body: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer to look at (a post's acknowledgement)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class WebUser:
    """One user's cookies, requests through the real forms; every request has a timeout."""

    def __init__(self, base: str, name: str) -> None:
        self.base, self.name = base, name
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )
        self.csrf = ""

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> Answer:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(  # noqa: S310 (self.base is http://127.0.0.1:port)
            self.base + path, data=data, method=method, headers=headers
        )
        try:
            with self.opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                return Answer(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.headers, error.read().decode(errors="replace"))

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, **headers)

    def sign_up(self) -> "WebUser":
        token = csrf_token(self.get("/signup").body)
        answer = self.request(
            "POST",
            "/signup",
            {
                "csrfmiddlewaretoken": token,
                "username": self.name,
                "password": PASSWORD,
                "password_confirmation": PASSWORD,
            },
        )
        assert answer.status == 302, answer.body
        home = self.get("/")  # the log-in rotated the CSRF token: the new one is in the form
        assert home.status == 200
        self.csrf = csrf_token(home.body)
        return self

    def post(self, content: str) -> Answer:
        form = {"csrfmiddlewaretoken": self.csrf, "content": content, "next": "/"}
        return self.request("POST", "/posts", form)

    def follow(self, username: str) -> Answer:
        return self.request("POST", f"/@{username}/follow", {"csrfmiddlewaretoken": self.csrf})


# --- Load: signed-in users posting and reading, from threads ---------------------------------


@dataclass
class Attempt:
    user: str
    kind: str  # "post" or "read"
    path: str
    content: str | None
    started: float
    ended: float
    status: int | None  # None: no answer (timeout, connection refused or reset)
    error: str | None
    body: str
    retry_after: str | None


@dataclass
class Load:
    """Writers post (through the form) and read pages; a reader reads. Bounded: at most
    `max_rounds` rounds per user and `max_seconds` in all, whichever comes first."""

    writers: list[WebUser]
    reader: WebUser
    max_rounds: int = 3000
    max_seconds: float = 120
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    READS = ("/", "/all", "/following")

    def start(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for user in [*self.writers, self.reader]:
            thread = threading.Thread(target=self._run, args=(user, deadline), daemon=True)
            self.threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT * 2 + 5)
        assert not any(thread.is_alive() for thread in self.threads), "load threads hang"

    def _run(self, user: WebUser, deadline: float) -> None:
        writes = user is not self.reader
        for round_ in range(self.max_rounds):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return
            if writes:
                self._try(user, "post", "/posts", f"{user.name} says {round_}")
            self._try(user, "read", self.READS[round_ % len(self.READS)], None)
            self.stopping.wait(0.03)

    def _try(self, user: WebUser, kind: str, path: str, content: str | None) -> None:
        started = time.monotonic()
        status, error, body, retry_after = None, None, "", None
        try:
            answer = user.post(content) if content is not None else user.get(path)
            status, body = answer.status, answer.body
            retry_after = answer.headers.get("Retry-After")
        except Exception as exc:  # a timeout or a broken connection: recorded, and fails the test
            error = repr(exc)
        attempt = Attempt(
            user.name, kind, path, content, started, time.monotonic(), status, error, body,
            retry_after,
        )  # fmt: skip
        with self.lock:
            self.attempts.append(attempt)

    def snapshot(self) -> list[Attempt]:
        with self.lock:
            return list(self.attempts)

    def posts(self, status: int, after: float = 0.0) -> list[Attempt]:
        return [
            a
            for a in self.snapshot()
            if a.kind == "post" and a.status == status and a.started >= after
        ]

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            time.sleep(0.05)


def wait_for(check: Callable[[], Any], what: str, timeout: float, interval: float = 0.05) -> Any:
    """Calls `check` until it returns something truthy (returned), for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting until {what}"
        time.sleep(interval)


def unfinished_jobs(pg: PgServer, db: str) -> int:
    return int(
        pg.rows(
            db,
            "SELECT count(*) FROM django_tasks_database_dbtaskresult "
            "WHERE status IN ('READY', 'RUNNING')",
        )[0][0]
    )


# --- The database stopped under load ---------------------------------------------------------

STAR_FANS = 60_000
FOLLOW_THE_STAR = f"""
from microblog.accounts.models import User
from tests.jobs.helpers import bulk_followers

bulk_followers(User.objects.get(username="star"), {STAR_FANS}, "fan")
"""
STAR_ENTRIES_SQL = """
SELECT count(*) FROM timelines_feedentry f JOIN posts_post p ON p.id = f.post_id
JOIN accounts_user u ON u.id = p.author_id WHERE u.username = 'star'
"""


def test_database_stopped_under_load_answers_503_and_recovers_by_itself(
    pg: PgServer, tmp_path: Path
) -> None:
    db = "mb_outage"
    url = pg.database(db)
    port = free_port()
    env = app_env(
        url,
        JOB_RETRY_BASE_SECONDS="1",
        # A fan-out long enough to be cut by the outage (see the star below).
        FANOUT_CHUNK_SIZE="200",
        FANOUT_CELEBRITY_FOLLOWERS="1000000",
    )
    serve = [*MICROBLOG, "serve", "--stream", "off", "--port", str(port), "--job-workers", "1"]
    with running(serve, env, tmp_path / "serve.log", port=port) as app:
        base = f"http://127.0.0.1:{port}"
        writers = [WebUser(base, f"writer{i}").sign_up() for i in range(3)]
        reader = WebUser(base, "reader").sign_up()
        watcher = WebUser(base, "watcher").sign_up()  # looks at pages during the outage
        for writer in writers:
            assert reader.follow(writer.name).status == 302
        probe = WebUser(base, "probe")  # signed out, like a load balancer's probe
        star = WebUser(base, "star").sign_up()
        django_shell(env, FOLLOW_THE_STAR)

        def star_entries() -> int:
            return int(pg.rows(db, STAR_ENTRIES_SQL)[0][0])

        load = Load(writers, reader)
        load.start()
        try:
            load.wait_until(
                lambda: all(
                    len([a for a in load.posts(302) if a.user == w.name]) >= 2 for w in writers
                ),
                "every writer has posted",
            )

            # The star posts, and the database goes away, as in a crash, while the worker is
            # copying the post into the fans' feeds.
            assert star.post("To all my fans").status == 302
            wait_for(
                lambda: 1 < star_entries() < STAR_FANS + 1,
                "the star's fan-out has begun",
                timeout=30,
                interval=0.002,
            )
            stop_began = time.monotonic()
            pg.stop("immediate")
            stopped = time.monotonic()

            # Pages: our 503 page at once, with Retry-After; JSON for JSON clients.
            page = watcher.get("/")
            assert page.status == 503, page.body
            assert UNAVAILABLE in page.body and "text/html" in page.headers["Content-Type"]
            assert page.headers["Retry-After"] == "5"
            assert "If you were posting, check whether your post appears" in page.body
            as_json = watcher.get("/all", Accept="application/json")
            assert as_json.status == 503
            assert json.loads(as_json.body)["error"]["status"] == 503
            assert UNAVAILABLE in json.loads(as_json.body)["error"]["message"]
            assert as_json.headers["Retry-After"] == "5"
            refused = watcher.post("Written while the database is down")
            assert refused.status == 503 and UNAVAILABLE in refused.body
            # Liveness stays up (a restart would not help); /health says the database is down.
            up = probe.get("/up")
            assert (up.status, up.body) == (200, "ok\n")
            health = probe.get("/health")
            assert health.status == 503
            assert json.loads(health.body)["status"] == "down"
            assert json.loads(health.body)["checks"]["database"]["ok"] is False

            # Every writer tries to post while it is down, and is refused.
            load.wait_until(
                lambda: all(
                    any(a.user == w.name for a in load.posts(503, after=stopped)) for w in writers
                ),
                "every writer has been refused during the outage",
            )
            time.sleep(2.0)  # more of the load against the stopped database

            # The database comes back; nobody restarts the app.
            restart_began = time.monotonic()
            pg_start_seconds = pg.start()
            restarted = time.monotonic()
            wait_for(lambda: watcher.get("/").status == 200, "pages answer again", timeout=20)
            recovered = time.monotonic()
            load.wait_until(
                lambda: all(
                    len([a for a in load.posts(302, after=recovered) if a.user == w.name]) >= 3
                    for w in writers
                ),
                "every writer posts again",
            )
        finally:
            load.stop()

        # The job worker survived the outage (`microblog serve` stops the whole app when a
        # child exits) and fans out new posts again: the reader's For You shows one.
        assert app.alive(), "microblog serve exited during the outage"
        assert writers[0].post("First post after the outage").status == 302
        posted = time.monotonic()
        wait_for(
            lambda: "First post after the outage" in reader.get("/").body,
            "the reader's For You shows the new post (fanned out by the worker)",
            timeout=30,
        )
        fanned_out = time.monotonic()
        health_after = json.loads(probe.get("/health").body)
        assert health_after["checks"]["database"]["ok"] is True
        failed_attempts = pg.rows(
            db, "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status = 'FAILED'"
        )[0][0]

        attempts = load.snapshot()
        # Never a hang, never a 500: every request got an answer, and a clear one.
        assert [a for a in attempts if a.error] == []
        unexpected = [a for a in attempts if a.status not in {200, 302, 503}]
        for a in unexpected:
            text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", a.body))
            print(f"UNEXPECTED {a.kind} {a.path} {a.status}: {text[:1500]}")
        assert unexpected == [], [(a.kind, a.path, a.status, a.body[:2000]) for a in unexpected]
        unavailable = [a for a in attempts if a.status == 503]
        assert unavailable, "the load never met the outage"
        assert all(UNAVAILABLE in a.body and a.retry_after == "5" for a in unavailable)
        assert max(a.ended - a.started for a in attempts) < REQUEST_TIMEOUT

        # No acknowledged post was lost; none made while the database was down exists.
        acknowledged = {a.content for a in attempts if a.kind == "post" and a.status == 302}
        during = {
            a.content
            for a in attempts
            if a.kind == "post" and a.started > stopped and a.ended < restart_began
        }
        assert during and all(a.status == 503 for a in attempts if a.content in during), (
            "a post made while the database was down was not refused"
        )
        stored = {
            content
            for (content,) in pg.rows(
                db, "SELECT content FROM posts_post WHERE content LIKE %s", ["writer%"]
            )
        }
        assert acknowledged - stored == set(), "acknowledged posts were lost"
        assert during & stored == set()

        # Every acknowledged post reaches the follower's stored feed once the jobs are done.
        wait_for(lambda: unfinished_jobs(pg, db) == 0, "the job queue drains", timeout=60)
        in_feed = {
            content
            for (content,) in pg.rows(
                db,
                "SELECT p.content FROM timelines_feedentry f JOIN posts_post p ON p.id = f.post_id"
                " JOIN accounts_user u ON u.id = f.user_id WHERE u.username = 'reader'",
            )
        }
        assert acknowledged - in_feed == set(), "acknowledged posts missing from a feed"
        # The fan-out the outage interrupted was run again: every fan has the star's post, once
        # (the primary key forbids duplicates; the count proves none is missing).
        assert star_entries() == STAR_FANS + 1

        print(
            f"FAULTS database: outage {restart_began - stop_began:.1f}s; pg_ctl start "
            f"{pg_start_seconds:.2f}s; pages back {recovered - restarted:.2f}s after the server "
            f"accepted connections; {len(attempts)} requests, {len(unavailable)} answered 503, "
            f"{len(acknowledged)} posts acknowledged; a post made {posted - restarted:.1f}s after "
            f"the restart was in a follower's feed {fanned_out - posted:.1f}s later; /health "
            f"{health_after['status']} ({failed_attempts} failed job attempts)"
        )


# --- A worker killed mid fan-out --------------------------------------------------------------

FOLLOWERS = 30_000
POSTS = 3

SETUP_FAN_OUT = f"""
import json
from django.utils import timezone
from microblog.accounts.models import User
from microblog.posts.services import post_create
from tests.jobs.helpers import bulk_followers

author = User.objects.create_user(username="star", password=None, last_seen_at=timezone.now())
bulk_followers(author, {FOLLOWERS}, "fan")
print(json.dumps([post_create(author=author, content=f"to every fan, {{n}}").id
                  for n in range({POSTS})]))
"""


def test_a_killed_workers_jobs_are_finished_by_the_next_worker_exactly_once(
    pg: PgServer, tmp_path: Path
) -> None:
    db = "mb_worker"
    env = app_env(pg.database(db), FANOUT_CHUNK_SIZE="500", FANOUT_CELEBRITY_FOLLOWERS="1000000")
    post_ids: list[int] = json.loads(django_shell(env, SETUP_FAN_OUT).strip().splitlines()[-1])
    entries_sql = (
        "SELECT post_id, count(*) FROM timelines_feedentry WHERE post_id = ANY(%s) GROUP BY 1"
    )

    def entries() -> dict[int, int]:
        return {post: n for post, n in pg.rows(db, entries_sql, [post_ids])}

    complete = FOLLOWERS + 1  # every fan once, and the author's own entry
    assert entries() == dict.fromkeys(post_ids, 1)  # jobs queued, nothing fanned out yet

    worker = [*worker_command("--no-scheduler", "--interval", "0.05")]
    with running(worker, env, tmp_path / "worker1.log") as first:
        wait_for(
            lambda: any(1 < n < complete for n in entries().values()),
            "the first worker is in the middle of a fan-out",
            timeout=60,
            interval=0.002,
        )
        first.kill()
    at_kill = entries()
    assert any(1 < n < complete for n in at_kill.values()), f"not cut mid-way: {at_kill}"
    running_jobs = pg.rows(
        db,
        "SELECT id, worker_ids FROM django_tasks_database_dbtaskresult WHERE status = 'RUNNING'",
    )
    assert len(running_jobs) == 1, running_jobs  # left behind by the dead worker
    killed_job, (dead_worker,) = running_jobs[0][0], running_jobs[0][1]

    started = time.monotonic()
    with running(worker, env, tmp_path / "worker2.log") as second:
        wait_for(lambda: unfinished_jobs(pg, db) == 0, "the second worker drains", timeout=120)
        drained = time.monotonic()
        assert second.alive()

    # Every fan got every post exactly once (the primary key forbids duplicates; the count
    # proves none is missing), every job succeeded once, none failed.
    assert entries() == dict.fromkeys(post_ids, complete)
    jobs = pg.rows(
        db,
        "SELECT id, status, worker_ids FROM django_tasks_database_dbtaskresult "
        "WHERE task_path = 'microblog.jobs.fan_out_post'",
    )
    assert len(jobs) == POSTS
    assert {status for _, status, _ in jobs} == {"SUCCESSFUL"}
    resumed = next(ids for job, _, ids in jobs if job == killed_job)
    assert len(resumed) == 2 and resumed[0] == dead_worker != resumed[1]
    followers = pg.rows(
        db,
        "SELECT count(*) FROM follows_follow f JOIN accounts_user u ON u.id = f.followed_id "
        "WHERE u.username = 'star'",
    )[0][0]
    assert followers == FOLLOWERS
    print(
        f"FAULTS worker: killed with {sum(at_kill.values()) - POSTS} of {POSTS * FOLLOWERS} "
        f"entries written; the next worker finished the {POSTS} fan-outs in "
        f"{drained - started:.1f}s (its start-up included)"
    )


# --- The streaming process killed --------------------------------------------------------------


class Proxy:
    """A reverse proxy as an operator puts in front of the app (nginx, a load balancer): `/events`
    to the streaming process, the rest to the pages, one request per connection; 502 when the
    upstream cannot be reached, as nginx answers. Runs its own event loop in a thread."""

    def __init__(self, pages_port: int, stream_port: int) -> None:
        self.pages_port, self.stream_port = pages_port, stream_port
        self.bad_gateway: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> "Proxy":
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", 0), self.loop
        ).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @staticmethod
    def _close_header(head: bytes) -> bytes:
        lines = head.split(b"\r\n")
        kept = [
            line
            for line in lines[1:]
            if not line.lower().startswith((b"connection:", b"keep-alive:"))
        ]
        return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, target: asyncio.StreamWriter, head: bool = False
    ) -> None:
        """Copies until either side closes; with `head`, a response: its head gets
        `Connection: close`."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if head:
                target.write(Proxy._close_header((await source.readuntil(b"\r\n\r\n"))[:-4]))
            for _ in range(10_000_000):
                data = await source.read(65536)
                if not data:
                    return
                target.write(data)
                await target.drain()

    async def handle(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream_writer: asyncio.StreamWriter | None = None
        pipes: set[asyncio.Task[None]] = set()
        try:
            head = (await asyncio.wait_for(client.readuntil(b"\r\n\r\n"), 30))[:-4]
            path = head.split(b" ", 2)[1].decode("latin-1")
            port = self.stream_port if path.startswith("/events") else self.pages_port
            try:
                upstream, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                self.bad_gateway.append(path)
                to_client.write(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 12\r\nConnection: close\r\n\r\nBad gateway\n"
                )
                await to_client.drain()
                return
            upstream_writer.write(self._close_header(head))
            # Until either side is done: the response has been sent, or the client went away
            # (then the upstream sees the disconnect, as behind nginx).
            pipes = {
                asyncio.ensure_future(self._pipe(client, upstream_writer)),
                asyncio.ensure_future(self._pipe(upstream, to_client, head=True)),
            }
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # the client went away before sending its request
        finally:
            for task in pipes:
                task.cancel()
            for writer in (upstream_writer, to_client):
                if writer is not None:
                    writer.close()


@pytest.mark.browser
def test_a_killed_streaming_process_is_reconnected_to_and_caught_up(
    pg: PgServer,
    tmp_path: Path,
    browser_context: Callable[..., "BrowserContext"],
) -> None:
    url = pg.database("mb_stream")
    pages_port, stream_port = free_port(), free_port()
    env = app_env(
        url, STREAM_URL=f"http://127.0.0.1:{stream_port}/up", STREAM_HEARTBEAT_SECONDS="1"
    )
    pages = [*MICROBLOG, "serve", "--stream", "off", "--port", str(pages_port)]
    stream_command = [*MICROBLOG, "stream", "--port", str(stream_port)]
    stream_log = tmp_path / "stream.log"
    with (
        running(pages, env, tmp_path / "pages.log", port=pages_port),
        running(stream_command, env, stream_log, port=stream_port, group=True) as stream,
        Proxy(pages_port, stream_port) as proxy,
    ):
        base = f"http://127.0.0.1:{proxy.port}"
        author = WebUser(base, "author").sign_up()
        reader = WebUser(base, "reader").sign_up()
        assert reader.follow("author").status == 302
        assert author.post("Before the crash").status == 302

        context = browser_context(base)
        try:
            page = context.new_page()
            log_in(page, "reader")
            feed = page.locator(".feed article.post")
            expect(feed).to_have_count(1)
            button = page.locator("[data-new-posts]")
            # Connected: a new post is announced live.
            assert author.post("Live before the crash").status == 302
            expect(button).to_be_visible(timeout=5_000)
            expect(button).to_have_text("1 new post")
            button.click()
            expect(feed).to_have_count(2)
            expect(button).to_be_hidden()

            # The streaming process dies (SIGKILL: no goodbye to its clients).
            stream.kill()
            killed = time.monotonic()
            assert author.post("Posted while the stream was down").status == 302
            health = json.loads(reader.get("/health").body)
            assert health["status"] == "degraded" and health["checks"]["stream"]["ok"] is False
            # The browser tries again and meets the proxy's 502: an EventSource gives up after
            # an error answer, so the page must open a new one itself.
            wait_for(
                lambda: any(path.startswith("/events") for path in proxy.bad_gateway),
                "the page tries to reconnect while the stream is down",
                timeout=15,
            )

            # The operator (or systemd) starts it again.
            restarted = time.monotonic()
            restarted_process = Process(stream_command, env, stream_log, group=True)
            try:
                restarted_process.wait_for_up(stream_port)
                answering = time.monotonic()
                # (The button keeps its last text while hidden: visible is what counts.)
                expect(button).to_be_visible(timeout=30_000)
                reconnected = time.monotonic()
                expect(button).to_have_text("1 new post")
                button.click()
                expect(feed).to_have_count(3)
                expect(feed.first).to_contain_text("Posted while the stream was down")
                expect(
                    page.locator(".feed article.post", has_text="Posted while the stream was down")
                ).to_have_count(1)
                expect(button).to_be_hidden()
                # And live again.
                assert author.post("Live after the restart").status == 302
                expect(button).to_be_visible(timeout=5_000)
                expect(button).to_have_text("1 new post")
            finally:
                context.close()  # first: a stream with no client stops at once
                restarted_process.stop()
        finally:
            context.close()
        print(
            f"FAULTS stream: down {restarted - killed:.1f}s; the page announced the missed post "
            f"{reconnected - restarted:.1f}s after the stream was started again "
            f"({reconnected - answering:.1f}s after it answered /up)"
        )
