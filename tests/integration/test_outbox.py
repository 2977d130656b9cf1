"""On a broker other than the store's Redis (RabbitMQ), a step's end writes the next message
into an outbox in the same Redis call; a worker that dies before publishing it leaves the entry,
and the reaper publishes it within seconds: no job waits for a visibility timeout.

The dead worker is played by the store's own calls, made here exactly as the worker makes them
(``begin_step``, then ``finish_step`` or ``retry_step`` with the message the worker's
``StepPublisher`` builds) and then stopping, as a worker killed in between would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.client import Ferry
from producers.queue import StepPublisher
from producers.records import JobRecord, JobStatus, StepError
from producers.store import Lease, NewJob
from tests.fixtures.worker import FerryEnv
from tests.integration.helpers import png
from worker.processes import WorkerProcess

pytestmark = [pytest.mark.rabbitmq, pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)]


@pytest.fixture
def rabbit_env(ferry_env: FerryEnv, tmp_path: Path) -> FerryEnv:
    isolated = ferry_env.isolated(tmp_path, db=8)
    isolated.env["FERRY_OUTBOX_GRACE"] = "1"  # the reaper runs every second (worker_env)
    return isolated


@pytest.fixture
def ferry(rabbit_env: FerryEnv) -> Iterator[Ferry]:
    client = rabbit_env.ferry()
    yield client
    client.close()


def stored_without_a_message(ferry: Ferry, kind: str, connection: str, file: Path,
                             params: dict[str, str]) -> JobRecord:
    """A valid job in the store whose message nobody published."""
    spec, parsed, info = ferry.validate(kind, connection=connection, file=str(file), uri=None, params=params)
    [(record, _)] = ferry.store.create_many([NewJob(kind=spec.name, connection=connection, steps=spec.step_names,
                                                    params=parsed.model_dump(mode="json", exclude_none=True),
                                                    file=info)])
    return record


def run_a_worker_until_done(env: FerryEnv, ferry: Ferry, job: JobRecord, tmp_path: Path) -> tuple[JobRecord, str]:
    """A worker (whose reaper runs every second) until ``job`` ends: the record, and its log."""
    worker = WorkerProcess(env.env, tmp_path / "worker.log").wait_ready()
    try:
        return ferry.wait(job.id, timeout=60), worker.log()
    finally:
        worker.stop()


def test_a_next_step_left_in_the_outbox_is_published_and_the_job_finishes(rabbit_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    doc = tmp_path / "outbox.txt"
    doc.write_text("left behind\n" * 100)
    job = stored_without_a_message(ferry, "assets-attachment", "acme", doc, {"object": seed["object_id"]})
    publisher = StepPublisher(ferry.celery, ferry.config, ferry.location)
    lease = Lease.new(60)
    begun = ferry.store.begin_step(job.id, "get_credentials", lease)
    then = publisher.outgoing(job.id, "acme", "media_upload")
    assert then.outbox is not None and not then.commands  # another broker: an outbox entry
    ferry.store.finish_step(job.id, "get_credentials", {"workspace_id": seed["workspace_id"]},
                            state=begun.state, lease=lease, then=then)
    # ... and the worker dies here, before publishing: nothing is queued for media_upload.

    done, log = run_a_worker_until_done(rabbit_env, ferry, job, tmp_path)

    assert done.status == JobStatus.SUCCEEDED, done
    assert "publishing a step message left in the outbox" in log
    assert ferry.store.outbox_due(older_than=0) == []
    assert len([a for a in sandbox.attachments() if a.get("filename") == "outbox.txt"]) == 1


def test_a_retry_left_in_the_outbox_is_published_and_the_job_finishes(rabbit_env, ferry, sandbox, tmp_path):
    users = sandbox.seed()["awork"]["users"]
    job = stored_without_a_message(ferry, "awork-image", "awork", png(tmp_path / "u.png"),
                                   {"entity": "users", "id": users})
    publisher = StepPublisher(ferry.celery, ferry.config, ferry.location)
    lease = Lease.new(60)
    begun = ferry.store.begin_step(job.id, "upload_profile_image", lease)
    then = publisher.outgoing(job.id, "awork", "upload_profile_image", countdown=1, retries=1)
    ferry.store.retry_step(job.id, "upload_profile_image",
                           StepError(step="upload_profile_image", status=503, message="busy", retryable=True),
                           1, state=begun.state, lease=lease, then=then)
    # ... and the worker dies here, before publishing the delayed retry.

    done, _ = run_a_worker_until_done(rabbit_env, ferry, job, tmp_path)

    assert done.status == JobStatus.SUCCEEDED, done
    step = done.step("upload_profile_image")
    assert step.attempts == 2 and [a.status for a in step.history] == ["retried", "succeeded"]
