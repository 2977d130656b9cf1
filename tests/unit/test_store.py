"""JobStore: the record a user reads back is the record the worker wrote."""

from __future__ import annotations

import fakeredis
import pytest

from producers.errors import IdempotencyConflict, JobNotFound
from producers.records import FileInfo, JobStatus, StepError, StepStatus
from producers.selection import Filters
from producers.store import JobStore


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True), retention_seconds=60)


def new_job(store: JobStore, kind: str = "assets-attachment", connection: str = "acme", key: str | None = None):
    return store.create(kind=kind, connection=connection,
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
    store.start_step(job.id, "get_credentials")
    store.retry_step(job.id, "get_credentials", StepError(step="get_credentials", status=429,
                                                            message="slow down", retryable=True), 2)
    store.start_step(job.id, "get_credentials")
    store.finish_step(job.id, "get_credentials", {"client_id": "c"})
    record = store.get(job.id)
    step = record.step("get_credentials")
    assert record.status == JobStatus.RUNNING
    assert step.attempts == 2 and step.status == StepStatus.SUCCEEDED and step.result == {"client_id": "c"}
    store.mark_succeeded(job.id, {"attachment_id": "7"})
    done = store.get(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.finished_at and done.result == {"attachment_id": "7"}
    assert store.redis.ttl(f"ferry:job:{job.id}") > 0  # succeeded jobs expire after the retention


def test_a_failed_job_keeps_step_status_and_message_and_never_expires(store):
    job, _ = new_job(store)
    store.start_step(job.id, "get_credentials")
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
    store.start_step(job.id, "get_credentials")
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
    store.start_step(job.id, "get_credentials")
    store.finish_step(job.id, "get_credentials", {"client_id": "c"})
    store.start_step(job.id, "media_upload")
    store.mark_failed(job.id, "media_upload", StepError(step="media_upload", status=413, message="too big"))
    again = store.begin_run(job.id, trigger="cli", from_step="media_upload")
    assert again.status == JobStatus.QUEUED and again.error is None
    assert again.step("get_credentials").status == StepStatus.REUSED
    assert again.step("media_upload").status == StepStatus.PENDING
    assert [r.outcome for r in again.runs] == ["failed", None]
    assert store.outputs(job.id) == {"get_credentials": {"client_id": "c"}}


def test_missing_and_deleted_jobs(store):
    with pytest.raises(JobNotFound):
        store.get("nope")
    job, _ = new_job(store)
    assert store.delete(job.id)
    assert store.find(job.id) is None and store.list().jobs == []


def test_an_idempotency_key_reused_for_a_different_job_is_refused(store):
    first, _ = new_job(store, key="scan-88")
    with pytest.raises(IdempotencyConflict) as exc:
        store.create(kind="assets-attachment", connection="acme",
                     steps=["get_credentials", "media_upload", "link_attachment"],
                     params={"object": "89"}, file=FileInfo(path="/tmp/a.pdf", name="a.pdf", size=3),
                     idempotency_key="scan-88")
    assert first.id in str(exc.value) and "params" in str(exc.value)
    assert store.counts()["queued"] == 1
