"""The operator's controls in the store (cancel, the gate in a step's start, pause / resume, connections,
heartbeats, search) and in the rate limiter (an operator's pause sends nothing)."""

from __future__ import annotations

import fakeredis
import pytest

from producers import keys
from producers.records import FileInfo, JobStatus, StepError, StepStatus
from producers.store import CANCELLED, CANCELLING, FINISHED_ALREADY, Filters, JobStore
from tests import jobs
from worker.errors import Throttled
from worker.rate_limit import ConnectionLimiter

STEPS = ["get_credentials", "media_upload", "link_attachment"]


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True))


def new_job(store: JobStore, name: str = "a.pdf", key: str | None = None, connection: str = "acme") -> str:
    record, _ = jobs.create(store, kind="assets-attachment", connection=connection, steps=STEPS,
                             params={"object": "88"}, file=FileInfo(path=f"/tmp/{name}", name=name),
                             idempotency_key=key)
    return record.id


def test_a_queued_job_is_cancelled_at_once_and_stays_until_purged(store):
    job_id = new_job(store)
    outcome = store.cancel(job_id, "ops")
    assert (outcome.outcome, outcome.status) == (CANCELLED, "cancelled")
    record = store.get(job_id)
    assert record.status == JobStatus.CANCELLED and record.done and record.finished_at
    assert record.runs[-1].outcome == "cancelled" and record.runs[-1].note == "cancelled by ops"
    assert store.counts()["cancelled"] == 1 and store.counts()["queued"] == 0
    assert store.select(Filters(status="cancelled")).ids == [job_id]
    assert store.redis.ttl(keys.job(job_id)) == -1
    assert store.cancel(job_id, "ops").outcome == FINISHED_ALREADY


def test_a_running_step_finishes_and_the_job_is_cancelled_at_its_next_step(store):
    job_id = new_job(store)
    jobs.start_step(store, job_id, "get_credentials")
    assert store.cancel(job_id, "ops").outcome == CANCELLING
    assert store.get(job_id).status == JobStatus.RUNNING
    store.finish_step(job_id, "get_credentials", {"token": "x"})

    assert store.begin_step(job_id, "media_upload").outcome == "cancel"
    assert store.get(job_id).step("media_upload").attempts == 0  # no attempt spent
    assert store.settle_cancel(job_id).outcome == CANCELLED
    record = store.get(job_id)
    assert record.status == JobStatus.CANCELLED and "cancelled by ops" in (record.runs[-1].note or "")
    assert [s.status for s in record.steps] == [StepStatus.SUCCEEDED, StepStatus.PENDING, StepStatus.PENDING]


def test_a_retrying_job_is_cancelled_at_once(store):
    job_id = new_job(store)
    jobs.start_step(store, job_id, "media_upload")
    store.retry_step(job_id, "media_upload", error=_error(), delay=30)
    assert store.cancel(job_id, "ops").outcome == CANCELLED


def test_a_replay_clears_the_cancel(store):
    job_id = new_job(store)
    store.cancel(job_id, "ops")
    store.begin_run(job_id, trigger="cli", from_step="get_credentials")
    assert store.get(job_id).status == JobStatus.QUEUED
    assert store.begin_step(job_id, "get_credentials").outcome == "started"


def test_a_paused_connection_parks_steps_and_resume_hands_them_back_once(store):
    first, second = new_job(store), new_job(store)
    other = new_job(store, connection="other")
    assert store.pause_connection("acme", "ops") and not store.pause_connection("acme", "ops")

    assert store.begin_step(first, "get_credentials").outcome == "parked"
    assert store.begin_step(second, "media_upload").outcome == "parked"
    assert store.get(first).step("get_credentials").attempts == 0  # parked, no attempt spent
    assert store.begin_step(other, "get_credentials").outcome == "started"
    state = store.connection_states(["acme", "other"])
    assert state["acme"].paused == {"by": "ops", "at": state["acme"].paused["at"]}
    assert (state["acme"].parked, state["acme"].jobs["queued"]) == (2, 2)
    assert state["other"].paused is None and state["other"].jobs["running"] == 1

    was_paused, parked = store.resume_connection("acme")
    assert was_paused and sorted(parked) == sorted([(first, "get_credentials"), (second, "media_upload")])
    assert store.resume_connection("acme") == (False, [])
    assert store.begin_step(first, "get_credentials").outcome == "started"


def test_the_limiter_sends_nothing_while_an_operator_pauses_the_connection(store):
    limiter = ConnectionLimiter(store.redis, "acme", per_second=None)
    assert limiter.acquire() is None
    store.pause_connection("acme", "ops")
    with pytest.raises(Throttled, match="paused by an operator"):
        limiter.acquire()


def test_a_429_pause_shows_until_when(store):
    ConnectionLimiter(store.redis, "acme", per_second=None).pause(30)
    assert store.connection_states(["acme"])["acme"].throttled_until is not None


def test_workers_gather_the_steps_their_pool_processes_run(store):
    base = {"hostname": "h", "version": "1", "last_heartbeat": "2026-01-01T00:00:00.000Z"}
    store.beat("h:1", {**base, "pid": 1, "parent": None, "pool": "prefork", "slots": 2, "running": []}, 30)
    store.beat("h:2", {**base, "pid": 2, "parent": 1, "running": [{"job_id": "j", "step": "s", "since": "t"}]}, 30)
    store.beat("h:9", {**base, "pid": 9, "parent": None, "pool": "threads", "slots": 32, "running": []}, 30)
    workers = store.workers()
    assert [(w["pid"], len(w["running"])) for w in workers] == [(1, 1), (9, 0)]
    store.end_beat("h:9")
    store.redis.delete(keys.heartbeat("h:2"))  # expired
    assert [w["pid"] for w in store.workers()] == [1]
    assert store.redis.zcard(keys.heartbeats()) == 1


def test_search_by_id_idempotency_key_or_file_name(store):
    scan = new_job(store, "Scan-2024.pdf", key="scan-88")
    other = new_job(store, "logo.png")
    assert store.lookup(scan) == [scan]
    assert store.lookup("scan-88") == [scan]
    assert store.lookup("nothing") == []
    assert store.select(Filters.parse({"file_name": "scan-20"})).ids == [scan]
    assert store.select(Filters.parse({"file_name": ".png", "status": "queued"})).ids == [other]
    assert store.count(Filters.parse({"file_name": "a"})) == 1


def _error() -> StepError:
    return StepError(step="media_upload", status=503, message="busy", retryable=True)
