"""Batches in the job store: counts moved by the scripts that move each job's status, and one
completion (event + delivery) per time the sealed batch runs out of jobs."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest

from producers import keys
from producers.errors import BatchClosed, BatchNotFound, NotifyRefused
from producers.records import DeliveryStatus, FileInfo, Progress, StepError
from producers.store import JobStore, Lease, NewJob
from tests import jobs

STEPS = ("get_credentials", "media_upload", "link_attachment")


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True), retention_seconds=60)


def add(store: JobStore, batch: str, n: int, key: str | None = None) -> list[str]:
    outcomes = store.create_many([
        NewJob(kind="assets-attachment", connection="acme", steps=STEPS, params={"object": str(i)},
               file=FileInfo(path="/tmp/a.pdf", name="a.pdf", size=10), idempotency_key=key, batch=batch)
        for i in range(n)], batch=batch)
    return [o[0].id for o in outcomes if isinstance(o, tuple)]


def fail(store: JobStore, job_id: str) -> None:
    jobs.start_step(store, job_id, "get_credentials")
    store.mark_failed(job_id, "get_credentials", StepError(step="get_credentials", status=400, message="no"))


def completions(store: JobStore) -> list[dict[str, object]]:
    return [json.loads(f["data"]) for _, f in store.redis.xrange(keys.events()) if f["type"] == "batch.completed"]


def test_counts_follow_each_job_through_its_steps_and_the_sealed_batch_completes_once(store):
    batch = store.open_batch("night avatars", "https://example.com/hook")
    ids = add(store, batch, 3)
    assert store.get(ids[0]).batch == batch
    record = store.get_batch(batch)
    assert (record.total, record.counts["queued"], record.bytes_total) == (3, 3, 30)
    jobs.start_step(store, ids[0], "get_credentials")
    assert store.get_batch(batch).counts["running"] == 1
    store.retry_step(ids[0], "get_credentials", StepError(step="get_credentials", message="slow"), 1)
    jobs.succeed(store, ids[0], {"ok": 1})
    jobs.succeed(store, ids[1], {"ok": 1})
    fail(store, ids[2])
    record = store.get_batch(batch)
    assert record.counts == {"queued": 0, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 0, "scheduled": 0}
    assert record.bytes_done == 20
    assert record.finished_at is None and completions(store) == []  # open: more jobs may come
    assert store.seal_batch(batch) and not store.seal_batch(batch)
    record = store.get_batch(batch)
    assert record.finished_at and record.completions == 1
    assert [(c["batch"], c["status"], c["failed"]) for c in completions(store)] == [(batch, "failed", 1)]
    [delivery] = record.notifications
    assert delivery.event == "batch.completed"
    assert store.redis.zscore(keys.notify_due(), f"batch:{batch} {delivery.id}") is not None


def test_a_replay_reopens_the_batch_and_its_end_completes_it_again(store):
    batch = store.open_batch()
    [job_id] = add(store, batch, 1)
    fail(store, job_id)
    store.seal_batch(batch)
    assert store.get_batch(batch).completions == 1
    store.begin_run(job_id, trigger="test", from_step="get_credentials")
    record = store.get_batch(batch)
    assert record.finished_at is None and record.counts["queued"] == 1 and record.counts["failed"] == 0
    jobs.succeed(store, job_id, {"ok": 1})
    record = store.get_batch(batch)
    assert record.completions == 2 and record.counts["succeeded"] == 1
    assert [c["status"] for c in completions(store)] == ["failed", "succeeded"]
    assert store.redis.ttl(keys.batch(batch)) > 0  # every job succeeded: it expires with them


def test_a_cancel_counts_and_a_step_ending_twice_counts_once(store):
    batch = store.open_batch()
    a, b = add(store, batch, 2)
    store.seal_batch(batch)
    store.cancel(a, "op")
    jobs.start_step(store, b, "get_credentials")
    state = store.begin_step(b, "media_upload")  # a redelivered message: the job runs already
    assert state.outcome == "started"
    fail(store, b)
    store.mark_failed(b, "get_credentials", StepError(step="get_credentials", message="again"))
    record = store.get_batch(batch)
    assert record.counts == {"queued": 0, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 1, "scheduled": 0}
    assert record.completions == 1


def test_a_known_idempotency_key_stays_in_its_first_batch_and_counts_as_existing_in_the_new(store):
    first = store.open_batch()
    [job_id] = add(store, first, 1, key="k")
    second = store.open_batch()
    assert add(store, second, 1, key="k") == [job_id]
    assert store.get(job_id).batch == first
    record = store.get_batch(second)
    assert (record.total, record.existing, record.counts["queued"]) == (0, 1, 0)
    store.seal_batch(second)
    assert store.get_batch(second).completions == 1  # nothing of its own to run


def test_a_sealed_or_unknown_batch_takes_no_job(store):
    batch = store.open_batch()
    store.seal_batch(batch)
    with pytest.raises(BatchClosed, match="sealed"):
        store.create_many([NewJob(kind="k", connection="c", steps=("s",), params={}, batch=batch)], batch=batch)
    with pytest.raises(BatchClosed, match="no such batch"):
        store.create_many([NewJob(kind="k", connection="c", steps=("s",), params={}, batch="nope")], batch="nope")
    with pytest.raises(BatchNotFound):
        store.seal_batch("nope")
    assert store.counts()["queued"] == 0


def test_jobs_of_a_batch_are_listed_by_it(store):
    batch = store.open_batch()
    ids = add(store, batch, 3)
    add(store, store.open_batch(), 2)
    fail(store, ids[1])
    assert sorted(j.id for j in store.list(batch=batch).jobs) == sorted(ids)
    assert [j.id for j in store.list(batch=batch, status="failed").jobs] == [ids[1]]
    assert [b.id for b in store.batches()][-1] == batch


def test_a_purged_job_leaves_its_batch_counts_and_bytes_and_is_counted_as_purged(store):
    """Purging (ferry purge / delete) a job of a batch counts it out of the batch in forget.lua:
    total, its status's count and its bytes; ``purged`` says how many left this way. A second
    forget of the same job (a sweep after a purge) moves nothing."""
    batch = store.open_batch()
    a, b, c = add(store, batch, 3)
    jobs.succeed(store, a, {"ok": 1})
    fail(store, b)
    store.seal_batch(batch)
    assert store.delete(a) and store.delete(b)
    store._forget(a)
    record = store.get_batch(batch)
    assert (record.total, record.purged, record.bytes_total, record.bytes_done) == (1, 2, 10, 0)
    assert record.counts == {"queued": 1, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "scheduled": 0}
    assert store.redis.zrange(keys.batch_jobs(batch), 0, -1) == [c]
    jobs.succeed(store, c, {"ok": 1})
    record = store.get_batch(batch)
    assert record.completions == 1 and record.all_succeeded and record.bytes_done == 10


def sent(store: JobStore, job_id: str, n: int, lease: Lease) -> None:
    figures = Progress(bytes_sent=n, bytes_total=10, updated_at="2026-12-07T00:00:00.000Z")
    assert store.record_progress(store.get(job_id), "media_upload", figures, lease)


def test_bytes_done_follows_upload_progress_once_per_byte_and_the_whole_file_at_success(store):
    """bytes_done grows with what uploads sent (progress.lua), a retried upload starting again
    from 0 adds nothing until it passes what was counted, success makes it the whole file, and a
    failure takes back what the failed job's uploads sent (its replay counts them again)."""
    batch = store.open_batch()
    a, b = add(store, batch, 2)
    lease = Lease(token="w", seconds=60)
    for job_id in (a, b):
        jobs.start_step(store, job_id, "get_credentials")
        store.finish_step(job_id, "get_credentials", {})
        store.begin_step(job_id, "media_upload", lease)
    sent(store, a, 4, lease)
    sent(store, b, 3, lease)
    assert store.get_batch(batch).bytes_done == 7
    sent(store, a, 2, lease)  # a retried upload, from the start again
    sent(store, a, 6, lease)
    assert store.get_batch(batch).bytes_done == 9
    store.finish_step(a, "media_upload", {}, lease=lease)
    jobs.succeed(store, a, {"ok": 1})
    assert store.get_batch(batch).bytes_done == 13  # a: its whole file (10), b: 3 sent so far
    store.mark_failed(b, "media_upload", StepError(step="media_upload", message="no"), lease=lease)
    assert store.get_batch(batch).bytes_done == 10
    store.begin_run(b, trigger="test", from_step="media_upload")
    store.begin_step(b, "media_upload", lease)
    sent(store, b, 5, lease)
    assert store.get_batch(batch).bytes_done == 15


