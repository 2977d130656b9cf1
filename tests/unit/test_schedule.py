"""Jobs not before a time: a job with a ``not_before`` still to come is stored ``scheduled``, with
no message in any queue, and the releaser queues it (with its one message) once that time has
come, never before; a cancelled one is never released; a replay may be scheduled too.

Runs on the session's real redis-server, in a database of its own (no worker consumes there), so
the messages can be read back from the queue list.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers import keys, queue
from producers.client import Ferry, JobRequest
from producers.embedded import RedisLocation
from producers.records import JobStatus, StepError, utc_at
from producers.replay import replay
from producers.store import Filters
from tests import jobs
from worker import schedule

DB = 12  # other tests use 0 and 3-11
PDF = b"%PDF-1.4\n" + b"x" * 200 + b"\n%%EOF\n"
HOUR = 3600.0


@pytest.fixture
def ferry(module_db: tuple[RedisLocation, redis.Redis], tmp_path: Path) -> Iterator[Ferry]:
    (tmp_path / "doc.pdf").write_bytes(PDF)
    with contextlib.closing(jobs.producer(module_db[0], tmp_path)) as client:
        yield client


@pytest.fixture
def db(module_db: tuple[RedisLocation, redis.Redis]) -> redis.Redis:
    return module_db[1]


@pytest.fixture
def publisher(ferry: Ferry, module_db: tuple[RedisLocation, redis.Redis]) -> queue.StepPublisher:
    return queue.StepPublisher(ferry.celery, ferry.config, module_db[0])


def submit(ferry: Ferry, tmp_path: Path, at: float | None) -> str:
    return ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                        params={"object": "88"}, not_before=None if at is None else utc_at(at)).id


def waiting(db: redis.Redis) -> list[tuple[str, str]]:
    """(task, job id) of each message in the acme queue, oldest first."""
    found = []
    for raw in reversed(db.lrange("ferry.atlassian", 0, -1)):
        message = json.loads(raw)
        found.append((message["headers"]["task"], json.loads(message["body"])[0][0]))
    return found


def test_a_job_not_before_a_later_time_is_scheduled_with_no_message(ferry, db, tmp_path):
    at = time.time() + HOUR
    job_id = submit(ferry, tmp_path, at)
    record = ferry.status(job_id)
    assert record.status == JobStatus.SCHEDULED and record.not_before == utc_at(at)
    assert waiting(db) == []  # nothing in the broker: no worker holds it, no eta anywhere
    assert ferry.store.counts()["scheduled"] == 1 and ferry.store.counts()["queued"] == 0
    assert ferry.store.select(Filters(status="scheduled")).ids == [job_id]
    assert db.zscore(keys.scheduled(), job_id) == int(at * 1000)
    [(_, event)] = db.xrange(keys.events())
    assert event["type"] == "job.scheduled"


def test_a_scheduled_job_is_released_at_its_time_and_never_before(ferry, db, tmp_path, publisher):
    at = time.time() + HOUR
    job_id = submit(ferry, tmp_path, at)
    assert schedule.release(ferry.store, publisher, now=at - 0.002) == 0
    assert ferry.status(job_id).status == JobStatus.SCHEDULED and waiting(db) == []

    assert schedule.release(ferry.store, publisher, now=at) == 1
    assert ferry.status(job_id).status == JobStatus.QUEUED
    assert waiting(db) == [("ferry.step.get_credentials", job_id)]
    assert db.zcard(keys.scheduled()) == 0
    assert [e["type"] for _, e in db.xrange(keys.events())] == ["job.scheduled", "job.queued"]
    assert schedule.release(ferry.store, publisher, now=at + HOUR) == 0  # one message, not two


def test_a_time_already_past_queues_the_job_at_once(ferry, db, tmp_path):
    job_id = submit(ferry, tmp_path, time.time() - 60)
    assert ferry.status(job_id).status == JobStatus.QUEUED
    assert waiting(db) == [("ferry.step.get_credentials", job_id)]


def test_release_goes_in_bounded_batches_and_gives_each_job_one_message(ferry, db, tmp_path, publisher):
    at = time.time() + HOUR
    ids = {submit(ferry, tmp_path, at + i / 1000) for i in range(7)}
    first = ferry.store.release_due(publisher.outgoing, now=at + 1, limit=3)
    assert len(first) == 3 and db.zcard(keys.scheduled()) == 4
    assert schedule.release(ferry.store, publisher, now=at + 1) == 4
    assert sorted(job for _, job in waiting(db)) == sorted(ids)
    assert ferry.store.counts()["queued"] == 7 and ferry.store.counts()["scheduled"] == 0


def test_the_earliest_due_are_released_first(ferry, db, tmp_path, publisher):
    later = submit(ferry, tmp_path, time.time() + 2 * HOUR)
    sooner = submit(ferry, tmp_path, time.time() + HOUR)
    released = ferry.store.release_due(publisher.outgoing, now=time.time() + 3 * HOUR, limit=1)
    assert [job for job, _ in released] == [sooner]
    assert ferry.store.next_due() == pytest.approx(float(db.zscore(keys.scheduled(), later)) / 1000)


def test_a_cancelled_scheduled_job_is_never_released(ferry, db, tmp_path, publisher):
    at = time.time() + HOUR
    job_id = submit(ferry, tmp_path, at)
    assert ferry.cancel(job_id).outcome == "cancelled"
    assert ferry.status(job_id).status == JobStatus.CANCELLED
    assert db.zcard(keys.scheduled()) == 0
    assert (ferry.store.counts()["scheduled"], ferry.store.counts()["cancelled"]) == (0, 1)
    assert schedule.release(ferry.store, publisher, now=at + 1) == 0
    assert waiting(db) == [] and ferry.status(job_id).status == JobStatus.CANCELLED


def test_a_job_cancelled_between_the_read_and_the_release_gets_no_message(ferry, db, tmp_path):
    """The releaser reads the due ids, then the script checks each is still scheduled."""
    at = time.time() + HOUR
    job_id = submit(ferry, tmp_path, at)

    def cancel_meanwhile(job: str, connection: str, step: str) -> queue.Outgoing:
        ferry.store.cancel(job, "ops")
        return queue.Outgoing(commands=(("lpush", ("ferry.atlassian", "never")),))

    assert ferry.store.release_due(cancel_meanwhile, now=at + 1) == []
    assert waiting(db) == [] and ferry.status(job_id).status == JobStatus.CANCELLED


def test_a_replay_may_be_scheduled_and_starts_at_the_failed_step(ferry, db, tmp_path, publisher):
    job_id = submit(ferry, tmp_path, None)
    db.delete("ferry.atlassian")
    ferry.store.mark_failed(job_id, "media_upload", StepError(step="media_upload", message="boom"))
    at = time.time() + HOUR
    record = replay(ferry, job_id, restart=False, not_before=at)
    assert record.status == JobStatus.SCHEDULED and record.not_before == utc_at(at)
    assert waiting(db) == []
    assert schedule.release(ferry.store, publisher, now=at) == 1
    from_step = ferry.status(job_id).runs[-1].from_step
    assert waiting(db) == [(f"ferry.step.{from_step}", job_id)]


def test_a_scheduled_job_is_neither_replayed_nor_deleted_while_it_waits(ferry, tmp_path):
    from producers.errors import ActiveJob, ReplayRefused
    from producers.replay import delete

    job_id = submit(ferry, tmp_path, time.time() + HOUR)
    with pytest.raises(ReplayRefused, match="scheduled"):
        replay(ferry, job_id, force=True)
    with pytest.raises(ActiveJob):
        delete(ferry, job_id)



@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("45", 45)])
def test_in_reads_a_duration_from_now(text, seconds):
    from producers.cli.console import not_before_from

    when = not_before_from(None, text)
    assert when is not None and abs(when.timestamp() - (time.time() + seconds)) < 60


def test_at_reads_an_iso_time_as_utc_without_an_offset_and_refuses_both_or_nonsense():
    from producers.cli.console import not_before_from

    when = not_before_from("2030-01-02T02:00:00", None)
    assert when is not None and when.isoformat() == "2030-01-02T02:00:00+00:00"
    for at, in_ in (("2030-01-02T02:00:00Z", "10m"), ("tomorrow", None), (None, "soon")):
        with pytest.raises(SystemExit) as exit_:
            not_before_from(at, in_)
        assert exit_.value.code == 2


def batch_of_two(ferry: Ferry, tmp_path: Path, at: float) -> tuple[str, str, str]:
    """A sealed batch of one job now and one not before ``at``: (batch, now's, scheduled's)."""
    requests = [JobRequest(kind="assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                           params={"object": "88"}, not_before=when) for when in (None, utc_at(at))]
    found = ferry.submit_many(requests)
    return found.batch, found[0][0].id, found[1][0].id  # type: ignore[union-attr]


def test_a_batch_may_hold_a_scheduled_job_and_completes_only_after_it_ran(ferry, db, tmp_path, publisher):
    at = time.time() + HOUR
    batch, now_job, later = batch_of_two(ferry, tmp_path, at)
    assert ferry.status(later).status == JobStatus.SCHEDULED and ferry.status(later).batch == batch
    assert ferry.batch(batch).counts["scheduled"] == 1 and ferry.batch(batch).counts["queued"] == 1
    jobs.succeed(ferry.store, now_job, {"done": True})
    assert not ferry.batch(batch).done and ferry.batch(batch).active == 1  # the scheduled one is still to run
    assert schedule.release(ferry.store, publisher, now=at) == 1
    assert (ferry.batch(batch).counts["scheduled"], ferry.batch(batch).counts["queued"]) == (0, 1)
    jobs.succeed(ferry.store, later, {"done": True})
    record = ferry.batch(batch)
    assert record.done and record.all_succeeded and record.counts["succeeded"] == 2


def test_cancelling_a_batch_cancels_its_scheduled_jobs_and_completes_it(ferry, db, tmp_path, publisher):
    at = time.time() + HOUR
    batch, now_job, later = batch_of_two(ferry, tmp_path, at)
    assert ferry.cancel_batch(batch)["matched"] == 2
    assert {ferry.status(j).status for j in (now_job, later)} == {JobStatus.CANCELLED}
    assert ferry.batch(batch).done and ferry.batch(batch).counts["scheduled"] == 0
    assert schedule.release(ferry.store, publisher, now=at) == 0


def test_a_job_of_a_batch_may_be_replayed_on_a_schedule_and_reopens_its_batch(ferry, db, tmp_path, publisher):
    batch, first, second = batch_of_two(ferry, tmp_path, time.time() + 1)
    schedule.release(ferry.store, publisher, now=time.time() + 2)
    jobs.succeed(ferry.store, first, {"done": True})
    ferry.store.mark_failed(second, "media_upload", StepError(step="media_upload", message="boom"))
    assert ferry.batch(batch).done
    at = time.time() + HOUR
    assert replay(ferry, second, not_before=at).status == JobStatus.SCHEDULED
    assert not ferry.batch(batch).done and ferry.batch(batch).counts["scheduled"] == 1
    assert schedule.release(ferry.store, publisher, now=at) == 1
    jobs.succeed(ferry.store, second, {"done": True})
    assert ferry.batch(batch).done and ferry.batch(batch).all_succeeded
