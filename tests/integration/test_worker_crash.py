"""A killed worker loses no job, and the retried step makes no duplicate at the destination."""

from __future__ import annotations

import time

import pytest

from producers.client import Ferry
from producers.config import load_config
from producers.records import StepStatus
from tests.fixtures.broker import both_brokers
from tests.fixtures.worker import FerryEnv, WorkerProcess


@pytest.fixture
def isolated(ferry_env: FerryEnv, tmp_path) -> FerryEnv:
    """The same setup on Redis database 3 (and queues of its own on RabbitMQ), so only this
    test's workers see these jobs."""
    return ferry_env.isolated(tmp_path, db=3)


def wait_for_step(ferry: Ferry, job_id: str, step: str, status: StepStatus, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ferry.status(job_id).step(step).status == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{step} never became {status}: {ferry.status(job_id)}")


@both_brokers
def test_sigkilled_worker_mid_upload_is_recovered_by_another_without_duplicate(isolated, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="^/media/file", latency_ms=3000, times=1)
    doc = tmp_path / "contract.txt"
    doc.write_text("signed\n" * 1000)
    first = WorkerProcess(isolated.env, tmp_path / "w1.log")
    first.wait_ready()
    ferry = Ferry(isolated.location.url, config=load_config(isolated.config_path))
    job = ferry.submit("assets-attachment", connection="acme", file=str(doc), params={"object": seed["object_id"]})
    wait_for_step(ferry, job.id, "media_upload", StepStatus.RUNNING)
    first.kill()  # SIGKILL to the whole process group: main process and pool children

    second = WorkerProcess(isolated.env, tmp_path / "w2.log")
    try:
        second.wait_ready()
        done = ferry.wait(job.id, timeout=60)
    finally:
        second.stop()
    assert done.status == "succeeded", done
    assert done.step("media_upload").attempts == 2
    linked = [a for a in sandbox.attachments() if str(a.get("mediaId")) == done.result["media_id"]]
    assert len(linked) == 1
    assert len([a for a in sandbox.attachments() if a.get("filename") == "contract.txt"]) == 1
