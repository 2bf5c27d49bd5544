"""The deploy bundle (deploy/): the compose file is valid, and it and `make cluster` run the same
balancer and PgBouncer configuration files."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from microblog.cluster import DEPLOY

ROOT = Path(__file__).resolve().parents[2]


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI_REQUIRE_DEPLOY_TOOLS") == "1":
            pytest.fail(f"{program} is not installed")
        pytest.skip(f"{program} is not installed (apt-get install haproxy docker-compose)")
    return path


def compose(*args: str) -> str:
    """`docker-compose ... config`: the file's schema checked, variables filled from env.example
    (no daemon is needed, nothing is pulled)."""
    result = subprocess.run(
        [need("docker-compose"), "--env-file", str(DEPLOY / "env.example"),
         "-f", str(DEPLOY / "compose.yaml"), "config", *args],
        env={**os.environ, "MICROBLOG_ENV_FILE": "env.example"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def service(config: str, name: str) -> str:
    """One service's block of `docker-compose config`'s output (services sorted, 2-space keys)."""
    block = config.split(f"\n  {name}:\n", 1)[1]
    return re.split(r"\n  [a-z][a-z-]*:\n", block, maxsplit=1)[0]


def test_the_compose_file_is_valid_and_runs_the_whole_layout():
    assert set(compose("--services").split()) == {
        "lb", "web", "stream", "worker", "migrate", "pgbouncer", "db-primary", "db-replica",
        "redis",
    }  # fmt: skip
    config = compose()
    web = service(config, "web")
    assert "ports:" not in web and "container_name" not in web  # scales with --scale web=3
    assert "@pgbouncer:6432/microblog" in web
    assert "DB_SERVER_SIDE_BINDING: '0'" in web
    assert "@db-replica:5432/microblog" in web
    for direct in ("stream", "worker"):
        assert "@db-primary:5432/microblog" in service(config, direct)
    for name in ("web", "stream", "db-primary", "db-replica"):
        assert "healthcheck:" in service(config, name)


def test_compose_mounts_the_same_balancer_and_pooler_files_as_make_cluster():
    config = compose()
    assert f"- {DEPLOY / 'haproxy.cfg'}:/usr/local/etc/haproxy/haproxy.cfg:ro" in service(
        config, "lb"
    )
    assert f"- {DEPLOY / 'pgbouncer.ini'}:/etc/pgbouncer/common.ini:ro" in service(
        config, "pgbouncer"
    )
    assert "%include /etc/pgbouncer/common.ini" in (DEPLOY / "pgbouncer-compose.ini").read_text()


@pytest.mark.parametrize("where", ["make cluster", "compose"])
def test_haproxy_accepts_the_balancer_file(where):
    env = {**os.environ, "LB_BIND": "127.0.0.1:8080", "HEALTH_CHECK_HOST": "localhost",
           "STREAM": "127.0.0.1:8001"}  # fmt: skip
    if where == "compose":
        env.update(WEB_DNS_NAME="web", WEB_PORT="8000", WEB_SLOTS="10")
    else:
        env.update(WEB1="127.0.0.1:8101", WEB2="127.0.0.1:8102", WEB3="127.0.0.1:8103")
    result = subprocess.run(
        [need("haproxy"), "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_the_image_runs_as_a_user_without_compilers():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    final = dockerfile.split("\nFROM ")[-1]
    assert "AS build" in dockerfile and "COPY --from=build" in final
    assert "build-essential" not in final and "gcc" not in final
    assert "\nUSER microblog" in final
    assert 'ENTRYPOINT ["microblog"]' in final
