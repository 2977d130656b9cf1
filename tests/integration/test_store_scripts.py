"""The store's Lua scripts on a real Redis (the embedded one, over its socket): each loads, is
loaded again after a SCRIPT FLUSH, and each outcome it can answer is the one the store reports.
Driven through the store's methods, the paths production runs."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import redis

from producers import events, keys
from producers.errors import IdempotencyConflict
from producers.records import DeliveryStatus, FileInfo, JobStatus, Progress, StepError, StepStatus
from producers.store import JobStore, Lease, NewJob, OutboxEntry, Outgoing
from producers.store.loader import STORE_SCRIPTS, library
from tests import jobs
from worker.rate_limit import LUA as WORKER_SCRIPTS

STEPS = ["get_credentials", "media_upload", "link_attachment"]
HOOK = "https://hooks.example.com/ferry"


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, retention_seconds=60)


def new_job(store: JobStore, *, key: str | None = None, params: dict[str, str] | None = None,
            callback_url: str | None = None) -> str:
    record, _ = jobs.create(store, kind="assets-attachment", connection="acme", steps=STEPS,
                            params=params or {"object": "88"}, file=FileInfo(path="/tmp/a.pdf", name="a.pdf", size=3),
                            idempotency_key=key, callback_url=callback_url)
    return record.id


def event_types(store: JobStore, job_id: str) -> list[str]:
    return [e.type for e in events.read(store.redis, events.START, events.EventFilters(job=job_id)).events]


@pytest.mark.parametrize("directory", [STORE_SCRIPTS, WORKER_SCRIPTS], ids=["store", "worker"])
def test_every_script_loads(redis_client: redis.Redis, directory: Path) -> None:
    for lua in library(directory).values():
        assert redis_client.script_load(lua.source) == hashlib.sha1(lua.source.encode()).hexdigest(), lua.name


def test_a_script_flushed_from_redis_is_loaded_again(store: JobStore, redis_client: redis.Redis) -> None:
    job = new_job(store)
    redis_client.script_flush()
    assert store.begin_step(job, "get_credentials").outcome == "started"  # EVALSHA, NOSCRIPT, loaded, run


# ---- begin ----------------------------------------------------------------------------------------
def test_begin_answers_missing_for_no_job_and_for_a_step_the_job_does_not_declare(store: JobStore) -> None:
    job = new_job(store)
    assert store.begin_step("nope", "get_credentials").outcome == "missing"
    assert store.begin_step(job, "upload_avatar").outcome == "missing"
    assert store.get(job).status == JobStatus.QUEUED


def test_begin_starts_a_step_leases_the_job_and_moves_its_index(store: JobStore) -> None:
    job = new_job(store)
    begun = store.begin_step(job, "get_credentials", Lease.new(60))
    assert begun.outcome == "started" and begun.state is not None and begun.job is not None
    assert begun.state.step.status == StepStatus.RUNNING and begun.state.step.attempts == 1
    assert begun.job.status == JobStatus.RUNNING == store.get(job).status
    assert store.lease_expiry(job) > time.time() + 50
    assert store.counts()["running"] == 1 and store.counts()["queued"] == 0
    assert event_types(store, job) == ["job.queued", "step.started"]


def test_begin_answers_busy_while_another_worker_holds_the_lease(store: JobStore) -> None:
    job = new_job(store)
    store.begin_step(job, "get_credentials", Lease.new(60))
    assert store.begin_step(job, "get_credentials", Lease.new(60)).outcome == "busy"
    assert store.get(job).step("get_credentials").attempts == 1


def test_begin_answers_done_for_a_step_that_succeeded(store: JobStore) -> None:
    job = new_job(store)
    lease = Lease.new(60)
    begun = store.begin_step(job, "get_credentials", lease)
    assert store.finish_step(job, "get_credentials", {"client_id": "c"}, state=begun.state, lease=lease)
    assert store.begin_step(job, "get_credentials", Lease.new(60)).outcome == "done"


def test_begin_answers_ended_once_the_job_failed(store: JobStore) -> None:
    job = new_job(store)
    store.mark_failed(job, "get_credentials", StepError(step="get_credentials", status=400, message="no"))
    assert store.begin_step(job, "media_upload", Lease.new(60)).outcome == "ended"


def test_begin_answers_cancel_when_a_cancel_waits_for_the_step_before(store: JobStore) -> None:
    job = new_job(store)
    lease = Lease.new(60)
    begun = store.begin_step(job, "get_credentials", lease)
    assert store.cancel(job, "ops").outcome == "cancelling"
    store.finish_step(job, "get_credentials", {}, state=begun.state, lease=lease)
    assert store.begin_step(job, "media_upload", Lease.new(60)).outcome == "cancel"
    assert store.get(job).step("media_upload").status == StepStatus.PENDING


def test_begin_parks_a_step_of_a_paused_connection_and_resume_hands_it_back(store: JobStore) -> None:
    job = new_job(store)
    assert store.pause_connection("acme", "ops")
    assert store.begin_step(job, "get_credentials", Lease.new(60)).outcome == "parked"
    assert store.get(job).step("get_credentials").attempts == 0
    assert store.resume_connection("acme") == (True, [(job, "get_credentials")])
    assert store.resume_connection("acme") == (False, [])


def test_begin_hands_back_the_connections_429_pause(store: JobStore, redis_client: redis.Redis) -> None:
    job = new_job(store)
    redis_client.set(keys.rate_limit_pause("acme"), "1999999999.000")
    assert store.begin_step(job, "get_credentials", Lease.new(60)).paused_until == "1999999999.000"


# ---- settle and renew -----------------------------------------------------------------------------
def test_settle_with_a_lost_lease_writes_nothing(store: JobStore, redis_client: redis.Redis) -> None:
    job = new_job(store, callback_url=HOOK)
    begun = store.begin_step(job, "get_credentials", Lease.new(60))
    entry = OutboxEntry(job, "media_upload", "ferry")
    assert not store.finish_step(job, "get_credentials", {}, state=begun.state, lease=Lease.new(60),
                                 job_result={}, then=Outgoing(commands=(("LPUSH", ("q", "m")),), outbox=entry))
    record = store.get(job)
    assert record.status == JobStatus.RUNNING and record.step("get_credentials").status == StepStatus.RUNNING
    assert event_types(store, job) == ["job.queued", "step.started"]
    assert redis_client.llen("q") == 0 and store.outbox_due(-60) == [] and store.due_deliveries() == 0


def test_settle_writes_the_record_the_next_message_the_outbox_entry_and_the_delivery(
        store: JobStore, redis_client: redis.Redis) -> None:
    job = new_job(store, callback_url=HOOK)
    lease = Lease.new(60)
    begun = store.begin_step(job, "get_credentials", lease)
    entry = OutboxEntry(job, "media_upload", "ferry")
    assert store.finish_step(job, "get_credentials", {}, state=begun.state, lease=lease, job_result={"ok": 1},
                             then=Outgoing(commands=(("LPUSH", ("q", "m")),), outbox=entry))
    record = store.get(job)
    assert record.status == JobStatus.SUCCEEDED and record.result == {"ok": 1}
    assert store.lease_expiry(job) == 0 and 0 < redis_client.ttl(keys.job(job)) <= 60
    assert redis_client.lrange("q", 0, -1) == ["m"] and store.outbox_due(-60) == [entry]
    assert store.counts()["succeeded"] == 1 and store.throughput(1)[-1][1] == 1
    assert store.due_deliveries() == 1


def test_renew_extends_only_the_holders_lease(store: JobStore) -> None:
    job = new_job(store)
    lease = Lease(token="mine", seconds=120)
    store.begin_step(job, "get_credentials", Lease(token="mine", seconds=1))
    assert store.renew_lease(job, lease) and store.lease_expiry(job) > time.time() + 100
    assert not store.renew_lease(job, Lease(token="theirs", seconds=120))


# ---- upload progress ------------------------------------------------------------------------------
def figures(sent: int, total: int = 1000) -> Progress:
    return Progress(bytes_sent=sent, bytes_total=total, rate_bps=100, eta_s=1.0, updated_at="2026-12-07T00:00:00.000Z")


def test_progress_is_kept_on_the_step_and_told_while_the_lease_is_the_holders(store: JobStore) -> None:
    job = new_job(store)
    lease = Lease(token="mine", seconds=120)
    store.begin_step(job, "media_upload", Lease(token="mine", seconds=1))
    record = store.get(job)
    assert store.record_progress(record, "media_upload", figures(400), lease)
    assert store.lease_expiry(job) > time.time() + 100, "a progress write proves the holder alive"
    assert not store.record_progress(record, "media_upload", figures(900), Lease(token="theirs", seconds=120))
    shown = store.get(job).step("media_upload").progress
    assert shown is not None and shown.bytes_sent == 400 and shown.bytes_total == 1000
    assert event_types(store, job)[-1] == events.STEP_PROGRESS


def test_progress_events_never_push_state_changes_out_of_the_stream(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, events_max_length=100)
    job = new_job(store)
    lease = Lease(token="mine", seconds=120)
    store.begin_step(job, "media_upload", lease)
    record = store.get(job)
    for sent in range(events.PROGRESS_KEPT + 50):
        store.record_progress(record, "media_upload", figures(sent, 10**9), lease)
    kinds = [fields["type"] for _, fields in redis_client.xrange(keys.events())]
    assert kinds.count(events.STEP_PROGRESS) == events.PROGRESS_KEPT
    assert kinds[:2] == [events.QUEUED, events.STEP_STARTED], "the state changes are still there"
    assert redis_client.llen(keys.progress_event_ids()) == events.PROGRESS_KEPT


# ---- create ---------------------------------------------------------------------------------------
def test_create_with_a_key_seen_returns_that_job_and_refuses_another(store: JobStore) -> None:
    first = new_job(store, key="scan-88")
    assert new_job(store, key="scan-88") == first
    with pytest.raises(IdempotencyConflict, match="different params"):
        new_job(store, key="scan-88", params={"object": "89"})
    assert store.counts()["queued"] == 1


def test_create_with_a_key_twice_in_one_call_stores_one_job(store: JobStore) -> None:
    def job(obj: str) -> NewJob:
        return NewJob(kind="assets-attachment", connection="acme", steps=tuple(STEPS), params={"object": obj},
                      idempotency_key="k")

    first, again, other = store.create_many([job("1"), job("1"), job("2")])
    assert isinstance(first, tuple) and isinstance(again, tuple) and isinstance(other, IdempotencyConflict)
    assert first[1] and not again[1] and again[0].id == first[0].id
    assert store.counts()["queued"] == 1


def test_chunks_pipelined_after_a_script_flush_are_each_stored_once_in_order(
        store: JobStore, redis_client: redis.Redis) -> None:
    """create_chunks sends a chunk before reading the reply to the one before: NOSCRIPT on both
    (nothing ran) is run again the usual way, each chunk once, and the scores keep the order."""
    def job(n: int, key: str | None = None) -> NewJob:
        return NewJob(kind="assets-attachment", connection="acme", steps=tuple(STEPS), params={"object": str(n)},
                      idempotency_key=key)

    [(old, _)] = store.create_many([job(0, key="k-0")])  # type: ignore[misc]
    redis_client.script_flush()
    chunks = [[job(1, key="k-0"), job(2)], [job(3), job(4, key="k-4"), job(4, key="k-4")], [job(6)]]
    outcomes = list(store.create_chunks(chunks))

    assert [len(o) for o in outcomes if isinstance(o, list)] == [2, 3, 1]
    results = [r for o in outcomes if isinstance(o, list) for r in o]
    assert isinstance(results[0], IdempotencyConflict)  # k-0 named job 0 with another object
    stored = [r[0] for r in results[1:] if isinstance(r, tuple)]
    assert [r.params["object"] for r in stored] == ["2", "3", "4", "4", "6"]
    assert stored[2].id == stored[3].id  # k-4 twice in one chunk: one job
    ids = [r.id for n, r in enumerate(stored) if n != 3]
    assert redis_client.zrange(keys.index_all(), 0, -1) == [old.id, *ids]  # creation order
    assert store.counts()["queued"] == 5


def test_a_chunk_refused_in_a_pipeline_is_its_own_outcome_and_the_line_stays_usable(store: JobStore) -> None:
    batch = store.open_batch(None, None)
    store.seal_batch(batch)
    new = [NewJob(kind="k", connection="c", steps=("s",), params={}, batch=batch)]
    outcomes = list(store.create_chunks([new, new, new], batch=batch))
    assert [type(o).__name__ for o in outcomes] == ["BatchClosed"] * 3
    [(record, created)] = store.create_many([NewJob(kind="k", connection="c", steps=("s",), params={})])  # type: ignore[misc]
    assert created and store.get(record.id).status == JobStatus.QUEUED


def test_create_with_the_key_of_a_purged_job_stores_a_new_one(store: JobStore) -> None:
    first = new_job(store, key="scan-88")
    assert store.delete(first)
    second = new_job(store, key="scan-88", params={"object": "89"})
    assert second != first and store.get(second).params == {"object": "89"}


# ---- deliveries -----------------------------------------------------------------------------------
def test_a_claim_is_taken_once_and_an_ended_attempt_of_a_purged_job_does_not_bring_it_back(
        store: JobStore, redis_client: redis.Redis) -> None:
    job = new_job(store, callback_url=HOOK)
    store.cancel(job, "ops")  # a run ending: its delivery is due
    [due] = store.claim_due_deliveries(lease_seconds=60)
    assert store.claim_due_deliveries(lease_seconds=60) == []
    begun = store.begin_delivery(due, lease_seconds=60)
    assert begun is not None and begun[1].status == DeliveryStatus.DELIVERING
    assert store.begin_delivery(due, lease_seconds=60) is None  # the claim became the attempt's lease
    store.delete(job)
    store.end_delivery_attempt(job, begun[1], None)
    assert not redis_client.exists(keys.job(job)) and store.due_deliveries() == 0
