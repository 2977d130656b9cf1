"""History is kept: each attempt's outcome in its step's record, and each run of the job (the
submit, every replay) with its outcome, through a real worker and the sandbox's own faults, and
shown by ``ferry status`` (text and ``--json``) and the dashboard's job page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from producers.client import Ferry
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import FerryEnv

API_TOKEN = "history-test-token"


def document(tmp_path: Path) -> Path:
    path = tmp_path / "contract.pdf"
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 100 + b"\n%%EOF\n")
    return path


def history(record: dict[str, Any], step: str) -> list[dict[str, Any]]:
    [found] = [s for s in record["steps"] if s["name"] == step]
    return list(found["history"])


def attempts(record: dict[str, Any], step: str) -> list[tuple[Any, ...]]:
    """(run, number, status, HTTP status) of each recorded attempt of ``step``."""
    return [(a["run"], a["number"], a["status"], a["http_status"]) for a in history(record, step)]


def test_failed_attempts_and_the_failed_run_outlive_a_retry_and_a_successful_replay(
        ferry_env: FerryEnv, ferry: Ferry, sandbox: Any, tmp_path: Path) -> None:
    seed = sandbox.seed()
    sandbox.add_fault(path="^/media/file", method="POST", status=503, times=1)  # retried, then fine
    sandbox.add_fault(path="/attachments/object/[^/]+$", method="POST", status=400, times=1)  # fails
    job = ferry.submit("assets-attachment", connection="acme", file=str(document(tmp_path)),
                       params={"object": seed["object_id"]})
    assert ferry.wait(job.id, timeout=60).status == "failed"

    replayed = ferry_env.cli("replay", job.id, "--wait", "--timeout", "60", "--json")
    assert replayed.returncode == 0, replayed.stderr
    status = ferry_env.cli("status", job.id, "--json")
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)

    assert record["status"] == "succeeded" and record["error"] is None
    first, second = record["runs"]
    assert (first["outcome"], second["outcome"]) == ("failed", "succeeded")
    assert first["error"]["step"] == "link_attachment" and first["error"]["status"] == 400
    assert first["error"]["message"] and second["error"] is None
    assert attempts(record, "media_upload") == [(1, 1, "retried", 503), (1, 2, "succeeded", None)]
    assert attempts(record, "link_attachment") == [(1, 1, "failed", 400), (2, 1, "succeeded", None)]
    retried = history(record, "media_upload")[0]
    assert retried["retry_delay"] > 0 and retried["message"]
    assert retried["started_at"] <= retried["finished_at"]

    text = ferry_env.cli("status", job.id)
    assert text.returncode == 0, text.stderr
    steps, rest = text.stdout.split("\nattempts\n")  # the steps, then two titled tables
    attempts_shown, runs_shown = rest.split("\nruns\n")
    assert "succeeded" in steps and "HTTP" not in steps
    assert "retried" in attempts_shown and "HTTP 503" in attempts_shown and "HTTP 400" in attempts_shown
    assert "failed" in runs_shown and "HTTP 400" in runs_shown

    with LiveApi(ferry, tokens=[API_TOKEN]) as api:
        page = requests.get(f"{api.url}/ui/job/{job.id}", timeout=10,
                            headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert page.status_code == 200, page.text
    assert page.text.count('class="attempt s-retried"') == 1
    assert page.text.count('class="attempt s-failed"') == 1
    assert "<td>503</td>" in page.text and "HTTP 400" in page.text
