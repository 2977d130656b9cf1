"""Prometheus metrics after a mixed run, read back with ``prometheus_client.parser``, against
what the store says; and Flower, started by ``ferry flower`` on the test broker, showing a
succeeded and a failed Ferry step with the right states."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from producers.client import Ferry
from sandbox.testing import free_port
from tests.fixtures.api import LiveApi
from tests.integration.test_replay import LINK_FAULT, document, wait_until
from worker.processes import WorkerProcess

TOKEN = "metrics-test-token"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metered(ferry_env, sandbox, tmp_path) -> Iterator[tuple[Ferry, int]]:
    """A store of its own with a prefork worker serving its metrics (``--metrics-port``)."""
    env = ferry_env.isolated(tmp_path, db=6)
    port = free_port()
    worker = WorkerProcess({**env.env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")},
                           tmp_path / "worker.log", "--metrics-port", str(port)).wait_ready()
    ferry = env.ferry()
    try:
        yield ferry, port
    finally:
        worker.stop()
        ferry.close()


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at ``port`` on this host (``/proc/net/tcp``)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_the_workers_metrics_listen_on_loopback_unless_told_otherwise(metered):
    """They have no auth; they once listened on every address (0.0.0.0)."""
    _, port = metered
    assert listening_addresses(port) == {"127.0.0.1"}


def test_metrics_host_is_passed_to_the_worker_and_needs_a_port(monkeypatch):
    from producers.cli.ops import METRICS_HOST_ENV, metrics_args

    monkeypatch.delenv("FERRY_METRICS_PORT", raising=False)
    monkeypatch.delenv(METRICS_HOST_ENV, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    assert metrics_args(["-c", "2", "--metrics-port", "9808", "--metrics-host=0.0.0.0"]) == ["-c", "2"]
    assert os.environ[METRICS_HOST_ENV] == "0.0.0.0" and os.environ["FERRY_METRICS_PORT"] == "9808"
    monkeypatch.delenv("FERRY_METRICS_PORT")
    with pytest.raises(SystemExit):
        metrics_args(["--metrics-host", "0.0.0.0"])


def test_metrics_after_a_mixed_run_match_the_store(metered, sandbox, tmp_path, monkeypatch):
    ferry, port = metered
    seed = sandbox.seed()
    sandbox.configure(media_upload="binary")  # Ferry's first form: no 404 probing the other
    doc = document(tmp_path)
    submit = lambda: ferry.submit("assets-attachment", connection="acme", file=str(doc),  # noqa: E731
                                  params={"object": seed["object_id"]}).id
    ok = [submit() for _ in range(3)]
    for job_id in ok:
        assert ferry.wait(job_id, timeout=60).status == "succeeded"
    sandbox.add_fault(**LINK_FAULT, times=1)
    failed = submit()
    assert ferry.wait(failed, timeout=60).status == "failed"

    worker = samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    kind = "assets-attachment"
    for step in ("get_credentials", "media_upload"):
        assert value(worker, "ferry_steps_total", kind=kind, step=step, outcome="succeeded") == 4
    assert value(worker, "ferry_steps_total", kind=kind, step="link_attachment", outcome="succeeded") == 3
    assert value(worker, "ferry_steps_total", kind=kind, step="link_attachment", outcome="failed") == 1
    assert value(worker, "ferry_step_duration_seconds_count", kind=kind, step="media_upload") == 4
    assert value(worker, "ferry_http_responses_total", connection="acme", status_class="4xx") == 1
    assert value(worker, "ferry_http_responses_total", connection="acme", status_class="2xx") >= 12
    assert value(worker, "ferry_bytes_uploaded_total", connection="acme") >= 4 * doc.stat().st_size
    assert value(worker, "ferry_retries_total", kind=kind, step="media_upload", connection="acme") == 0
    assert value(worker, "ferry_queue_wait_seconds_count", priority="normal") == 4  # one per job

    monkeypatch.setenv("FERRY_TEST_METRICS_TOKEN", "scrape-me")
    config = ferry.config.model_copy(update={"api": ferry.config.api.model_copy(
        update={"metrics_token_env": "FERRY_TEST_METRICS_TOKEN"})})
    guarded = Ferry(ferry.location.url, config=config)
    with LiveApi(guarded, tokens=[TOKEN]) as api:
        assert requests.get(f"{api.url}/metrics", timeout=10).status_code == 401
        assert requests.get(f"{api.url}/metrics", timeout=10,
                            headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403
        answer = requests.get(f"{api.url}/metrics", timeout=10,
                              headers={"Authorization": "Bearer scrape-me"})
    guarded.close()
    assert answer.status_code == 200
    store = samples(answer.text)
    counts = ferry.store.counts()
    for status in ("succeeded", "failed", "queued", "cancelled"):
        assert value(store, "ferry_jobs", status=status, kind=kind, connection="acme") == counts[status]
    assert (counts["succeeded"], counts["failed"]) == (3, 1)
    assert value(store, "ferry_workers") == 1
    assert value(store, "ferry_connection_paused", connection="acme") == 0


@pytest.fixture
def flower(ferry_env, worker_process, tmp_path: Path) -> Iterator[str]:
    """``ferry flower`` on the session's broker, its HTTP API open to the test."""
    port = free_port()
    log = open(tmp_path / "flower.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "producers", "flower", f"--port={port}",
                             "--address=127.0.0.1"], env={**ferry_env.env, "FLOWER_UNAUTHENTICATED_API": "true"},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/api/tasks", timeout=2).status_code == 200
        except requests.ConnectionError:
            assert proc.poll() is None, (tmp_path / "flower.log").read_text()
            return False

    try:
        wait_until(up, 60, "Flower to answer")
        # Workers send task events only once Flower asks (it broadcasts enable_events every 5 s).
        wait_until(lambda: "enabled by remote" in worker_process.log(), 30,
                   "Flower to turn the worker's task events on")
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        log.close()


def test_flower_shows_a_succeeded_and_a_failed_step(ferry, sandbox, flower, tmp_path):
    seed = sandbox.seed()
    doc = document(tmp_path)
    good = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                        params={"object": seed["object_id"]}).id
    assert ferry.wait(good, timeout=60).status == "succeeded"
    sandbox.add_fault(**LINK_FAULT, times=1)
    bad = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                       params={"object": seed["object_id"]}).id
    assert ferry.wait(bad, timeout=60).status == "failed"

    def link_tasks() -> dict[str, str]:
        tasks = requests.get(f"{flower}/api/tasks", timeout=5).json().values()
        return {t["args"]: t["state"] for t in tasks if t.get("name") == "ferry.step.link_attachment"}

    wait_until(lambda: len(link_tasks()) == 2 and "STARTED" not in link_tasks().values(), 30,
               "Flower to see both link steps end")
    # The arguments Flower shows are the job id alone.
    assert link_tasks() == {f"['{good}']": "SUCCESS", f"['{bad}']": "FAILURE"}
