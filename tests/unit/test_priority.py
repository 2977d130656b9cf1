"""A job's ``priority`` and ``tenant`` on every front door (Python, HTTP, manifest rows), shown in
the record and the list rows, filterable, and changeable while the job waits (one job, a batch).

Runs on the session's real redis-server, in a database of its own (no worker consumes there).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from producers import keys
from producers.client import Ferry, JobRequest
from producers.embedded import RedisLocation
from producers.errors import BatchNotFound, JobNotFound, SubmitError
from producers.records import JobStatus
from producers.web.app import create_app
from tests import jobs

DB = 13  # other tests use 0 and 3-12
PDF = b"%PDF-1.4\n" + b"x" * 200 + b"\n%%EOF\n"
TOKEN = "prio-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def ferry(module_db: tuple[RedisLocation, redis.Redis], tmp_path: Path) -> Iterator[Ferry]:
    (tmp_path / "doc.pdf").write_bytes(PDF)
    with contextlib.closing(jobs.producer(module_db[0], tmp_path)) as client:
        yield client


def body(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {"kind": "assets-attachment", "connection": "acme", "file": str(tmp_path / "doc.pdf"),
            "params": {"object": "88"}, **extra}


def submit(ferry: Ferry, tmp_path: Path, **extra: str) -> str:
    return ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                        params={"object": "88"}, **extra).id  # type: ignore[arg-type]


def test_a_single_job_is_normal_and_a_batch_s_jobs_low_unless_asked(ferry, tmp_path, module_db):
    plain = ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                         params={"object": "88"})
    assert (plain.priority, plain.tenant) == ("normal", None)
    meta = json.loads(module_db[1].hget(keys.job(plain.id), "meta"))
    assert "priority" not in meta and "tenant" not in meta  # the default costs no byte
    high = ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                        params={"object": "88"}, priority="high", tenant="acme-corp")
    assert (high.priority, high.tenant) == ("high", "acme-corp")
    assert ferry.status(high.id).model_dump(include={"priority", "tenant"}) == {"priority": "high",
                                                                                "tenant": "acme-corp"}
    many = ferry.submit_many([JobRequest.model_validate(body(tmp_path)),
                              JobRequest.model_validate(body(tmp_path, priority="normal", tenant="t2"))],
                             tenant="t1")
    assert [(o[0].priority, o[0].tenant) for o in many] == [("low", "t1"), ("normal", "t2")]  # type: ignore[index]
    assert [(r.priority, r.tenant) for r in ferry.store.rows([high.id, plain.id])] == [
        ("high", "acme-corp"), ("normal", None)]


@pytest.mark.parametrize(("field", "value"), [("priority", "urgent"), ("tenant", "a b"), ("tenant", "x" * 65),
                                              ("tenant", "-lead")])
def test_an_unknown_priority_or_an_unsafe_tenant_is_refused(ferry, tmp_path, field, value):
    with pytest.raises(SubmitError) as refused:
        submit(ferry, tmp_path, **{field: value})
    assert [p.field for p in refused.value.problems] == [field]


def test_the_list_filters_by_priority_and_tenant(ferry, tmp_path):
    low = submit(ferry, tmp_path, priority="low", tenant="t1")
    high = submit(ferry, tmp_path, priority="high", tenant="t1")
    other = submit(ferry, tmp_path, priority="high", tenant="t2")
    assert [j.id for j in ferry.jobs(priority="high").jobs] == [other, high]
    assert [j.id for j in ferry.jobs(tenant="t1").jobs] == [high, low]
    assert [j.id for j in ferry.jobs(priority="low", tenant="t1", status="queued").jobs] == [low]


def test_a_waiting_job_s_priority_changes_and_an_ended_one_s_does_not(ferry, tmp_path):
    job_id = submit(ferry, tmp_path)
    assert ferry.set_priority(job_id, "high") and ferry.status(job_id).priority == "high"
    assert ferry.set_priority(job_id, "normal") and ferry.status(job_id).priority == "normal"
    ferry.cancel(job_id)
    assert not ferry.set_priority(job_id, "high") and ferry.status(job_id).priority == "normal"
    with pytest.raises(JobNotFound):
        ferry.set_priority("no-such-job", "high")
    with pytest.raises(ValueError, match="priority"):
        ferry.set_priority(job_id, "urgent")


def test_a_batch_s_waiting_jobs_change_priority_together(ferry, tmp_path):
    outcomes = ferry.submit_many([JobRequest.model_validate(body(tmp_path)) for _ in range(3)])
    ids = [o[0].id for o in outcomes]  # type: ignore[index]
    ferry.cancel(ids[0])
    assert ferry.set_batch_priority(outcomes.batch, "high") == 2
    assert [ferry.status(i).priority for i in ids] == ["low", "high", "high"]
    with pytest.raises(BatchNotFound):
        ferry.set_batch_priority("no-such-batch", "high")


def test_http_takes_priority_and_tenant_per_job_and_per_batch_and_changes_them(ferry, tmp_path):
    with TestClient(create_app(ferry, tokens=[TOKEN])) as client:
        one = client.post("/jobs", json=body(tmp_path, priority="high", tenant="t1"), headers=AUTH)
        assert one.status_code == 202 and (one.json()["priority"], one.json()["tenant"]) == ("high", "t1")
        bad = client.post("/jobs", json=body(tmp_path, tenant="no spaces"), headers=AUTH)
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "tenant"
        batch = client.post("/jobs:batch", headers=AUTH, json={
            "jobs": [body(tmp_path), body(tmp_path, priority="normal")], "priority": "high", "tenant": "t9"})
        assert [(r["job"]["priority"], r["job"]["tenant"]) for r in batch.json()["results"]] == [
            ("high", "t9"), ("normal", "t9")]
        listed = client.get("/jobs", params={"tenant": "t9", "priority": "normal"}, headers=AUTH).json()["jobs"]
        assert [j["id"] for j in listed] == [batch.json()["results"][1]["job"]["id"]]
        job_id = one.json()["id"]
        changed = client.post(f"/jobs/{job_id}/priority", json={"priority": "low"}, headers=AUTH)
        assert changed.status_code == 200 and changed.json()["changed"] == 1
        assert client.get(f"/jobs/{job_id}", headers=AUTH).json()["priority"] == "low"
        assert 'id="job-priority">low<' in client.get(f"/ui/job/{job_id}", headers=AUTH).text
        ferry.cancel(job_id)
        assert client.post(f"/jobs/{job_id}/priority", json={"priority": "high"}, headers=AUTH).status_code == 409
        whole = client.post(f"/batches/{batch.json()['batch']}/priority", json={"priority": "low"}, headers=AUTH)
        assert whole.json()["changed"] == 2
        assert client.post("/batches/nope/priority", json={"priority": "low"}, headers=AUTH).status_code == 404
    assert {ferry.status(r["job"]["id"]).priority for r in batch.json()["results"]} == {"low"}
    assert ferry.status(job_id).status == JobStatus.CANCELLED


def test_manifest_lines_and_columns_carry_priority_and_tenant(tmp_path):
    from producers.cli.batch import read_manifest

    csv = tmp_path / "jobs.csv"
    csv.write_text("kind,connection,file,params.object,priority,tenant\n"
                   "assets-attachment,acme,doc.pdf,88,high,t1\nassets-attachment,acme,doc.pdf,89,,\n"
                   "assets-attachment,acme,doc.pdf,90,urgent,\n")
    lines = read_manifest(csv)
    assert [(ln.request.priority, ln.request.tenant) for ln in lines[:2]] == [("high", "t1"), (None, None)]
    assert lines[2].request is None and lines[2].problems[0].field == "priority"
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text(json.dumps({"kind": "assets-attachment", "connection": "acme", "file": "doc.pdf",
                                 "params": {"object": "88"}, "priority": "low", "tenant": "t2"}) + "\n")
    [line] = read_manifest(jsonl)
    assert (line.request.priority, line.request.tenant) == ("low", "t2")


def test_the_queue_wait_is_observed_under_the_job_s_priority():
    from producers.records import JobRecord as Record
    from producers.records import RunRecord, StepRecord
    from worker import metrics

    def count(priority: str) -> float:
        return sum(s.value for m in metrics.QUEUE_WAIT.collect() for s in m.samples
            if s.name.endswith("_count") and s.labels.get("priority") == priority)

    job = Record(id="j", kind="assets-attachment", connection="acme", status=JobStatus.RUNNING,
                 created_at="2026-01-01T00:00:00.000Z", priority="high", steps=[StepRecord(name="get_credentials")],
                 runs=[RunRecord(number=1, trigger="submit", from_step="get_credentials",
                                 started_at="2026-01-01T00:00:00.000Z")])
    before = count("high"), count("normal")
    metrics.first_start(job, "get_credentials", 1)
    assert (count("high"), count("normal")) == (before[0] + 1, before[1])
