"""Retries never stall: ``max_attempts`` (ferry.toml) is the one limit on a step's attempts, each
attempt starts once its delay is over whatever its number, and while a step waits its record
names a next-attempt time that is still to come."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from producers.client import Ferry
from producers.config import FerryConfig
from producers.embedded import RedisLocation
from producers.kinds import all_step_names
from producers.queue import make_celery, task_name
from producers.records import JobRecord, StepStatus
from sandbox.testing import SandboxControl, SandboxProcess
from tests.fixtures.worker import own_worker
from tests.integration.helpers import png
from worker.tasks import register_tasks

BACKOFF = 0.1  # retry_backoff_seconds: the n-th wait lies in [BACKOFF·2^(n-1)/2, BACKOFF·2^(n-1)]
# Between the end of a wait and the next request: Celery's timer, a free pool slot, the request.
# Generous, because the machine is shared; the stall this guards against lasted minutes.
SCHEDULING_SLACK = 3.0
IMAGE_UPLOAD = r"/files/images/users/"


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory, sandbox_server: SandboxProcess) -> Iterator[Ferry]:
    """A worker allowed 8 attempts per step, with a short backoff so seven attempts take seconds."""
    with own_worker(tmp_path_factory.mktemp("retries"), sandbox_server.control(), max_attempts=8,
                    settings=f"retry_backoff_seconds = {BACKOFF}") as (env, _):
        ferry = env.ferry()
        yield ferry
        ferry.close()


def watch(ferry: Ferry, job_id: str, timeout: float) -> tuple[JobRecord, list[float]]:
    """Poll the job until it ends; return it and, for every poll that found a step waiting, how
    far its next-attempt time lay in the future (negative: overdue)."""
    deadline, ahead = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        job = ferry.store.get(job_id)
        if job.done:
            return job, ahead
        now = datetime.now(UTC)
        ahead += [(datetime.fromisoformat(s.next_attempt_at.replace("Z", "+00:00")) - now).total_seconds()
                  for s in job.steps if s.status == StepStatus.RETRYING and s.next_attempt_at]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still not done after {timeout}s: {ferry.store.get(job_id)}")


def test_a_step_answered_503_six_times_succeeds_on_attempt_7_each_wait_within_its_backoff(
        patient: Ferry, sandbox: SandboxControl, tmp_path: Path) -> None:
    sandbox.add_fault(path=IMAGE_UPLOAD, method="POST", status=503, times=6)
    user = sandbox.seed()["awork"]["users"]
    job = patient.submit("awork-image", connection="awork", params={"entity": "users", "id": user},
                         file=str(png(tmp_path / "user.png")))

    done, ahead = watch(patient, job.id, timeout=60)

    assert done.status == "succeeded", done.error
    assert done.step("upload_profile_image").attempts == 7
    requests = [r for r in sandbox.requests(IMAGE_UPLOAD) if r["method"] == "POST"]
    assert [r["status"] for r in requests] == [503] * 6 + [200]
    waits = [later["time"] - earlier["time"] for earlier, later in pairwise(requests)]
    for attempt, wait in enumerate(waits, start=1):
        nominal = BACKOFF * 2 ** (attempt - 1)
        assert nominal / 2 <= wait <= nominal + SCHEDULING_SLACK, (attempt, waits)
    assert ahead and min(ahead) > -SCHEDULING_SLACK, ahead  # never a next-attempt time long past


def test_celery_sets_no_retry_limit_of_its_own(redis_location: RedisLocation) -> None:
    """Celery's default (3 retries) would end a step at its fourth attempt, whatever
    max_attempts says; the lease-busy wait must not run out either."""
    app = make_celery(redis_location, FerryConfig())
    register_tasks(app)
    for step in all_step_names():
        assert app.tasks[task_name(step)].max_retries is None, step
