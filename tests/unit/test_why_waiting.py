"""A job that does not move says why (issue 29): `ferry status` prints these reasons under the
job, from the store alone: the connection paused and by whom, the step's next attempt, and no
live worker or none serving the job's queue."""

from __future__ import annotations

import re

import fakeredis
import pytest

from producers.client import Ferry
from producers.config import parse_config
from producers.records import FileInfo, StepError
from tests import jobs

STEPS = ["get_credentials", "media_upload", "link_attachment"]
CONFIG = {"connections": {"acme": {"service": "atlassian", "site_url": "https://a", "api_url": "https://b",
                                   "email": "e@x", "token_env": "T"}}}


@pytest.fixture
def ferry() -> Ferry:
    return Ferry("redis://unused", config=parse_config(CONFIG), redis_client=fakeredis.FakeRedis(decode_responses=True))


def new_job(ferry: Ferry) -> str:
    record, _ = jobs.create(ferry.store, kind="assets-attachment", connection="acme", steps=STEPS,
                            params={"object": "88"}, file=FileInfo(path="/tmp/a.pdf", name="a.pdf"))
    return record.id


def beat(ferry: Ferry, queues: list[str]) -> None:
    ferry.store.beat("host:1", {"hostname": "host", "pid": 1, "queues": queues,
                                "last_heartbeat": "2026-01-01T00:00:00Z", "running": []}, 30)


def test_with_no_worker_alive_a_queued_job_says_so(ferry: Ferry) -> None:
    job_id = new_job(ferry)
    assert ferry.why_waiting(ferry.status(job_id)) == [
        "no worker is alive (none sent a heartbeat in the last 30 s): start one (ferry worker)"]


def test_a_worker_that_does_not_serve_the_jobs_queue_is_named(ferry: Ferry) -> None:
    job_id = new_job(ferry)
    beat(ferry, ["ferry.awork"])
    assert ferry.why_waiting(ferry.status(job_id)) == [
        "no live worker serves queue ferry.atlassian (they serve ferry.awork)"]
    beat(ferry, ["ferry", "ferry.atlassian"])
    assert ferry.why_waiting(ferry.status(job_id)) == []


def test_a_paused_connection_names_who_paused_it(ferry: Ferry) -> None:
    job_id = new_job(ferry)
    beat(ferry, ["ferry.atlassian"])
    ferry.pause("acme", by="ops@example")
    [reason] = ferry.why_waiting(ferry.status(job_id))
    assert reason.startswith("connection acme is paused (by ops@example at ")
    assert reason.endswith("ferry resume acme")


def test_a_retrying_step_says_when_and_after_what(ferry: Ferry) -> None:
    job_id = new_job(ferry)
    beat(ferry, ["ferry.atlassian"])
    jobs.start_step(ferry.store, job_id, "get_credentials")
    ferry.store.retry_step(job_id, "get_credentials",
                           StepError(step="get_credentials", status=503, message="busy", retryable=True), 90)
    [reason] = ferry.why_waiting(ferry.status(job_id))
    assert reason.startswith("step get_credentials is retrying at ")
    assert re.search(r"\(in \d+ s\) after HTTP 503: busy$", reason), reason


def test_an_ended_job_waits_for_nothing(ferry: Ferry) -> None:
    job_id = new_job(ferry)
    ferry.store.cancel(job_id, "ops")
    assert ferry.why_waiting(ferry.status(job_id)) == []


def test_the_dashboards_job_page_says_it_too(ferry: Ferry) -> None:
    from fastapi.testclient import TestClient

    from producers.web.app import create_app

    job_id = new_job(ferry)
    ferry.pause("acme", by="ops@example")
    client = TestClient(create_app(ferry, tokens=["t"]))
    headers = {"Authorization": "Bearer t"}
    for path in (f"/ui/job/{job_id}", f"/ui/fragments/job/{job_id}"):
        page = client.get(path, headers=headers)
        assert page.status_code == 200, page.text
        assert "Waiting: connection acme is paused (by ops@example at " in page.text.replace("\\u00a0", " ")
        assert "Waiting: no worker is alive" in page.text
