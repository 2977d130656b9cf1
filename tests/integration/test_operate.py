"""The operator's controls end to end (real Redis, the sandbox over HTTP, the real prefork
worker): cancel, pause / resume, the connections and workers views, /readyz and the audit lines,
through the CLI, the Python API and the HTTP routes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from producers import keys
from producers.client import Ferry
from producers.store import Filters
from tests.fixtures.api import LiveApi
from tests.integration.test_replay import document, statuses, wait_until

TOKEN = "operate-test-token"
SLOW_UPLOAD = {"path": "/file", "method": "POST", "latency_ms": 3000}


@pytest.fixture
def live_api(ferry: Ferry) -> Iterator[LiveApi]:
    with LiveApi(ferry, tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
def audit_lines() -> Iterator[list[dict[str, object]]]:
    """The JSON audit lines logged meanwhile."""
    lines: list[dict[str, object]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(record.getMessage()))

    handler = Collect(level=logging.INFO)
    logger = logging.getLogger("ferry.audit")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)


def attachment(ferry: Ferry, sandbox, tmp_path: Path, name: str = "report.pdf") -> str:
    seed = sandbox.seed()
    return ferry.submit("assets-attachment", connection="acme", file=str(document(tmp_path, name)),
                        params={"object": seed["object_id"], "comment": "scan"}).id


def parked(ferry: Ferry, connection: str) -> int:
    return int(ferry.redis.scard(keys.parked(connection)))


def test_a_paused_connection_holds_its_jobs_without_attempts_and_resume_runs_them(
        ferry_env, ferry, sandbox, tmp_path):
    assert ferry_env.cli("pause", "acme").returncode == 0
    jobs = [attachment(ferry, sandbox, tmp_path, f"doc{i}.pdf") for i in range(2)]

    wait_until(lambda: parked(ferry, "acme") == 2, 30, "both steps to be parked")
    for job_id in jobs:
        record = ferry.status(job_id)
        assert record.status == "queued" and statuses(record) == ["pending"] * 3
        assert all(s.attempts == 0 for s in record.steps)
    assert not sandbox.requests(path_contains="/credentials"), "a request went out while paused"
    code, view = ferry_env.cli_json("connections")
    assert code == 0, view
    acme = next(c for c in view["connections"] if c["name"] == "acme")
    assert acme["paused"] and acme["parked"] == 2 and acme["jobs"]["queued"] == 2
    assert acme["paused_by"].startswith("cli (")
    assert not next(c for c in view["connections"] if c["name"] == "awork")["paused"]

    resumed = ferry_env.cli("resume", "acme")
    assert resumed.returncode == 0 and "2 waiting step(s)" in resumed.stdout, resumed.stderr
    for job_id in jobs:
        assert ferry.wait(job_id, timeout=60).status == "succeeded"
    assert parked(ferry, "acme") == 0


def test_cancel_a_queued_job_it_never_runs_and_can_be_replayed(ferry_env, ferry, sandbox, tmp_path):
    ferry.pause("acme", by="test")
    job_id = attachment(ferry, sandbox, tmp_path)
    wait_until(lambda: parked(ferry, "acme") == 1, 30, "the step to be parked")

    code, outcome = ferry_env.cli_json("cancel", job_id)
    assert code == 0 and outcome == {"id": job_id, "outcome": "cancelled", "status": "cancelled"}
    again = ferry_env.cli("cancel", job_id)
    assert again.returncode == 1 and "ended already" in again.stdout
    ferry.resume("acme", by="test")  # its parked step meets a cancelled job and stops

    record = ferry.status(job_id)
    assert record.status == "cancelled" and record.finished_at
    assert statuses(record) == ["pending"] * 3
    assert "cancelled by cli (" in (record.runs[-1].note or "") and record.runs[-1].outcome == "cancelled"
    code, listed = ferry_env.cli_json("jobs", "--status", "cancelled")
    assert code == 0, listed
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert not sandbox.requests(path_contains="/credentials")

    code, replayed = ferry_env.cli_json("replay", job_id, "--wait", "--timeout", "60")
    assert code == 0 and replayed["status"] == "succeeded", replayed


def test_a_running_job_finishes_its_step_and_runs_no_further_step(ferry, sandbox, tmp_path):
    sandbox.add_fault(**SLOW_UPLOAD, times=1)
    job_id = attachment(ferry, sandbox, tmp_path)
    wait_until(lambda: ferry.status(job_id).step("media_upload").status == "running", 30,
               "the upload to start")

    assert ferry.cancel(job_id, by="test").outcome == "cancelling"

    record = ferry.wait(job_id, timeout=60)
    assert record.status == "cancelled"
    assert statuses(record) == ["succeeded", "succeeded", "pending"]
    links = [r for r in sandbox.requests(path_contains="/attachments/object/") if r["method"] == "POST"]
    assert not links, "the link step ran after the cancel"


def test_bulk_cancel_by_filter_with_a_dry_run_first(ferry_env, ferry, sandbox, tmp_path, audit_lines):
    ferry.pause("acme", by="test")
    jobs = [attachment(ferry, sandbox, tmp_path, f"d{i}.pdf") for i in range(3)]
    wait_until(lambda: parked(ferry, "acme") == 3, 30, "the steps to be parked")

    code, dry = ferry_env.cli_json("cancel", "--status", "queued", "--connection", "acme", "--dry-run")
    assert code == 0 and dry["matched"] == 3 and dry["cancelled"] == 0
    assert ferry.store.counts()["queued"] == 3
    code, done = ferry_env.cli_json("cancel", "--status", "queued", "--connection", "acme")
    assert code == 0 and (done["matched"], done["cancelled"]) == (3, 3)
    assert ferry.store.statuses(jobs) == ["cancelled"] * 3
    # Filters without --status match queued jobs only, as POST /jobs:cancel does: not these three.
    code, default = ferry_env.cli_json("cancel", "--connection", "acme", "--dry-run")
    queued = ferry.cancel_many(Filters.parse({"status": "queued", "connection": "acme"}), by="t", dry_run=True)
    assert code == 0 and default["matched"] == queued.matched
    # The CLI ran in another process; the Python API logs here.
    summary = ferry.cancel_many(Filters.parse({"status": "cancelled"}), by="ops@example", dry_run=True)
    assert summary.matched == 3
    ferry.resume("acme", by="ops@example")
    actions = [(line["action"], line["who"], line["jobs"]) for line in audit_lines]
    assert ("resume", "ops@example", 0) in actions


def test_workers_show_the_steps_they_run_and_readyz_follows_the_heartbeats(
        ferry_env, ferry, sandbox, live_api, tmp_path):
    sandbox.add_fault(**{**SLOW_UPLOAD, "latency_ms": 9000}, times=1)
    job_id = attachment(ferry, sandbox, tmp_path)
    # The fixture emptied Redis: the worker's processes beat again within 5 s.
    wait_until(lambda: any(w["running"] for w in ferry.workers()), 30, "a heartbeat naming the step")

    code, found = ferry_env.cli_json("workers")
    assert code == 0 and len(found["workers"]) == 1
    worker = found["workers"][0]
    assert worker["pool"] == "prefork" and worker["slots"] == 2 and worker["version"]
    assert [(r["job_id"], r["step"]) for r in worker["running"]] == [(job_id, "media_upload")]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    over_http = requests.get(f"{live_api.url}/workers", headers=auth, timeout=10).json()
    assert over_http["workers"][0]["pid"] == worker["pid"]
    ready = requests.get(f"{live_api.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    ferry.wait(job_id, timeout=60)

    # A store no worker beats into: not ready, and it says why; /healthz is unchanged.
    lonely = ferry_env.isolated(tmp_path, db=9).ferry()
    with LiveApi(lonely, tokens=[TOKEN]) as api:
        answer = requests.get(f"{api.url}/readyz", timeout=10)
        assert answer.status_code == 503 and "no worker" in answer.json()["reason"]
        assert requests.get(f"{api.url}/healthz", timeout=10).status_code == 200
    lonely.close()


def test_http_cancel_pause_resume_and_connections(ferry, sandbox, live_api, tmp_path, audit_lines):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = live_api.url
    assert requests.post(f"{url}/connections/acme/pause", timeout=10).status_code == 401
    paused = requests.post(f"{url}/connections/acme/pause", headers=auth, timeout=10)
    assert paused.status_code == 200 and paused.json()["changed"] is True
    unknown = requests.post(f"{url}/connections/nope/pause", headers=auth, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["problems"][0]["field"] == "name"
    jobs = [attachment(ferry, sandbox, tmp_path, f"h{i}.pdf") for i in range(3)]
    wait_until(lambda: parked(ferry, "acme") == 3, 30, "the steps to be parked")
    listed = requests.get(f"{url}/connections", headers=auth, timeout=10).json()["connections"]
    acme = next(c for c in listed if c["name"] == "acme")
    assert acme["paused"] and acme["parked"] == 3 and acme["service"] == "atlassian"

    one = requests.post(f"{url}/jobs/{jobs[0]}/cancel", headers=auth, timeout=10)
    assert one.status_code == 200 and one.json()["status"] == "cancelled"
    assert requests.post(f"{url}/jobs/{jobs[0]}/cancel", headers=auth, timeout=10).status_code == 409
    assert requests.post(f"{url}/jobs/nope/cancel", headers=auth, timeout=10).status_code == 404
    dry = requests.post(f"{url}/jobs:cancel", headers=auth, timeout=10,
                        json={"connection": "acme", "dry_run": True})
    assert dry.status_code == 200 and dry.json()["matched"] == 2  # status defaults to queued
    bulk = requests.post(f"{url}/jobs:cancel", headers=auth, timeout=10, json={"ids": [jobs[1]]})
    assert bulk.json()["cancelled"] == 1

    resumed = requests.post(f"{url}/connections/acme/resume", headers=auth, timeout=10)
    assert resumed.status_code == 200 and resumed.json()["republished"] == 1
    assert ferry.wait(jobs[2], timeout=60).status == "succeeded"
    assert ferry.store.statuses(jobs[:2]) == ["cancelled", "cancelled"]

    lines = [(line["action"], line["target"], line["jobs"]) for line in audit_lines]
    assert lines == [("pause", "acme", 0), ("cancel", jobs[0], 1), ("cancel", jobs[0], 0),
                     ("cancel", {"ids": 1}, 1), ("resume", "acme", 1)]
    assert {line["who"] for line in audit_lines} == {audit_lines[0]["who"]}
    assert str(audit_lines[0]["who"]).startswith("token #")
