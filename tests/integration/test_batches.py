"""Batches end to end: the real CLI, real workers, the sandbox failing some uploads, a webhook
receiver on loopback. A batch's counts are exact at the end, its completion is told once per
time it completes, a replay re-runs exactly its failed jobs, and a SIGKILLed worker leaves its
counts exact."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.client import Ferry, JobRequest
from producers.config import load_config
from producers.records import BatchRecord, DeliveryStatus, JobStatus
from producers.store import Filters
from sandbox.testing import SandboxControl, SandboxProcess
from tests.fixtures.worker import FerryEnv, WorkerProcess, own_worker
from tests.integration.helpers import Receiver, png
from tests.integration.test_notifications import SECRET, readme_check

IMAGE_UPLOAD = r"/files/images/users/"
BATCH_JOBS = 2000
FAILING = BATCH_JOBS // 100


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory, sandbox_server: SandboxProcess) -> Iterator[FerryEnv]:
    """A worker of its own whose [notifications] reach a loopback receiver, signing with SECRET."""
    settings = "[notifications]\nallow_http = true\nallow_private = true\nbackoff_seconds = 0.2\n"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FERRY_WEBHOOK_SECRET", SECRET)
        with own_worker(tmp_path_factory.mktemp("batches"), sandbox_server.control(), settings=settings,
                        concurrency=4) as (started, _):
            yield started


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def manifest(path: Path, user: str, image: Path, n: int) -> Path:
    line = {"kind": "awork-image", "connection": "awork", "file": str(image),
            "params": {"entity": "users", "id": user}}
    path.write_text("".join(json.dumps(line) + "\n" for _ in range(n)))
    return path


def completions(receiver: Receiver, want: int, timeout: float = 60) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """The batch.completed webhooks received, once ``want`` of them came (and a moment passed, so
    a duplicate would have come too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(receiver.received) < want:
        time.sleep(0.1)
    time.sleep(1.5)
    return [(h, json.loads(body)) for h, body in receiver.received]


def batch_events(ferry: Ferry, batch_id: str) -> list[dict[str, Any]]:
    return [e.data for e in ferry.events() if e.type == "batch.completed" and e.data.get("batch") == batch_id]


def exact(ferry: Ferry, record: BatchRecord) -> None:
    """The batch's counts are what its jobs' records say, one by one."""
    ids = ferry.store.select(Filters(batch=record.id)).ids
    statuses = ferry.store.statuses(ids)
    assert len(ids) == record.total
    assert record.counts == {s.value: statuses.count(s.value) for s in JobStatus}


def test_a_2000_job_batch_with_1_percent_failing_is_told_once_and_replays_exactly_its_failures(
        hooked: FerryEnv, sandbox: SandboxControl, receiver: Receiver, tmp_path: Path) -> None:
    ferry = hooked.ferry()
    user = sandbox.seed()["awork"]["users"]
    image = png(tmp_path / "avatar.png")
    sandbox.add_fault(path=IMAGE_UPLOAD, method="POST", status=400, times=FAILING)
    code, submitted = hooked.cli_json("submit-batch", str(manifest(tmp_path / "m.jsonl", user, image, BATCH_JOBS)),
                                      "--name", "avatars", "--batch-callback", receiver.url)
    assert code == 0, submitted
    batch_id = submitted["batch"]
    assert submitted["summary"]["created"] == BATCH_JOBS

    waited = hooked.cli("batch", "wait", batch_id, "--timeout", "600", timeout=660)
    assert waited.returncode == 1, waited.stderr  # some failed
    code, status = hooked.cli_json("batch", "status", batch_id)
    assert code == 0
    assert (status["name"], status["total"], status["callback_url"]) == ("avatars", BATCH_JOBS, receiver.url)
    assert status["counts"] == {"queued": 0, "running": 0, "succeeded": BATCH_JOBS - FAILING, "failed": FAILING,
                                "cancelled": 0, "scheduled": 0}
    assert status["bytes_total"] == BATCH_JOBS * image.stat().st_size
    assert status["bytes_done"] == (BATCH_JOBS - FAILING) * image.stat().st_size
    assert status["sealed_at"] and status["finished_at"]
    exact(ferry, ferry.batch(batch_id))

    [(headers, first)] = completions(receiver, 1)
    assert headers["Ferry-Event"] == first["event"] == "batch.completed"
    assert headers["Ferry-Delivery"] == first["delivery_id"]
    assert readme_check()(SECRET.encode(), headers["Ferry-Signature"], receiver.received[0][1])
    assert first["batch"]["counts"]["failed"] == FAILING and first["batch"]["id"] == batch_id
    assert first["batch"]["failures"] == f"/jobs?batch={batch_id}&status=failed"
    code, failed = hooked.cli_json("jobs", "--batch", batch_id, "--status", "failed", "--limit", "500")
    failed_ids = {j["id"] for j in failed["jobs"]}
    assert len(failed_ids) == FAILING

    replayed = hooked.cli("batch", "replay", batch_id, "--rate", "1000")
    assert replayed.returncode == 0, replayed.stderr
    waited = hooked.cli("batch", "wait", batch_id, "--timeout", "120", timeout=180)
    assert waited.returncode == 0, waited.stderr
    record = ferry.batch(batch_id)
    assert record.counts["succeeded"] == BATCH_JOBS and record.completions == 2
    exact(ferry, record)
    rerun = {j.id for j in ferry.jobs(batch=batch_id, limit=BATCH_JOBS).jobs if len(j.runs) == 2}
    assert rerun == failed_ids  # exactly the failed jobs ran again

    received = completions(receiver, 2)
    assert len(received) == 2
    (_, again) = received[1]
    assert again["delivery_id"] != first["delivery_id"]
    assert again["batch"]["counts"]["succeeded"] == BATCH_JOBS and again["batch"]["completions"] == 2
    assert [e["status"] for e in batch_events(ferry, batch_id)] == ["failed", "succeeded"]
    assert all(d.status == DeliveryStatus.DELIVERED for d in ferry.batch(batch_id).notifications)
    ferry.close()


def test_an_open_batch_completes_only_after_it_is_sealed(
        hooked: FerryEnv, sandbox: SandboxControl, receiver: Receiver, tmp_path: Path) -> None:
    ferry = hooked.ferry()
    user = sandbox.seed()["awork"]["users"]
    image = str(png(tmp_path / "one.png"))
    code, opened = hooked.cli_json("batch", "open", "--name", "one by one", "--batch-callback", receiver.url)
    assert code == 0
    batch_id = opened["batch"]
    proc = hooked.cli("submit", "awork-image", "-c", "awork", "--entity", "users", "--id", user, image,
                      "--batch", batch_id)
    assert proc.returncode == 0, proc.stderr
    with ferry.open_batch() as other:  # the context manager seals its own batch on leaving
        other.submit("awork-image", connection="awork", file=image, params={"entity": "users", "id": user})
    for _ in range(2):
        ferry.submit("awork-image", connection="awork", file=image, params={"entity": "users", "id": user},
                     batch=batch_id)
    deadline = time.monotonic() + 60
    while ferry.batch(batch_id).counts["succeeded"] < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    record = ferry.batch(batch_id)
    assert record.counts["succeeded"] == 3 and record.sealed_at is None
    assert record.finished_at is None and batch_events(ferry, batch_id) == [] and receiver.received == []

    sealed = hooked.cli("batch", "seal", batch_id)
    assert sealed.returncode == 0, sealed.stderr
    record = ferry.batch(batch_id)
    assert record.finished_at is not None and record.completions == 1
    [(headers, body)] = completions(receiver, 1)
    assert headers["Ferry-Event"] == "batch.completed"
    assert body["batch"]["id"] == batch_id and body["batch"]["total"] == 3
    refused = hooked.cli("submit", "awork-image", "-c", "awork", "--entity", "users", "--id", user, image,
                         "--batch", batch_id)
    assert refused.returncode == 2 and "sealed" in refused.stderr
    assert ferry.wait_batch(other.id, timeout=60).all_succeeded
    ferry.close()


def test_a_sigkilled_worker_leaves_the_batch_counts_exact(ferry_env: FerryEnv, sandbox: SandboxControl,
                                                          tmp_path: Path) -> None:
    isolated = ferry_env.isolated(tmp_path, db=6)
    ferry = Ferry(isolated.location.url, config=load_config(isolated.config_path))
    user = sandbox.seed()["awork"]["users"]
    image = str(png(tmp_path / "crash.png"))
    sandbox.add_fault(path=IMAGE_UPLOAD, method="POST", latency_ms=300)
    first = WorkerProcess(isolated.env, tmp_path / "w1.log", concurrency=2)
    first.wait_ready()
    outcomes = ferry.submit_many([ferry_request(image, user) for _ in range(40)])
    batch_id = outcomes.batch
    deadline = time.monotonic() + 60
    while ferry.batch(batch_id).counts["running"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()  # SIGKILL mid-upload: steps running, leases held
    sandbox.clear_faults()
    second = WorkerProcess(isolated.env, tmp_path / "w2.log", concurrency=2)
    try:
        second.wait_ready()
        record = ferry.wait_batch(batch_id, timeout=120)
    finally:
        second.stop()
    assert record.counts["succeeded"] == 40 and record.total == 40
    exact(ferry, record)
    assert len(batch_events(ferry, batch_id)) == 1
    ferry.close()


def ferry_request(image: str, user: str) -> JobRequest:
    return JobRequest(kind="awork-image", connection="awork", file=image, params={"entity": "users", "id": user})

