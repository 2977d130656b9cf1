"""A worker's log is one JSON object per line, from every process (the main process and each
prefork child), Celery's own records included, however many jobs run at once; every event that
ends a step's attempt says how long the attempt took; no secret reaches it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from producers.client import Ferry
from producers.records import JobStatus
from sandbox.testing import SandboxControl
from tests.fixtures.worker import TOKEN_ENV, own_worker
from tests.integration.helpers import png

JOBS = 16
ATTEMPT_ENDS = {"step succeeded", "step will be retried", "job failed"}


def submit_mixed(ferry: Ferry, sandbox: SandboxControl, folder: Path) -> list[str]:
    """16 jobs over three destinations, some retried (503s), one failing (an unknown object)."""
    seed = sandbox.seed()
    sandbox.add_fault(path=r"/files/images/users/", method="POST", status=503, times=3)
    ids = []
    for n in range(JOBS):
        image = str(png(folder / f"{n}.png", colour=("teal", "tomato", "gold", "navy")[n % 4]))
        if n % 4 == 0:
            job = ferry.submit("awork-image", connection="awork", file=image,
                               params={"entity": "users", "id": seed["awork"]["users"]})
        elif n % 4 == 1:
            job = ferry.submit("marketplace-image", connection="marketplace", file=image,
                               params={"image_type": "logo"})
        else:
            obj = "424242" if n == 2 else seed["object_id"]
            job = ferry.submit("assets-attachment", connection="acme", file=image,
                               params={"object": obj, "comment": f"job {n}"})
        ids.append(job.id)
    return ids


def parse_lines(log: str) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(log.splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not one JSON object: {line[:300]!r}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_sixteen_concurrent_jobs_through_two_prefork_children_log_one_json_object_per_line(
        sandbox_server: Any, sandbox: SandboxControl, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("logs")
    with own_worker(home, sandbox, max_attempts=5, settings="retry_backoff_seconds = 0.05",
                    concurrency=2) as (env, worker):
        assert worker.pool == "prefork" and worker.concurrency == 2
        ferry = env.ferry()
        jobs = [ferry.wait(job_id, timeout=120) for job_id in submit_mixed(ferry, sandbox, home)]
        ferry.close()
    assert sorted(j.status for j in jobs).count(JobStatus.FAILED) == 1

    log = worker.log()
    records = parse_lines(log)
    assert all({"event", "level", "timestamp", "pid"} <= r.keys() for r in records)
    assert any(r.get("logger", "").startswith("celery") and "ready." in r["event"] for r in records)
    assert len({r["pid"] for r in records if r.get("step")}) == 2  # both children ran steps
    attempt_ends = [r for r in records if r["event"] in ATTEMPT_ENDS and r.get("step")]
    steps_run = sum(s.attempts for j in jobs for s in j.steps)
    assert len(attempt_ends) == steps_run
    assert all(isinstance(r["duration_ms"], int | float) and r["duration_ms"] >= 0 for r in attempt_ends)
    assert not any(token in log for token in TOKEN_ENV.values())


def test_every_line_a_worker_writes_on_stdout_and_stderr_banner_included_is_json(
        sandbox_server: Any, sandbox: SandboxControl, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Celery's start-up banner was ~30 plain-text lines; it is one JSON line now, with what it said."""
    home = tmp_path_factory.mktemp("banner")
    with own_worker(home, sandbox, stdout_apart=False) as (_, worker):
        records = parse_lines(worker.log())

    [banner] = [r for r in records if r["event"] == "worker starting"]
    assert banner["pool"] == "prefork" and banner["concurrency"] == 2
    assert "ferry.atlassian" in banner["queues"] and banner["broker"].startswith("redis+socket://")
    assert any(r["event"].endswith(" ready.") for r in records)