def test_a_batch_delivery_that_failed_is_retried_and_an_operator_can_deliver_it_again(store):
    """A batch.completed delivery goes through the due set like a job's: an attempt that may pass
    comes due again, and ``redeliver_batch`` (ferry batch notify, POST /batches/{id}/notify) adds
    a new delivery of the last completion, due now, shown in the batch's record."""
    batch = store.open_batch(None, "https://example.com/hook")
    [job_id] = add(store, batch, 1)
    with pytest.raises(NotifyRefused, match="not complete"):
        store.redeliver_batch(batch)
    fail(store, job_id)
    store.seal_batch(batch)
    for attempt in (1, 2):
        [due] = store.claim_due_deliveries(30)
        assert due.job_id == f"batch:{batch}"
        begun = store.begin_delivery(due, 30)
        assert begun is not None and begun[1].attempts == attempt
        delivery = begun[1]
        delivery.status, delivery.last_status = DeliveryStatus.RETRYING if attempt == 1 else DeliveryStatus.FAILED, 500
        store.end_delivery_attempt(due.job_id, delivery, time.time() - 1 if attempt == 1 else None)
    assert store.claim_due_deliveries(30) == []
    [first] = store.get_batch(batch).notifications
    assert (first.status, first.attempts, first.trigger) == (DeliveryStatus.FAILED, 2, "end")

    again = store.redeliver_batch(batch)
    assert (again.event, again.trigger, again.run, again.status) == ("batch.completed", "redeliver", 1,
                                                                       DeliveryStatus.PENDING)
    assert [d.id for d in store.get_batch(batch).notifications] == [first.id, again.id]
    [due] = store.claim_due_deliveries(30)
    assert (due.job_id, due.delivery_id) == (f"batch:{batch}", again.id)
    with pytest.raises(NotifyRefused, match="no callback_url"):
        quiet = store.open_batch()
        store.seal_batch(quiet)
        store.redeliver_batch(quiet)
    with pytest.raises(BatchNotFound):
        store.redeliver_batch("nope")


def test_single_replays_complete_the_batch_once_per_time_nothing_of_it_is_left_to_run(store):
    """``ferry replay JOB`` of jobs of a completed batch: one after the other (each ending before
    the next starts) completes it twice; two enqueued together complete it once (docs/webhooks.md)."""
    batch = store.open_batch(None, "https://example.com/hook")
    a, b = add(store, batch, 2)
    fail(store, a)
    fail(store, b)
    store.seal_batch(batch)
    for job_id in (a, b):
        store.begin_run(job_id, trigger="test", from_step="get_credentials")
        fail(store, job_id)
    assert store.get_batch(batch).completions == 3
    store.begin_run(a, trigger="test", from_step="get_credentials")
    store.begin_run(b, trigger="test", from_step="get_credentials")
    fail(store, a)
    assert store.get_batch(batch).finished_at is None
    jobs.succeed(store, b, {"ok": 1})
    record = store.get_batch(batch)
    assert record.completions == 4 and len(record.notifications) == 4
    assert [c["run"] for c in completions(store)] == [1, 2, 3, 4]
