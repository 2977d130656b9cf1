"""``Ferry.submit_many``: many jobs in a few Redis round trips, each stored exactly as ``submit``
stores one, with the same Celery message ``enqueue`` publishes and the same idempotency rules.

Runs on the session's real redis-server, in a database of its own (no worker consumes there), so
the messages can be read back from the queue list.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import keys, queue
from producers import submit as submit_module
from producers.client import Ferry, JobRequest
from producers.config import parse_config
from producers.embedded import RedisLocation
from producers.errors import IdempotencyConflict, SubmitError
from producers.kinds import KINDS, get_kind
from producers.records import JobRecord, JobStatus
from tests import jobs

DB = 7
PDF = b"%PDF-1.4\n" + b"x" * 200 + b"\n%%EOF\n"


@pytest.fixture
def location(module_db: tuple[RedisLocation, redis.Redis]) -> RedisLocation:
    return module_db[0]


@pytest.fixture
def db(module_db: tuple[RedisLocation, redis.Redis]) -> redis.Redis:
    return module_db[1]


@pytest.fixture
def ferry(location: RedisLocation, tmp_path: Path) -> Iterator[Ferry]:
    (tmp_path / "doc.pdf").write_bytes(PDF)
    client = jobs.producer(location, tmp_path)
    yield client
    client.close()


def attachment(tmp_path: Path, obj: str, key: str | None = None) -> JobRequest:
    return JobRequest(kind="assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                      params={"object": obj}, idempotency_key=key)


ATLASSIAN_QUEUE = "ferry.atlassian"  # acme's queue (queue_of: ferry.<service>)


def queued_messages(db: redis.Redis) -> list[dict[str, Any]]:
    """The queue list, oldest first (kombu LPUSHes, the worker BRPOPs), bodies decoded as kombu
    decodes them (base64 only when ``body_encoding`` says so)."""
    messages = [json.loads(raw) for raw in reversed(db.lrange(ATLASSIAN_QUEUE, 0, -1))]
    for message in messages:
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        message["body"] = json.loads(body)
    return messages


def created(outcomes: list[Any]) -> list[JobRecord]:
    assert all(isinstance(o, tuple) for o in outcomes), outcomes
    return [record for record, _ in outcomes]


def test_each_job_is_stored_indexed_and_queued_in_order(ferry, db, tmp_path):
    outcomes = ferry.submit_many([attachment(tmp_path, str(n)) for n in range(7)], chunk_size=3)

    records = created(outcomes)
    assert all(new for _, new in outcomes)
    assert [r.params["object"] for r in records] == [str(n) for n in range(7)]
    assert [ferry.status(r.id) for r in records] == records
    assert records[0].file is not None and records[0].file.mime_type == "application/pdf"
    assert ferry.store.counts()[JobStatus.QUEUED.value] == 7
    assert [j.id for j in ferry.jobs(limit=10).jobs] == [r.id for r in reversed(records)]
    messages = queued_messages(db)
    assert [m["body"][0] for m in messages] == [[r.id] for r in records]
    assert {m["headers"]["task"] for m in messages} == {queue.task_name("get_credentials")}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_message_asks_the_worker_for_what_enqueue_asks(ferry, db, kind):
    """Same queue, task, arguments and routing as ``enqueue``'s ``send_task``, in the slimmed
    form (``queue._Template``): only what a worker reads. One step per message: the next is
    published as the step ends, so no message carries the rest of the chain."""
    spec = get_kind(kind)
    # The router reads the job's connection from its record; this one names acme (atlassian).
    db.hset(keys.job("job-1"), "meta", json.dumps({"connection": "acme"}))
    queue.enqueue(ferry.celery, "job-1", spec)
    [(command, (key, payload))] = queue.ChainMessages(ferry.celery).commands("job-1", spec, ATLASSIAN_QUEUE)
    assert (command, key) == ("lpush", ATLASSIAN_QUEUE)
    db.lpush(key, payload)
    by_enqueue, by_bulk = queued_messages(db)
    assert by_bulk["headers"] == {name: by_enqueue["headers"][name] for name in ("task", "id", "argsrepr")} | {
        "id": by_bulk["headers"]["id"]}
    assert by_bulk["headers"]["task"] == queue.task_name(spec.step_names[0])
    assert by_bulk["headers"]["id"] != by_enqueue["headers"]["id"]
    assert by_bulk["body"] == [["job-1"], {}, {}]
    assert by_enqueue["body"][:2] == [["job-1"], {}] and by_enqueue["body"][2]["chain"] is None
    assert by_bulk["content-type"] == by_enqueue["content-type"] == "application/json"
    assert by_enqueue["content-encoding"] == "utf-8" and "content-encoding" not in by_bulk  # kombu's default
    assert by_bulk["properties"]["delivery_info"] == by_enqueue["properties"]["delivery_info"]
    assert by_bulk["properties"]["delivery_tag"] != by_enqueue["properties"]["delivery_tag"]
    assert len(payload) < 450  # Celery's full form: ~1 030 bytes


def test_the_slim_message_is_read_by_celery_as_the_task_and_its_job(ferry, db):
    """What the worker's Celery makes of the slimmed message: the step's task, the job id as its
    one argument, no eta, expiry, retries or callbacks."""
    from celery.worker.request import Request
    from kombu.transport.virtual import Message

    spec = get_kind("assets-attachment")
    [(_, (_, payload))] = queue.ChainMessages(ferry.celery).commands("job-9", spec, ATLASSIAN_QUEUE)
    def step(job_id: str) -> str:
        return job_id

    ferry.celery.task(name=queue.task_name(spec.step_names[0]), shared=False)(step)
    channel = ferry.celery.connection_for_write().default_channel
    message = Message(json.loads(payload), channel=channel)
    request = Request(message, app=ferry.celery, task=ferry.celery.tasks[queue.task_name(spec.step_names[0])])

    assert (request.name, request.args, request.kwargs) == (queue.task_name("get_credentials"), ["job-9"], {})
    assert request.id == message.headers["id"] and request.eta is None and request.expires is None
    assert request.request_dict.get("retries", 0) == 0 and request.argsrepr == "['job-9']"
    assert request.delivery_info["routing_key"] == ATLASSIAN_QUEUE
    channel.connection.client.release()


def test_a_reused_idempotency_key_returns_the_job_or_refuses_a_different_one(ferry, db, tmp_path):
    [(first, _)] = ferry.submit_many([attachment(tmp_path, "1", key="k-1")])

    again, other, fresh = ferry.submit_many([
        attachment(tmp_path, "1", key="k-1"),  # same job: the stored one, untouched
        attachment(tmp_path, "2", key="k-1"),  # a different job under that key: refused
        attachment(tmp_path, "3", key="k-3"),
    ])

    assert again == (first, False)
    assert isinstance(other, IdempotencyConflict)
    assert "different params" in str(other) and first.id in str(other)
    assert isinstance(fresh, tuple) and fresh[1] is True
    assert db.get(keys.idempotency("k-3")) == fresh[0].id
    assert len(queued_messages(db)) == 2


def test_a_key_repeated_within_one_batch_makes_one_job(ferry, db, tmp_path):
    one, same, different = ferry.submit_many([attachment(tmp_path, "1", key="k"), attachment(tmp_path, "1", key="k"),
                                              attachment(tmp_path, "9", key="k")])

    assert isinstance(one, tuple) and one[1] is True
    assert same == (one[0], False)
    assert isinstance(different, IdempotencyConflict)
    assert ferry.store.counts()[JobStatus.QUEUED.value] == 1
    assert len(queued_messages(db)) == 1


def test_invalid_requests_are_refused_in_place_and_the_rest_submitted(ferry, db, tmp_path):
    bad = JobRequest(kind="assets-attachment", connection="nowhere", file=str(tmp_path / "gone.pdf"))

    good, refused, also_good = ferry.submit_many([attachment(tmp_path, "1"), bad, attachment(tmp_path, "2")])

    assert isinstance(refused, SubmitError) and not isinstance(refused, IdempotencyConflict)
    assert {p.field for p in refused.problems} == {"connection", "file", "object"}
    assert created([good, also_good])
    assert len(queued_messages(db)) == 2


def test_many_files_are_inspected_alike_on_threads(ferry, db, tmp_path):
    for n in range(150):
        (tmp_path / f"doc-{n}.pdf").write_bytes(PDF)
    requests = [JobRequest(kind="assets-attachment", connection="acme", file=str(tmp_path / f"doc-{n}.pdf"),
                           params={"object": str(n)}) for n in range(150)]
    requests[17] = JobRequest(kind="assets-attachment", connection="acme", file=str(tmp_path / "gone.pdf"),
                              params={"object": "17"})

    outcomes = ferry.submit_many(requests)

    assert isinstance(outcomes[17], SubmitError)
    records = created(outcomes[:17] + outcomes[18:])
    assert {r.file.size for r in records if r.file} == {len(PDF)}
    assert [r.file.name for r in records[:3] if r.file] == ["doc-0.pdf", "doc-1.pdf", "doc-2.pdf"]


def test_a_file_named_by_many_jobs_of_a_batch_is_inspected_once(ferry, db, tmp_path, monkeypatch):
    seen: list[str] = []
    real = submit_module.inspect_path

    def counting(path, rule, roots):
        seen.append(path)
        return real(path, rule, roots)

    monkeypatch.setattr(submit_module, "inspect_path", counting)
    (tmp_path / "other.pdf").write_bytes(PDF)
    requests = [attachment(tmp_path, str(n)) for n in range(100)]
    requests.append(JobRequest(kind="assets-attachment", connection="acme", file=str(tmp_path / "other.pdf"),
                               params={"object": "x"}))

    records = created(ferry.submit_many(requests))

    assert sorted(seen) == sorted([str(tmp_path / "doc.pdf"), str(tmp_path / "other.pdf")])
    assert records[0].file == records[1].file and records[0].file is not records[1].file
    assert records[-1].file is not None and records[-1].file.name == "other.pdf"


def test_one_by_one_submit_takes_the_same_path(ferry, db, tmp_path):
    record = ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                          params={"object": "5"}, idempotency_key="one")

    assert ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                        params={"object": "5"}, idempotency_key="one") == record
    with pytest.raises(IdempotencyConflict):
        ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                     params={"object": "6"}, idempotency_key="one")
    assert [m["body"][0] for m in queued_messages(db)] == [[record.id]]


def test_without_redis_each_job_gets_the_error_and_none_is_half_stored(tmp_path):
    (tmp_path / "doc.pdf").write_bytes(PDF)
    config = parse_config({"connections": {"acme": {
        "service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
        "email": "a@b.c", "token_env": "X"}}})
    ferry = Ferry(RedisLocation.from_socket(tmp_path / "no-redis.sock").url, config=config)

    outcomes = ferry.submit_many([attachment(tmp_path, "1"), attachment(tmp_path, "2")])

    assert all(isinstance(o, redis.ConnectionError) for o in outcomes)


def test_a_key_stored_before_and_repeated_within_the_batch_is_judged_against_the_stored_job(ferry, db, tmp_path):
    [(stored, _)] = ferry.submit_many([attachment(tmp_path, "1", key="k")])

    different, same = ferry.submit_many([attachment(tmp_path, "2", key="k"), attachment(tmp_path, "1", key="k")])

    assert isinstance(different, IdempotencyConflict) and stored.id in str(different)
    assert same == (stored, False)
    assert len(queued_messages(db)) == 1


def test_a_key_whose_job_is_gone_is_free_again(ferry, db, tmp_path):
    [(old, _)] = ferry.submit_many([attachment(tmp_path, "1", key="k")])
    db.delete(keys.job(old.id))

    [(new, created_now)] = ferry.submit_many([attachment(tmp_path, "2", key="k")])

    assert created_now and new.id != old.id
    assert db.get(keys.idempotency("k")) == new.id


def test_scores_are_unique_grow_with_submission_and_tell_the_creation_time(ferry, db, tmp_path):
    import time

    before = time.time()
    # 5000 a chunk: the store writes 500 at most per script.
    records = created(ferry.submit_many([attachment(tmp_path, str(n)) for n in range(2500)], chunk_size=5000))
    records += [ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                             params={"object": "last"})]
    after = time.time()

    scores = [float(db.hget(keys.job(r.id), "score")) for r in records]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert [float(s) for _, s in db.zrange(keys.index_all(), 0, -1, withscores=True)] == scores
    assert before * 1e6 - 1e6 <= scores[0] and scores[-1] <= after * 1e6 + 1e6  # ms x 1000
