"""Bulk submission end to end: jobs written by ``Ferry.submit_many`` (records and Celery messages
in one MULTI per chunk) are consumed by the real worker exactly as one-by-one submissions are."""

from __future__ import annotations

import json
import time

from producers.client import Ferry, JobRequest
from producers.records import JobRecord, JobStatus
from tests.integration.helpers import sha256
from worker.processes import WorkerProcess

DEFAULT_WORKER_DB = 4


def wait_all(ferry: Ferry, ids: list[str], timeout: float = 120) -> list[JobRecord]:
    deadline = time.monotonic() + timeout
    while True:
        records = [ferry.status(i) for i in ids]
        if all(r.done for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_a_bulk_submission_runs_every_job_through_its_whole_chain(ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    docs = []
    for n in range(12):
        doc = tmp_path / f"scan-{n}.pdf"
        doc.write_bytes(b"%PDF-1.4\n" + bytes([n]) * 900 + b"\n%%EOF\n")
        docs.append(doc)
    requests = [JobRequest(kind="assets-attachment", connection="acme", file=str(doc),
                           params={"object": seed["object_id"]}, idempotency_key=f"bulk-{doc.name}")
                for doc in docs]

    outcomes = ferry.submit_many(requests, chunk_size=5)
    again = ferry.submit_many(requests[:3])

    ids = [outcome[0].id for outcome in outcomes if isinstance(outcome, tuple)]
    assert len(ids) == len(docs)
    assert [o[0].id for o in again if isinstance(o, tuple)] == ids[:3]  # the same jobs, not new ones
    records = wait_all(ferry, ids)
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * len(docs)
    assert all(s.attempts == 1 for r in records for s in r.steps)
    landed = {u["sha256"] for u in sandbox.uploads()}
    assert {sha256(doc) for doc in docs} <= landed
    assert len(sandbox.attachments()) == len(docs)


def test_the_default_worker_runs_many_jobs_at_once(ferry_env, redis_location, sandbox, tmp_path):
    """``ferry worker`` with no options: the threads pool with many slots, on its own database."""
    own = ferry_env.isolated(tmp_path, DEFAULT_WORKER_DB)
    ferry = own.ferry()
    sandbox.add_fault(path="/media/file", latency_ms=300)  # every upload waits: slots must overlap
    seed = sandbox.seed()
    doc = tmp_path / "doc.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + b"z" * 900 + b"\n%%EOF\n")
    worker = WorkerProcess(own.env, tmp_path / "worker.log", concurrency=None, pool=None).wait_ready()
    try:
        outcomes = ferry.submit_many([JobRequest(kind="assets-attachment", connection="acme", file=str(doc),
                                                 params={"object": seed["object_id"]}) for _ in range(8)])
        records = wait_all(ferry, [o[0].id for o in outcomes if isinstance(o, tuple)])
    finally:
        worker.stop()
        ferry.close()
    banners = [json.loads(line) for line in worker.log().splitlines() if '"worker starting"' in line]
    assert banners and all((b["pool"], b["concurrency"]) == ("thread", 32) for b in banners)  # Celery's banner
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 8
    uploads = sorted((r.step("media_upload").started_at or "", r.step("media_upload").finished_at or "")
                     for r in records)
    overlapping = sum(1 for start, _ in uploads if start < uploads[0][1])
    assert overlapping > 1, f"uploads ran one at a time: {uploads}"
