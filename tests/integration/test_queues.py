"""Queues per destination end to end: where messages land, and workers that serve some queues."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from producers.queue import queue_of
from producers.records import JobRecord
from tests.fixtures.broker import both_brokers
from tests.fixtures.worker import FerryEnv
from tests.integration.helpers import png
from worker.processes import WorkerProcess


@pytest.fixture
def own_env(ferry_env: FerryEnv, tmp_path) -> FerryEnv:
    """A store (and, on RabbitMQ, queues) that only this test's workers serve."""
    return ferry_env.isolated(tmp_path, db=5)


@pytest.fixture
def workers(own_env: FerryEnv, tmp_path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()  # they may be waiting on a request the sandbox holds on purpose


def test_each_job_waits_in_its_destinations_queue(own_env, sandbox, tmp_path):
    """No worker runs here, so the messages stay where they were routed (Redis lists)."""
    ferry = own_env.ferry()
    image = png(tmp_path / "a.png")
    ferry.submit("awork-image", connection="awork", file=str(image), params={"entity": "users", "id": "u1"})
    ferry.submit("assets-attachment", connection="acme", file=str(image), params={"object": "1"})
    ferry.submit("assets-attachment", connection="acme", file=str(image), params={"object": "2"})
    waiting = {name: ferry.redis.llen(name) for name in ("ferry", "ferry.atlassian", "ferry.awork")}
    assert waiting == {"ferry": 0, "ferry.atlassian": 2, "ferry.awork": 1}


def test_a_worker_refuses_a_queue_nobody_publishes_to(own_env):
    proc = own_env.cli("worker", "-Q", "ferry.nowhere", timeout=60)
    assert proc.returncode == 2  # bad input, like every other CLI refusal
    assert "unknown queue ferry.nowhere" in proc.stderr and "ferry.atlassian" in proc.stderr


@both_brokers
def test_a_stalled_destination_does_not_hold_up_the_others(own_env, workers, sandbox, tmp_path):
    config = own_env.config()
    for connection in ("awork", "acme"):
        worker = WorkerProcess(own_env.env, tmp_path / f"{connection}.log", "-Q",
                               queue_of(config.connection(connection)), concurrency=1)
        workers.append(worker.wait_ready())
    seed = sandbox.seed()
    sandbox.add_fault(path="/files/images/", latency_ms=60_000)  # awork answers in a minute
    ferry = own_env.ferry()
    image = png(tmp_path / "u.png")
    stalled = [ferry.submit("awork-image", connection="awork", file=str(image),
                            params={"entity": "users", "id": seed["awork"]["users"]}) for _ in range(3)]
    wait_until_running(ferry, stalled[0])
    doc = tmp_path / "contract.txt"
    doc.write_text("signed\n")
    job = ferry.submit("assets-attachment", connection="acme", file=str(doc), params={"object": seed["object_id"]})
    assert ferry.wait(job.id, timeout=60).status == "succeeded"
    assert not any(ferry.status(j.id).done for j in stalled)


def wait_until_running(ferry, job: JobRecord, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while ferry.status(job.id).status != "running":
        assert time.monotonic() < deadline, f"{job.id} never started"
        time.sleep(0.05)
