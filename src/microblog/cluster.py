"""The production layout on one machine, from real parts, on loopback (`make cluster`).

    python -m microblog.cluster start|stop|status [--dir DIR]

- HAProxy (deploy/haproxy.cfg) with active health checks on /up, spreading pages over 3 web
  instances (`microblog serve --stream off`) and sending /events/ to the streaming process;
- PostgreSQL: a primary and a streaming replica (initdb and pg_basebackup, as the postgres user
  when run as root), on their own ports, in DIR/pg/;
- PgBouncer in transaction mode (deploy/pgbouncer.ini) between the web instances and the
  primary; the worker and the streaming process connect to the primary directly (LISTEN, long
  jobs), the web instances read pages from the replica (core.replicas);
- one job worker; Redis for rate limits and cache when REDIS_URL is set (passed through).

With `--from-database URL` (or CLUSTER_FROM_DATABASE), a new cluster's database starts as a copy
of an existing one (pg_dump, then pg_restore into the primary, before the replica is cloned from
it), e.g. a database seeded with `microblog seed --preset seed` for measurements
(bench/cluster_bench.py).

Everything lives in DIR (default data/cluster): data folders, logs, the ports and process ids
(state.json), the secret key every instance shares. Ports are picked free on first start and
kept. Nothing installed system-wide is changed, and every process is stopped by the id it was
started with. Tests drive the same class (tests/cluster/).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
WEB_INSTANCES = ("web1", "web2", "web3")
APP_PROCESSES = (*WEB_INSTANCES, "stream", "worker")
DATABASE = "microblog"
PG_SERVERS = ("primary", "replica")

# Applied to both servers (pg_basebackup copies the primary's file to the replica); ports and
# socket folders are given on the command line, so each server keeps its own.
POSTGRESQL_CONF = """
# --- microblog cluster (src/microblog/cluster.py)
listen_addresses = '127.0.0.1'
timezone = 'UTC'
max_connections = 200
wal_level = replica
max_wal_senders = 5
hot_standby = on
hot_standby_feedback = on
shared_preload_libraries = 'pg_stat_statements'
fsync = on
logging_collector = off
"""


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int | None, marker: str) -> bool:
    """Whether `pid` still runs and is the process that was started (its command line holds
    `marker`), so a recycled process id is never signalled."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Cluster:
    root: Path
    from_database: str | None = None  # a database the new cluster's database copies

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.logs = self.root / "logs"
        self.state_file = self.root / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        )
        self.as_postgres = os.geteuid() == 0  # initdb, postgres and pgbouncer refuse root
        self.children: dict[str, subprocess.Popen[bytes]] = {}  # started by this object

    # --- state ----------------------------------------------------------------------------

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(self.state, indent=2) + "\n")

    @property
    def ports(self) -> dict[str, int]:
        ports: dict[str, int] = self.state.setdefault("ports", {})
        return ports

    @property
    def pids(self) -> dict[str, int]:
        pids: dict[str, int] = self.state.setdefault("pids", {})
        return pids

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['lb']}/"

    def pg_url(self, server: str, via_pooler: bool = False) -> str:
        port = self.ports["pgbouncer"] if via_pooler else self.ports[server]
        return f"postgres://postgres@127.0.0.1:{port}/{DATABASE}"

    def allocate_ports(self) -> None:
        names = ["lb", *APP_PROCESSES[:-1], "pgbouncer", *PG_SERVERS]
        taken: set[int] = set()
        for name in names:
            port = self.ports.get(name)
            ours = self.pg_running(name) if name in PG_SERVERS else self.alive(name)
            if port is None or port in taken or not (ours or port_is_free(port)):
                port = free_port()
                while port in taken:
                    port = free_port()
                self.ports[name] = port
            taken.add(port)
        self.save()

    # --- running things -------------------------------------------------------------------

    def _postgres_owned(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            shutil.chown(path, "postgres", "postgres")
        return path

    def run(self, command: list[str], as_postgres: bool = False, **kwargs: Any) -> str:
        user = "postgres" if as_postgres and self.as_postgres else None
        result = subprocess.run(  # noqa: S603 (fixed programs, our own arguments)
            command, user=user, capture_output=True, text=True, check=False, **kwargs
        )
        if result.returncode != 0:
            raise ClusterError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def spawn(self, name: str, command: list[str], env: dict[str, str], **kwargs: Any) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 (fixed programs, our own arguments)
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives `make cluster`; stopped by `make cluster-stop`
            cwd=self.root,
            **kwargs,
        )
        log.close()
        self.children[name] = process
        self.pids[name] = process.pid
        self.save()
        return process.pid

    @staticmethod
    def marker(name: str) -> str:
        return {"lb": "haproxy", "pgbouncer": "pgbouncer"}.get(name, "microblog")

    def alive(self, name: str) -> bool:
        child = self.children.get(name)
        if child is not None:
            # Our own child: its process id cannot be reused until we reap it, so poll() is the
            # whole answer. Its command line is not: `serve` and `stream` exec granian, and
            # /proc/<pid>/cmdline can read empty for a moment during the exec, which made a
            # restarted stream process look "exited" now and then (tests/cluster, under load).
            return child.poll() is None
        return pid_alive(self.pids.get(name), self.marker(name))

    def signal(self, name: str, signum: int) -> None:
        """Signals the process and everything it started (`serve` runs granian and its
        workers): each was started in a session, hence a process group, of its own."""
        if self.alive(name):
            os.killpg(self.pids[name], signum)

    def stop_process(self, name: str, timeout: float = 10) -> None:
        if not self.alive(name):
            return
        pgid = self.pids[name]
        self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while group_alive(pgid) and time.monotonic() < deadline:
            self.alive(name)  # reaps our own child once it exits
            time.sleep(0.1)
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        self.wait_gone(name)

    def kill(self, name: str) -> None:
        """SIGKILL to the process and all it started, as a crash would."""
        self.signal(name, signal.SIGKILL)
        self.wait_gone(name)

    def wait_gone(self, name: str, timeout: float = 10) -> None:
        pgid = self.pids[name]
        deadline = time.monotonic() + timeout
        while (group_alive(pgid) or self.alive(name)) and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- PostgreSQL -----------------------------------------------------------------------

    def pg_bin(self, program: str) -> str:
        bindir = subprocess.run(
            ["pg_config", "--bindir"],  # noqa: S607 (Debian's PostgreSQL, on PATH)
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return str(Path(bindir) / program)

    def pg_dir(self, server: str) -> Path:
        return self.root / "pg" / server

    def pg_running(self, server: str) -> bool:
        pidfile = self.pg_dir(server) / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().split()[0])
        except (ValueError, IndexError):
            return False
        return pid_alive(pid, "postgres")

    def pg_start(self, server: str) -> None:
        if self.pg_running(server):
            return
        sockets = self._postgres_owned(self.root / "pg" / "sockets")
        options = f"-p {self.ports[server]} -k {sockets}"
        self.run(
            [
                self.pg_bin("pg_ctl"),
                "-D",
                str(self.pg_dir(server)),
                "-l",
                str(self.root / "pg" / f"{server}.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            as_postgres=True,
        )

    def pg_stop(self, server: str) -> None:
        if not self.pg_running(server):
            return
        self.run(
            [self.pg_bin("pg_ctl"), "-D", str(self.pg_dir(server)), "-m", "fast", "-w", "stop"],
            as_postgres=True,
        )

    def psql(self, server: str, sql: str, database: str = DATABASE) -> str:
        return self.run(
            [
                "psql",
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.ports[server]),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ]
        ).strip()

    def setup_postgres(self) -> None:
        self._postgres_owned(self.root / "pg")
        primary = self.pg_dir("primary")
        if not (primary / "PG_VERSION").exists():
            self._postgres_owned(primary)
            self.run(
                [
                    self.pg_bin("initdb"),
                    "-D",
                    str(primary),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                ],
                as_postgres=True,
            )
            with (primary / "postgresql.conf").open("a") as conf:
                conf.write(POSTGRESQL_CONF)
        self.pg_start("primary")
        exists = self.psql(
            "primary", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", "postgres"
        )
        if not exists:
            self.psql("primary", f"CREATE DATABASE {DATABASE}", "postgres")
            if self.from_database:
                self.copy_database(self.from_database)
        # Per-statement counters on each server (the tests see where reads went).
        self.psql("primary", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        replica = self.pg_dir("replica")
        if not (replica / "PG_VERSION").exists():
            if replica.exists():
                shutil.rmtree(replica)  # a half-made copy from an interrupted start
            self.run(
                [
                    self.pg_bin("pg_basebackup"),
                    "-D",
                    str(replica),
                    "-R",
                    "-X",
                    "stream",
                    "--checkpoint",
                    "fast",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.ports["primary"]),
                    "-U",
                    "postgres",
                ],
                as_postgres=True,
            )
        self.pg_start("replica")

    def copy_database(self, source: str) -> None:
        """Fills the new (empty) database with a copy of `source`: a parallel dump and restore
        (directory format, 2 jobs, uncompressed), then VACUUM ANALYZE (a restore leaves no
        statistics and no visibility map, so plans and index-only scans would differ from the
        source's)."""
        dump = self.root / "pg" / "from-database.dump"
        shutil.rmtree(dump, ignore_errors=True)
        try:
            # Uncompressed: on a local disk, compressing costs more time than writing.
            self.run(
                [
                    "pg_dump",
                    "--format=directory",
                    "--jobs=2",
                    "--compress=0",
                    "--file",
                    str(dump),
                    source,
                ]
            )
            self.run(
                [
                    "pg_restore",
                    "--jobs=2",
                    "--no-owner",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.ports["primary"]),
                    "-U",
                    "postgres",
                    "-d",
                    DATABASE,
                    str(dump),
                ]
            )
        finally:
            shutil.rmtree(dump, ignore_errors=True)
        self.psql("primary", "VACUUM (ANALYZE)")

    # --- PgBouncer ------------------------------------------------------------------------

    def start_pgbouncer(self) -> None:
        if self.alive("pgbouncer"):
            return
        folder = self._postgres_owned(self.root / "pgbouncer")
        users = folder / "userlist.txt"
        users.write_text('"postgres" ""\n')
        ini = folder / "pgbouncer.ini"
        # Where things are; everything else comes from the shared deploy/pgbouncer.ini.
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.ports['primary']}\n"
            "[pgbouncer]\n"
            f"%include {DEPLOY / 'pgbouncer.ini'}\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.ports['pgbouncer']}\n"
            f"unix_socket_dir = {folder}\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
        )
        for path in (users, ini):
            if self.as_postgres:
                shutil.chown(path, "postgres", "postgres")
        user = "postgres" if self.as_postgres else None
        self.spawn("pgbouncer", ["pgbouncer", str(ini)], dict(os.environ), user=user)
        self.wait_for_port(self.ports["pgbouncer"], "pgbouncer")

    # --- the app ----------------------------------------------------------------------------

    def secret_key(self) -> str:
        path = self.root / "secret_key"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(50))
            path.chmod(0o600)
        return path.read_text().strip()

    def app_env(self, name: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "microblog.settings",
            "DEBUG": "0",
            "SECRET_KEY": self.secret_key(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Plain HTTP on loopback; TLS belongs to the balancer (docs/deploy.md).
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0",
            "TRUSTED_PROXIES": "127.0.0.1/32",
            "INSTANCE_NAME": name,
            "STREAM_URL": f"http://127.0.0.1:{self.ports['stream']}/up",
            "REPLICA_DATABASE_URLS": self.pg_url("replica"),
            "DATA_DIR": str(self.root / "app"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REPLICA_DATABASE_URL", None)
        if name in WEB_INSTANCES:
            env["DATABASE_URL"] = self.pg_url("primary", via_pooler=True)
            env["DB_SERVER_SIDE_BINDING"] = "0"  # no prepared statements through the pooler
        else:
            env["DATABASE_URL"] = self.pg_url("primary")  # LISTEN, long jobs: direct
        return env

    def app_command(self, name: str) -> list[str]:
        python = [sys.executable, "-m", "microblog"]
        if name in WEB_INSTANCES:
            # Pages only (native WSGI); the one job worker is its own process.
            return [
                *python,
                "serve",
                "--stream",
                "off",
                "--port",
                str(self.ports[name]),
                "--job-workers",
                "0",
            ]
        if name == "stream":
            return [*python, "stream", "--port", str(self.ports["stream"])]
        return [*python, "worker"]

    def start_app_process(self, name: str) -> None:
        if self.alive(name):
            return
        self.spawn(name, self.app_command(name), self.app_env(name))

    def migrate(self) -> None:
        env = self.app_env("migrate")
        self.run([sys.executable, "-m", "microblog", "migrate", "--noinput"], env=env)

    # --- the balancer -----------------------------------------------------------------------

    def haproxy_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "LB_BIND": f"127.0.0.1:{self.ports['lb']}",
            "HEALTH_CHECK_HOST": "localhost",
            "STREAM": f"127.0.0.1:{self.ports['stream']}",
            "HAPROXY_STATS_SOCKET": str(self.root / "haproxy.sock"),
        }
        for name in WEB_INSTANCES:
            env[name.upper()] = f"127.0.0.1:{self.ports[name]}"
        env.pop("WEB_DNS_NAME", None)
        return env

    def start_balancer(self) -> None:
        if self.alive("lb"):
            return
        command = ["haproxy", "-f", str(DEPLOY / "haproxy.cfg")]
        self.run([*command, "-c", "-q"], env=self.haproxy_env())
        self.spawn("lb", command, self.haproxy_env())
        self.wait_for_port(self.ports["lb"], "haproxy")

    def balancer_states(self) -> dict[str, str]:
        """`{"web/web1": "UP", ...}` from HAProxy's admin socket."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.root / "haproxy.sock"))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        states = {}
        for line in lines[1:]:
            if not line:
                continue
            row = dict(zip(header, line.split(","), strict=False))
            if row["svname"] not in {"FRONTEND", "BACKEND"}:
                states[f"{row['pxname']}/{row['svname']}"] = row["status"]
        return states

    # --- waiting --------------------------------------------------------------------------

    def wait_for_port(self, port: int, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise ClusterError(f"{what} did not listen on port {port} within {timeout:.0f}s")

    def wait_until_up(self, names: tuple[str, ...] = APP_PROCESSES, timeout: float = 60) -> None:
        """Until each web instance and the streaming process answer /up directly, and the
        balancer has marked every one of them UP."""
        deadline = time.monotonic() + timeout
        pending = [name for name in names if name != "worker"]
        while pending and time.monotonic() < deadline:
            name = pending[0]
            if name != "worker" and not self.alive(name):
                raise ClusterError(f"{name} exited; see {self.logs / (name + '.log')}")
            try:
                status, _ = http_get(f"http://localhost:{self.ports[name]}/up", timeout=1)
            except OSError:
                status = 0
            if status == 200:
                pending.pop(0)
            else:
                time.sleep(0.2)
        if pending:
            raise ClusterError(f"not answering /up: {', '.join(pending)}")
        if self.alive("lb"):
            self.wait_for_balancer(
                {f"web/{n}" for n in names if n in WEB_INSTANCES}
                | ({"stream/stream1"} if "stream" in names else set()),
                "UP",
                deadline - time.monotonic(),
            )

    def wait_for_balancer(self, servers: set[str], state: str, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1)
        while time.monotonic() < deadline:
            states = self.balancer_states()
            if all(states.get(server, "").startswith(state) for server in servers):
                return
            time.sleep(0.2)
        raise ClusterError(f"balancer did not mark {sorted(servers)} {state}: {states}")

    # --- the commands -----------------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.allocate_ports()
        self.setup_postgres()
        self.migrate()
        self.start_pgbouncer()
        for name in APP_PROCESSES:
            self.start_app_process(name)
        self.wait_until_up(tuple(name for name in APP_PROCESSES if name != "lb"))
        self.start_balancer()
        self.wait_until_up()

    def stop(self) -> None:
        for name in ("lb", *APP_PROCESSES, "pgbouncer"):
            self.stop_process(name)
        for server in reversed(PG_SERVERS):
            self.pg_stop(server)

    def status(self) -> dict[str, bool]:
        running = {name: self.alive(name) for name in ("lb", *APP_PROCESSES, "pgbouncer")}
        running.update({server: self.pg_running(server) for server in PG_SERVERS})
        return running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m microblog.cluster", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("CLUSTER_DIR", "data/cluster")),
        help="where the cluster keeps everything (default data/cluster)",
    )
    parser.add_argument(
        "--from-database",
        default=os.environ.get("CLUSTER_FROM_DATABASE") or None,
        metavar="URL",
        help="start a new cluster's database as a copy of this one (pg_dump / pg_restore)",
    )
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir, from_database=args.from_database)
    try:
        if args.command == "start":
            cluster.start()
            redis = "Redis at REDIS_URL" if os.environ.get("REDIS_URL") else "no Redis"
            print(
                f"Cluster running: balancer, 3 web instances, stream, worker, PgBouncer, "
                f"PostgreSQL primary + replica, {redis}.\n"
                f"Logs and data: {cluster.root}\n"
                f"Open {cluster.url}  (stop with `make cluster-stop`)"
            )
        elif args.command == "stop":
            cluster.stop()
            print("Cluster stopped.")
        else:
            for name, running in cluster.status().items():
                print(f"{name:10} {'running' if running else 'stopped'}")
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
