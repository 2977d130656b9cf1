"""``max_in_flight``: at most N requests open on a connection at once, across every worker.

The sandbox holds each upload for a fixed latency before answering and logs when it answered, so
every request was open at least over [answered - latency, answered]; how many of those windows
overlap is a lower bound of how many requests were open at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from producers.client import Ferry
from tests.fixtures.worker import FerryEnv
from tests.integration.helpers import png
from worker.processes import WorkerProcess

UPLOAD_PATH = "/files/images/users"


@pytest.fixture
def second_worker(ferry_env: FerryEnv, ferry: Ferry, tmp_path) -> Iterator[WorkerProcess]:
    """With the session's worker: two processes of two slots each, four requests at once."""
    worker = WorkerProcess(ferry_env.env, tmp_path / "second.log").wait_ready()
    yield worker
    worker.stop()


def most_at_once(requests: list[dict[str, Any]], latency: float) -> int:
    """The most of these windows [answered - latency, answered] that overlap at one instant."""
    edges = sorted([(r["time"] - latency, 1) for r in requests] + [(r["time"], -1) for r in requests])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def upload_all(ferry: Ferry, sandbox: Any, tmp_path, connection: str, count: int, latency_ms: int,
               worker_log: Any) -> int:
    user = sandbox.seed()["awork"]["users"]
    sandbox.add_fault(path=UPLOAD_PATH, method="POST", latency_ms=latency_ms)
    image = png(tmp_path / "face.png")
    jobs = [ferry.submit("awork-image", connection=connection, file=str(image),
                         params={"entity": "users", "id": user}) for _ in range(count)]
    done = [ferry.wait(j.id, timeout=120) for j in jobs]
    assert [d.status for d in done] == ["succeeded"] * count, [d.error for d in done]
    time.sleep(latency_ms / 1000 + 0.5)  # an upload still open now would be a step run twice
    uploads = [r for r in sandbox.requests(path_contains=UPLOAD_PATH) if r["method"] == "POST"]
    # Should a step ever run twice, say which attempt of which job did (history) and when.
    assert len(uploads) == count, (
        [(d.id, [(a.number, a.status, a.started_at) for s in d.steps for a in s.history]) for d in done],
        [r["time"] for r in uploads],
        [line for line in worker_log().splitlines() if any(d.id in line for d in done) or "orphan" in line])
    return most_at_once(uploads, latency_ms / 1000)


def test_a_capped_connection_never_has_more_requests_open_than_its_cap(ferry, second_worker, sandbox,
                                                                       tmp_path, worker_process):
    logs = lambda: worker_process.log() + second_worker.log()  # noqa: E731
    assert upload_all(ferry, sandbox, tmp_path, "awork-narrow", count=8, latency_ms=600, worker_log=logs) <= 2


def test_without_a_cap_the_same_workers_open_more_at_once(ferry, second_worker, sandbox, tmp_path,
                                                         worker_process):
    # What the cap test would see if the cap did nothing: the workers overlap their requests.
    logs = lambda: worker_process.log() + second_worker.log()  # noqa: E731
    assert upload_all(ferry, sandbox, tmp_path, "awork", count=4, latency_ms=1500, worker_log=logs) > 2
