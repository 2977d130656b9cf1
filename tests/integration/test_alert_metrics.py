"""Every metric the shipped alert rules and Grafana board name (deploy/) exists in Ferry's real
exposition: ``GET /metrics`` of a live API and of a ``ferry worker --metrics-port`` (prefork, in
prometheus-client's multiprocess mode, as ``ferry worker`` runs it), after a job that met a 429
and whose webhook could not be delivered, so every counter has a sample."""

from __future__ import annotations

from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from producers.client import Ferry
from producers.config import load_config
from producers.embedded import EmbeddedRedis
from producers.records import JobStatus
from sandbox.testing import SandboxControl, free_port
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import SANDBOX_URIS, worker_env, write_config
from tests.integration.test_replay import document, wait_until
from tests.unit.test_alert_rules import used_metrics
from worker.processes import WorkerProcess

HOOKS = "[notifications]\nallow_http = true\nallow_private = true\nbackoff_seconds = 0.2\n"


def names(exposition: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(exposition) for s in family.samples}


def test_every_metric_a_rule_or_a_panel_uses_is_exposed(tmp_path: Path, sandbox: SandboxControl) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    location = server.ensure_running()
    config = write_config(tmp_path / "ferry.toml", sandbox.url, sandbox.email, settings=HOOKS,
                          files=SANDBOX_URIS)
    port = free_port()
    env = {**worker_env(tmp_path, config, location), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           "FERRY_WEBHOOK_SECRET": "s3cret"}
    worker = WorkerProcess(env, tmp_path / "worker.log", "--metrics-port", str(port))
    ferry = Ferry(location.url, config=load_config(config))
    try:
        worker.wait_ready()
        sandbox.add_fault(path=r"/credentials$", method="GET", status=429, retry_after=1, times=1)
        job = ferry.submit("assets-attachment", connection="acme", file=str(document(tmp_path)),
                           params={"object": sandbox.seed()["object_id"]},
                           callback_url=f"http://127.0.0.1:{free_port()}/hook")  # nobody listens
        wait_until(lambda: ferry.status(job.id).status == JobStatus.SUCCEEDED, 60, "the job")
        wait_until(lambda: any(d.attempts for d in ferry.status(job.id).notifications), 30, "a delivery attempt")
        worker_names = names(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        with LiveApi(ferry, tokens=["t"]) as api:
            api_names = names(requests.get(f"{api.url}/metrics", timeout=10).text)
    finally:
        worker.stop()
        ferry.close()
        server.stop()
    exposed = worker_names | api_names
    missing = {where: sorted(used - exposed) for where, used in used_metrics().items() if used - exposed}
    assert not missing, f"named by a rule or panel, absent from /metrics: {missing}"
    assert "ferry_throttled_total" in worker_names and "ferry_connection_throttled" in api_names
