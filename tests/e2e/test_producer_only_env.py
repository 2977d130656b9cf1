"""A system that only *produces* jobs installs Ferry's base dependencies and nothing else — no
``requests``, no worker extras, no FastAPI — and can still submit through the Python API, the
CLI and a batch manifest.

Builds a fresh venv (not ``--system-site-packages``, which would leak the dev environment's
``requests``), installs exactly ``[project] dependencies`` from pyproject.toml, then Ferry itself
with ``--no-deps``. About 20-30 s, most of it pip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from producers.embedded import RedisLocation
from tests.fixtures.worker import write_config

REPO = Path(__file__).resolve().parents[2]
PRODUCER_DB = 6

SUBMIT_SCRIPT = """
import json, sys
from producers import Ferry
from producers.config import load_config
ferry = Ferry(sys.argv[1], config=load_config(sys.argv[2]))
job = ferry.submit("assets-attachment", connection="acme", file=sys.argv[3],
                   params={"object": "88", "comment": "scan"}, idempotency_key="scan-88-x",
                   traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
again = ferry.submit("assets-attachment", connection="acme", file=sys.argv[3],
                     params={"object": "88", "comment": "scan"}, idempotency_key="scan-88-x")
import producers.cli, producers.cli.batch  # noqa: E401 - the CLI and manifests import without extras
print(json.dumps({"id": job.id, "again": again.id, "status": ferry.status(job.id).status,
                  "trace": ferry.status(job.id).runs[0].trace,
                  "loaded": sorted(m for m in sys.modules
                                   if m.split(".")[0] in ("requests", "worker", "fastapi", "opentelemetry"))}))
"""


def run(*args: str | Path, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("producer-venv") / "venv"
    made = run(sys.executable, "-m", "venv", root)
    assert made.returncode == 0, made.stderr
    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pip = [root / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    deps = run(*pip, *base)
    assert deps.returncode == 0, deps.stderr[-3000:]
    ferry = run(*pip, "--no-deps", "-e", REPO)
    assert ferry.returncode == 0, ferry.stderr[-3000:]
    return root


def test_a_producer_only_environment_submits_without_the_worker_extras(
        venv: Path, tmp_path: Path, redis_location: RedisLocation) -> None:
    python, ferry_cmd = venv / "bin" / "python", venv / "bin" / "ferry"
    absent = run(python, "-c", "import requests")
    assert absent.returncode != 0 and "No module named 'requests'" in absent.stderr

    url = RedisLocation.from_socket(Path(urlsplit(redis_location.url).path), PRODUCER_DB).url
    store = redis.Redis.from_url(url, decode_responses=True)
    store.flushdb()
    config = write_config(tmp_path / "ferry.toml", "http://127.0.0.1:9", "ferry@example.com")
    doc = tmp_path / "x.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + b"z" * 1000 + b"\n%%EOF\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "FERRY_CONFIG": str(config), "REDIS_URL": url, "FERRY_HOME": str(tmp_path / ".ferry"),
           "FERRY_API_TOKENS": "t"}

    # The Python API, in the issue's own words.
    api = run(python, "-c", SUBMIT_SCRIPT, url, config, doc,
              env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert api.returncode == 0, api.stderr
    result = json.loads(api.stdout)
    assert result["status"] == "queued" and result["again"] == result["id"]
    assert result["loaded"] == []
    # No OpenTelemetry here, even with an endpoint named: the caller's trace context is kept as it came.
    assert result["trace"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    # The CLI, one job and a manifest.
    one = run(ferry_cmd, "submit", "assets-attachment", "-c", "acme", "--object", "9", doc,
              "--json", env=env)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["status"] == "queued"
    (tmp_path / "jobs.jsonl").write_text(json.dumps(
        {"kind": "assets-attachment", "connection": "acme", "file": "x.pdf",
         "params": {"object": "10"}}) + "\n")
    batch = run(ferry_cmd, "submit-batch", tmp_path / "jobs.jsonl", env=env, cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    assert store.zcard("ferry:idx:all") == 3
    assert store.llen("ferry.atlassian") == 3  # each chain went to its destination's queue

    # Serving the HTTP API is the api extra's business: a clear message, not a traceback.
    serve = run(ferry_cmd, "api", env=env)
    assert serve.returncode == 2
    assert "pip install 'ferry[api]'" in serve.stderr
    store.close()


@pytest.mark.parametrize("command", [
    ["worker"],
    ["jira", "avatars", "--type", "project", "--owner", "FERRY", "-c", "acme"],
    ["jira", "avatar-image", "--type", "project", "-o", "a.png", "-c", "acme"],
    ["marketplace", "asset", "images/x.png", "-c", "marketplace"],
    ["marketplace", "links", "-c", "marketplace"],
    ["awork", "image", "--entity", "users", "--id", "u1", "-o", "u.jpg", "-c", "awork"],
])
def test_the_worker_and_the_synchronous_reads_say_which_extra_they_need(
        venv: Path, tmp_path: Path, command: list[str]) -> None:
    """A read calls the destination with the worker's HTTP clients: without them it gives the
    same one-line hint as ``ferry worker``, not a traceback."""
    config = write_config(tmp_path / "ferry.toml", "http://127.0.0.1:9", "ferry@example.com")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "FERRY_CONFIG": str(config), "FERRY_HOME": str(tmp_path / ".ferry")}
    proc = run(venv / "bin" / "ferry", *command, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "needs the worker extra (pip install 'ferry[worker]')" in proc.stderr


def test_producers_imports_pull_in_neither_requests_nor_the_worker() -> None:
    """The same rule in the dev environment (where both are installed), without building a venv:
    nothing a producer imports — the HTTP API included — may import them."""
    code = ("import sys, producers, producers.client, producers.replay, producers.store.selection, "
            "producers.cli, producers.cli.batch, producers.cli.reads, producers.cli.replay, "
            "producers.web.app; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('requests', 'worker')))")
    proc = run(sys.executable, "-c", code, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
