"""JobStore: the record a user reads back is the record the worker wrote."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest

from producers import keys
from producers.errors import IdempotencyConflict, JobNotFound
from producers.records import MAX_ATTEMPT_HISTORY, AttemptStatus, FileInfo, JobStatus, StepError, StepStatus
from producers.store import Filters, JobStore, Lease, OutboxEntry, Outgoing
from tests import jobs


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True), retention_seconds=60)


def new_job(store: JobStore, kind: str = "assets-attachment", connection: str = "acme", key: str | None = None):
    return jobs.create(store, kind=kind, connection=connection,
                        steps=["get_credentials", "media_upload", "link_attachment"],
                        params={"object": "88"}, file=FileInfo(path="/tmp/a.pdf", name="a.pdf", size=3),
                        idempotency_key=key)


def test_a_new_job_is_queued_with_every_declared_step_pending(store):
    job, created = new_job(store)
    assert created
    assert job.status == JobStatus.QUEUED
    assert [s.name for s in job.steps] == ["get_credentials", "media_upload", "link_attachment"]
    assert all(s.status == StepStatus.PENDING and s.attempts == 0 for s in job.steps)
    assert store.get(job.id).file.name == "a.pdf"


def test_the_same_idempotency_key_returns_the_existing_job(store):
    first, created = new_job(store, key="scan-88")
    again, created_again = new_job(store, key="scan-88")
    assert created and not created_again
    assert again.id == first.id
    assert store.counts()["queued"] == 1


def test_steps_record_attempts_results_and_the_job_its_outcome(store):
    job, _ = new_job(store)
    jobs.start_step(store, job.id, "get_credentials")
    store.retry_step(job.id, "get_credentials", StepError(step="get_credentials", status=429,
                                                            message="slow down", retryable=True), 2)
    jobs.start_step(store, job.id, "get_credentials")
    store.finish_step(job.id, "get_credentials", {"client_id": "c"})
    record = store.get(job.id)
    step = record.step("get_credentials")
    assert record.status == JobStatus.RUNNING
    assert step.attempts == 2 and step.status == StepStatus.SUCCEEDED and step.result == {"client_id": "c"}
    jobs.succeed(store, job.id, {"attachment_id": "7"})
    done = store.get(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.finished_at and done.result == {"attachment_id": "7"}
    assert store.redis.ttl(f"ferry:job:{job.id}") > 0  # succeeded jobs expire after the retention


def test_a_failed_job_keeps_step_status_and_message_and_never_expires(store):
    job, _ = new_job(store)
    jobs.start_step(store, job.id, "get_credentials")
    store.mark_failed(job.id, "get_credentials",
                      StepError(step="get_credentials", status=404, message="TCS 404"))
    record = store.get(job.id)
    assert record.status == JobStatus.FAILED
    assert record.error.step == "get_credentials" and record.error.status == 404
    assert record.error.message == "TCS 404"
    assert store.redis.ttl(f"ferry:job:{job.id}") == -1
    assert record.runs[-1].outcome == "failed"


def test_lists_are_newest_first_filtered_and_paged_without_gaps(store):
    ids = [new_job(store, kind="assets-avatar" if i % 2 else "assets-attachment")[0].id for i in range(7)]
    page = store.list(limit=3)
    assert [j.id for j in page.jobs] == ids[::-1][:3]
    seen = [j.id for j in page.jobs]
    while page.next_cursor:
        page = store.list(limit=3, cursor=page.next_cursor)
        seen += [j.id for j in page.jobs]
    assert seen == ids[::-1]
    avatars = store.list(kind="assets-avatar", status="queued", limit=10).jobs
    assert [j.id for j in avatars] == [i for n, i in enumerate(ids) if n % 2][::-1]


def test_select_pages_ids_counts_them_and_rows_show_them_without_their_steps(store):
    ids = [new_job(store, kind="assets-avatar" if i % 2 else "assets-attachment")[0].id for i in range(5)]
    store.mark_failed(ids[1], "get_credentials", StepError(step="get_credentials", status=401, message="no"))
    everything = store.select(Filters())
    assert everything.ids == ids[::-1] and everything.next_cursor is None
    first = store.select(Filters(), limit=2)
    assert first.ids == ids[::-1][:2]
    assert store.select(Filters(), cursor=first.next_cursor).ids == ids[::-1][2:]
    failed_401 = Filters(http_status=401)
    assert store.select(failed_401).ids == [ids[1]] and store.count(failed_401) == 1
    assert store.count(Filters(kind="assets-avatar")) == 2
    rows = {r.id: r for r in store.rows([ids[1], "gone"])}
    assert list(rows) == [ids[1]]
    assert (rows[ids[1]].status, rows[ids[1]].error.status, rows[ids[1]].file) == ("failed", 401, "a.pdf")
    assert store.statuses([ids[0], ids[1], "gone"]) == ["queued", "failed", None]


def test_status_moves_a_job_between_status_lists(store):
    job, _ = new_job(store)
    jobs.start_step(store, job.id, "get_credentials")
    assert [j.id for j in store.list(status="running").jobs] == [job.id]
    assert store.list(status="queued").jobs == []


def test_secrets_live_in_their_own_expiring_key_and_never_in_the_record(store):
    job, _ = new_job(store)
    store.put_secret(job.id, "get_credentials", {"jwt": "eyJhbGciOi.x.y"}, ttl_seconds=30)
    assert store.get_secret(job.id, "get_credentials") == {"jwt": "eyJhbGciOi.x.y"}
    assert 0 < store.redis.pttl(f"ferry:secret:{job.id}:get_credentials") <= 30_000
    assert "eyJ" not in store.get(job.id).model_dump_json()
    store.put_secret(job.id, "media_upload", {"jwt": "expired"}, ttl_seconds=-5)
    assert store.get_secret(job.id, "media_upload") is None


def test_replay_run_keeps_earlier_outputs_and_history(store):
    job, _ = new_job(store)
    jobs.start_step(store, job.id, "get_credentials")
    store.finish_step(job.id, "get_credentials", {"client_id": "c"})
    jobs.start_step(store, job.id, "media_upload")
    store.mark_failed(job.id, "media_upload", StepError(step="media_upload", status=413, message="too big"))
    again = store.begin_run(job.id, trigger="cli", from_step="media_upload")
    assert again.status == JobStatus.QUEUED and again.error is None
    assert again.step("get_credentials").status == StepStatus.REUSED
    assert again.step("media_upload").status == StepStatus.PENDING
    assert [r.outcome for r in again.runs] == ["failed", None]
    assert jobs.outputs(store, job.id) == {"get_credentials": {"client_id": "c"}}


def test_missing_and_deleted_jobs(store):
    with pytest.raises(JobNotFound):
        store.get("nope")
    job, _ = new_job(store)
    assert store.delete(job.id)
    assert store.find(job.id) is None and store.list().jobs == []


def test_an_idempotency_key_reused_for_a_different_job_is_refused(store):
    first, _ = new_job(store, key="scan-88")
    with pytest.raises(IdempotencyConflict) as exc:
        jobs.create(store, kind="assets-attachment", connection="acme",
                     steps=["get_credentials", "media_upload", "link_attachment"],
                     params={"object": "89"}, file=FileInfo(path="/tmp/a.pdf", name="a.pdf", size=3),
                     idempotency_key="scan-88")
    assert first.id in str(exc.value) and "params" in str(exc.value)
    assert store.counts()["queued"] == 1


# ---- attempt and run history ---------------------------------------------------------------------
def retryable(status: int, message: str) -> StepError:
    return StepError(step="get_credentials", status=status, message=message, retryable=True)


def test_every_attempt_keeps_its_outcome_when_the_step_later_succeeds(store):
    job, _ = new_job(store)
    jobs.start_step(store, job.id, "get_credentials")
    store.retry_step(job.id, "get_credentials", retryable(503, "unavailable"), 1.5)
    jobs.start_step(store, job.id, "get_credentials")
    store.finish_step(job.id, "get_credentials", {"client_id": "c"})

    first, second = store.get(job.id).step("get_credentials").history
    assert (first.run, first.number, first.status, first.http_status, first.message, first.retry_delay) \
        == (1, 1, AttemptStatus.RETRIED, 503, "unavailable", 1.5)
    assert (second.run, second.number, second.status, second.http_status, second.message) \
        == (1, 2, AttemptStatus.SUCCEEDED, None, None)
    assert all(a.started_at and a.finished_at and a.started_at <= a.finished_at for a in (first, second))
    assert first.finished_at <= second.started_at


def test_a_step_keeps_its_last_20_attempts(store):
    job, _ = new_job(store)
    for _ in range(MAX_ATTEMPT_HISTORY + 5):
        jobs.start_step(store, job.id, "get_credentials")
        store.retry_step(job.id, "get_credentials", retryable(429, "slow down"), 0.1)
    step = store.get(job.id).step("get_credentials")
    assert step.attempts == 25
    assert [a.number for a in step.history] == list(range(6, 26))
    assert MAX_ATTEMPT_HISTORY == 20


def test_a_successful_replay_keeps_why_the_first_run_failed(store):
    job, _ = new_job(store)
    jobs.start_step(store, job.id, "get_credentials")
    store.finish_step(job.id, "get_credentials", {"client_id": "c"})
    jobs.start_step(store, job.id, "media_upload")
    refused = StepError(step="media_upload", status=413, message="too big")
    store.mark_failed(job.id, "media_upload", refused)
    store.begin_run(job.id, trigger="cli", from_step="media_upload")
    jobs.start_step(store, job.id, "media_upload")
    store.finish_step(job.id, "media_upload", {"media_id": "m"})
    jobs.succeed(store, job.id, {"media_id": "m"})

    record = store.get(job.id)
    assert record.error is None and record.status == JobStatus.SUCCEEDED
    first, second = record.runs
    assert (first.outcome, first.error) == ("failed", refused)
    assert (second.outcome, second.error) == ("succeeded", None)
    failed, succeeded = record.step("media_upload").history
    assert (failed.run, failed.number, failed.status, failed.http_status, failed.message) \
        == (1, 1, AttemptStatus.FAILED, 413, "too big")
    assert (succeeded.run, succeeded.number, succeeded.status) == (2, 1, AttemptStatus.SUCCEEDED)
    assert record.step("media_upload").attempts == 1  # the retry budget is per run


def test_an_attempt_whose_worker_died_is_recorded_as_lost(store):
    job, _ = new_job(store)
    jobs.start_step(store, job.id, "get_credentials")  # the worker is killed here; the step runs again
    jobs.start_step(store, job.id, "get_credentials")
    store.finish_step(job.id, "get_credentials", {"client_id": "c"})
    lost, done = store.get(job.id).step("get_credentials").history
    assert (lost.status, lost.finished_at) == (AttemptStatus.LOST, None)
    assert done.status == AttemptStatus.SUCCEEDED


def test_a_job_failed_before_any_attempt_records_no_attempt(store):
    job, _ = new_job(store)  # e.g. the broker refused its message
    store.mark_failed(job.id, "get_credentials", StepError(step="get_credentials", message="broker down"))
    record = store.get(job.id)
    assert record.step("get_credentials").history == []
    assert record.runs[-1].error is not None and record.runs[-1].error.message == "broker down"


# ---- the worker's transitions: one Lua call each ---------------------------------------------------
def test_a_new_job_stores_no_pending_step_nor_its_first_run_and_reads_them_back_whole(store):
    job, _ = new_job(store)
    stored = store.redis.hgetall(f"ferry:job:{job.id}")
    assert sorted(stored) == ["meta", "score", "status"]
    assert "id" not in json.loads(stored["meta"])
    assert "null" not in stored["meta"]
    record = store.get(job.id)
    assert record == job
    step = record.step("get_credentials")
    assert (step.status, step.attempts, step.history, step.result) == (StepStatus.PENDING, 0, [], None)
    [run] = record.runs
    assert (run.number, run.trigger, run.from_step, run.started_at) == (1, "submit", "get_credentials",
                                                                         record.created_at)


def test_a_step_not_stored_begins_as_pending_and_an_undeclared_one_is_missing(store):
    job, _ = new_job(store)
    assert store.begin_step(job.id, "no_such_step").outcome == "missing"
    begun = store.begin_step(job.id, "media_upload")
    assert begun.outcome == "started" and begun.state.step.attempts == 1
    assert begun.state.step.history[0].run == 1
    with pytest.raises(JobNotFound):
        store.finish_step(job.id, "no_such_step", {})
    assert store.get(job.id).step("link_attachment").status == StepStatus.PENDING


def test_begin_takes_the_lease_reads_the_job_and_marks_the_step_running(store):
    job, _ = new_job(store)
    store.redis.set("ferry:rl:acme:pause", "1234.5")
    lease = Lease.new(60)

    begun = store.begin_step(job.id, "get_credentials", lease)

    assert begun.outcome == "started" and begun.paused_until == "1234.5"
    assert begun.job.status == JobStatus.RUNNING and begun.job.params == {"object": "88"}
    assert begun.state.step.status == StepStatus.RUNNING and begun.state.step.attempts == 1
    assert store.get(job.id).step("get_credentials") == begun.state.step
    assert [j.id for j in store.list(status="running").jobs] == [job.id]
    assert store.lease_expiry(job.id) > time.time() + 59
    assert store.begin_step(job.id, "get_credentials", Lease.new(60)).outcome == "busy"


def test_ending_a_step_needs_no_read_releases_the_lease_and_writes_the_next_message(store):
    job, _ = new_job(store)
    lease = Lease.new(60)
    begun = store.begin_step(job.id, "get_credentials", lease)
    then = Outgoing(commands=(("lpush", ("queue", "next-message")),))

    assert store.finish_step(job.id, "get_credentials", {"client_id": "c"}, state=begun.state, lease=lease, then=then)

    assert store.redis.lrange("queue", 0, -1) == ["next-message"]
    assert store.lease_expiry(job.id) == 0
    assert store.get(job.id).step("get_credentials").status == StepStatus.SUCCEEDED
    assert store.begin_step(job.id, "get_credentials", Lease.new(60)).outcome == "done"


def test_the_last_step_ends_the_job_in_the_same_call(store):
    job, _ = new_job(store)
    for name in ("get_credentials", "media_upload", "link_attachment"):
        lease = Lease.new(60)
        begun = store.begin_step(job.id, name, lease)
        last = name == "link_attachment"
        store.finish_step(job.id, name, {"id": name}, state=begun.state, lease=lease,
                          job_result={"attachment_id": "7"} if last else None)
    done = store.get(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.result == {"attachment_id": "7"}
    assert done.runs[-1].outcome == "succeeded" and done.finished_at
    assert store.counts() == {"queued": 0, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0,
                              "scheduled": 0}
    assert 0 < store.redis.ttl(f"ferry:job:{job.id}") <= 60
    assert store.begin_step(job.id, "link_attachment", Lease.new(60)).outcome == "done"


def test_a_worker_whose_lease_was_taken_over_writes_nothing(store):
    job, _ = new_job(store)
    slow = Lease.new(0.001)
    begun = store.begin_step(job.id, "get_credentials", slow)
    time.sleep(0.01)  # its lease lapses; another worker takes the step
    other = Lease.new(60)
    assert store.begin_step(job.id, "get_credentials", other).outcome == "started"

    assert not store.finish_step(job.id, "get_credentials", {"client_id": "late"}, state=begun.state, lease=slow,
                                 then=Outgoing(commands=(("lpush", ("queue", "next")),)))
    assert not store.renew_lease(job.id, slow)

    assert store.get(job.id).step("get_credentials").status == StepStatus.RUNNING
    assert store.redis.llen("queue") == 0 and store.lease_expiry(job.id) > time.time()


def test_a_failed_or_purged_job_begins_nothing(store):
    job, _ = new_job(store)
    store.mark_failed(job.id, "get_credentials", StepError(step="get_credentials", message="no"))
    assert store.begin_step(job.id, "media_upload", Lease.new(60)).outcome == "ended"
    assert store.begin_step("gone", "get_credentials", Lease.new(60)).outcome == "missing"


def test_an_outbox_entry_is_due_once_stale_and_gone_once_done(store):
    job, _ = new_job(store)
    lease = Lease.new(60)
    begun = store.begin_step(job.id, "get_credentials", lease)
    entry = OutboxEntry(job.id, "media_upload", "ferry.atlassian")
    store.finish_step(job.id, "get_credentials", {}, state=begun.state, lease=lease, then=Outgoing(outbox=entry))

    assert store.outbox_due(older_than=60) == []
    assert store.outbox_due(older_than=0) == [entry]
    store.outbox_done(entry)
    assert store.outbox_due(older_than=0) == []


def test_a_purge_removes_the_jobs_secrets_and_step_memos(store):
    job, _ = new_job(store)
    store.redis.set(keys.step_memo(job.id, "link_attachment"), "1700000000.000")  # as the step notes it
    store.put_secret(job.id, "get_credentials", {"jwt": "x"}, 60)
    assert store.delete(job.id)
    assert not store.redis.exists(keys.step_memo(job.id, "link_attachment"))
    assert not store.redis.exists(keys.job_secret(job.id, "get_credentials"))
