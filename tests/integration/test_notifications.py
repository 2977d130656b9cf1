"""Signed completion webhooks and the event stream, end to end: a real worker and sandbox, real
receivers on loopback, the real HTTP API serving ``GET /events``."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers import events
from producers.client import Ferry
from producers.records import DeliveryRecord, DeliveryStatus, JobRecord
from sandbox.testing import SandboxControl, SandboxProcess, free_port
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import FerryEnv, own_worker
from tests.integration.helpers import png
from worker.processes import WorkerProcess

SECRET = "whsec-test-0123456789"
API_TOKEN = "events-token"
IMAGE_UPLOAD = r"/files/images/users/"
README = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"  # the receiver check users copy


class Receiver:
    """An HTTP server on loopback that records every request and answers with ``answers`` in turn
    (then 200)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ferry"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hooked_worker(tmp_path_factory: pytest.TempPathFactory,
                  sandbox_server: SandboxProcess) -> Iterator[tuple[FerryEnv, WorkerProcess]]:
    """A worker whose [notifications] allow loopback receivers over http and retry quickly."""
    settings = "[notifications]\nallow_http = true\nallow_private = true\nbackoff_seconds = 0.2\n"
    with own_worker(tmp_path_factory.mktemp("hooks"), sandbox_server.control(), settings=settings) as started:
        yield started


@pytest.fixture(scope="module")
def hooked(hooked_worker: tuple[FerryEnv, WorkerProcess]) -> FerryEnv:
    return hooked_worker[0]


@pytest.fixture(scope="module", autouse=True)
def _secret_for_the_worker() -> Iterator[None]:
    # The worker inherits the environment it is started in (tests.fixtures.worker.worker_env).
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FERRY_WEBHOOK_SECRET", SECRET)
        yield


@pytest.fixture
def ferry(hooked: FerryEnv) -> Iterator[Ferry]:
    client = hooked.ferry()
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def upload(ferry: Ferry, sandbox: SandboxControl, tmp_path: Path, callback_url: str | None) -> JobRecord:
    user = sandbox.seed()["awork"]["users"]
    return ferry.submit("awork-image", connection="awork", params={"entity": "users", "id": user},
                        file=str(png(tmp_path / "user.png")), callback_url=callback_url)


def until(ferry: Ferry, job_id: str, done: Callable[[list[DeliveryRecord]], bool], timeout: float = 60) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = ferry.status(job_id)
        if done(record.notifications):
            return record
        time.sleep(0.1)
    raise AssertionError(f"deliveries never got there: {ferry.status(job_id).notifications}")


def readme_check() -> Callable[..., bool]:
    """The receiver's check exactly as the README shows it."""
    text = README.read_text()
    block = re.search(r"<!-- webhook-check -->\s*```python\n(.*?)```", text, re.S)
    assert block, "the README lost its webhook check"
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    return namespace["verify"]  # type: ignore[no-any-return]


# ---- webhooks -------------------------------------------------------------------------------------
def test_the_signature_verifies_with_the_readme_check_and_nothing_else_does(
        ferry: Ferry, hooked: FerryEnv, sandbox: SandboxControl, receiver: Receiver, tmp_path: Path) -> None:
    job = upload(ferry, sandbox, tmp_path, receiver.url)
    record = until(ferry, job.id, lambda ds: bool(ds) and ds[0].status == DeliveryStatus.DELIVERED)

    [(headers, body)] = receiver.received
    verify = readme_check()
    sent = json.loads(body)
    assert verify(SECRET.encode(), headers["Ferry-Signature"], body)
    assert not verify(SECRET.encode(), headers["Ferry-Signature"], body.replace(b"succeeded", b"failed!!!"))
    assert not verify(b"another secret", headers["Ferry-Signature"], body)
    old = int(time.time()) - 301
    stale = f"t={old},v1=" + hmac.new(SECRET.encode(), f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    assert not verify(SECRET.encode(), stale, body)

    [delivery] = record.notifications
    assert headers["Content-Type"] == "application/json"
    assert headers["Ferry-Event"] == sent["event"] == "job.succeeded"
    assert headers["Ferry-Delivery"] == sent["delivery_id"] == delivery.id
    assert sent["job"]["id"] == job.id and sent["job"]["status"] == "succeeded"
    assert sent["job"]["finished_at"] == record.finished_at
    assert (delivery.attempts, delivery.last_status) == (1, 200)

    # `ferry notify` sends it again, as a new delivery
    proc = hooked.cli("notify", job.id)
    assert proc.returncode == 0, proc.stderr
    until(ferry, job.id, lambda ds: len(ds) == 2 and ds[1].status == DeliveryStatus.DELIVERED)
    again = json.loads(receiver.received[1][1])
    assert again["delivery_id"] != delivery.id and again["job"]["id"] == job.id


def test_a_delivery_is_logged_as_one_line_and_its_task_ends_without_a_traceback(
        ferry: Ferry, hooked_worker: tuple[FerryEnv, WorkerProcess], sandbox: SandboxControl,
        receiver: Receiver, tmp_path: Path) -> None:
    """The delivery task's log line once raised TypeError (two values for ``event``) after the
    outcome was saved: every delivery then ended as a Celery task failure with a traceback."""
    _, worker = hooked_worker
    job = upload(ferry, sandbox, tmp_path, receiver.url)
    until(ferry, job.id, lambda ds: bool(ds) and ds[0].status == DeliveryStatus.DELIVERED)

    def task_ended() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in worker.log().splitlines() if job.id in line or "ferry.notify" in line]
        logged = [r for r in lines if r.get("event") == "webhook delivery" and r.get("job_id") == job.id]
        return logged + [r for r in lines if "ferry.notify" in str(r.get("event")) and r.get("level") == "error"]

    deadline = time.monotonic() + 30
    while not task_ended() and time.monotonic() < deadline:
        time.sleep(0.1)
    [line] = task_ended()
    assert line["event"] == "webhook delivery" and line["webhook_event"] == "job.succeeded"
    assert line["delivery_status"] == "delivered" and line["http_status"] == 200
    assert "Traceback" not in worker.log() and "TypeError" not in worker.log()


def test_a_receiver_answering_500_twice_gets_the_event_on_the_third_try(
        ferry: Ferry, sandbox: SandboxControl, tmp_path: Path) -> None:
    flaky = Receiver([500, 500, 200])
    try:
        job = upload(ferry, sandbox, tmp_path, flaky.url)
        record = until(ferry, job.id, lambda ds: bool(ds) and not ds[0].open)
    finally:
        flaky.close()

    [delivery] = record.notifications
    assert (delivery.status, delivery.attempts, delivery.last_status) == (DeliveryStatus.DELIVERED, 3, 200)
    assert len(flaky.received) == 3
    assert len({body for _, body in flaky.received}) == 1  # every retry sends the same body
    assert {h["Ferry-Delivery"] for h, _ in flaky.received} == {delivery.id}


def test_each_run_that_ends_notifies_again(
        ferry: Ferry, hooked: FerryEnv, sandbox: SandboxControl, receiver: Receiver, tmp_path: Path) -> None:
    sandbox.add_fault(path=IMAGE_UPLOAD, method="POST", status=400, times=1)
    job = upload(ferry, sandbox, tmp_path, receiver.url)
    assert ferry.wait(job.id, timeout=60).status == "failed"
    until(ferry, job.id, lambda ds: len(ds) == 1 and not ds[0].open)

    replay = hooked.cli("replay", job.id, "--wait")
    assert replay.returncode == 0, replay.stderr
    record = until(ferry, job.id, lambda ds: len(ds) == 2 and not ds[1].open)

    assert [(d.event, d.run, d.status) for d in record.notifications] == [
        ("job.failed", 1, DeliveryStatus.DELIVERED), ("job.succeeded", 2, DeliveryStatus.DELIVERED)]
    assert [json.loads(body)["event"] for _, body in receiver.received] == ["job.failed", "job.succeeded"]


def test_a_receiver_that_is_down_leaves_the_job_as_it_ended(
        ferry: Ferry, sandbox: SandboxControl, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hooks/ferry"
    job = upload(ferry, sandbox, tmp_path, nobody)
    ended = ferry.wait(job.id, timeout=60)
    assert ended.status == "succeeded"

    record = until(ferry, job.id, lambda ds: bool(ds) and ds[0].attempts >= 3)

    assert record.status == "succeeded" and record.finished_at == ended.finished_at
    delivery = record.notifications[0]
    assert delivery.status in (DeliveryStatus.RETRYING, DeliveryStatus.DELIVERING)
    assert delivery.last_status is None and delivery.last_error  # no answer: why is recorded


def test_a_callback_on_loopback_is_refused_at_submit_by_default(ferry_env: FerryEnv) -> None:
    """The session's ferry.toml has no [notifications]: the defaults refuse http and loopback."""
    proc = ferry_env.cli("submit", "awork-image-delete", "-c", "awork", "--entity", "users", "--id", "1",
                         "--callback", "https://127.0.0.1/hooks/ferry")
    assert proc.returncode == 2, proc.stderr
    assert "--callback" in proc.stderr and "allow_private" in proc.stderr

    client = ferry_env.ferry()
    try:
        with LiveApi(client, tokens=[API_TOKEN]) as api:
            answer = httpx.post(f"{api.url}/jobs", headers={"Authorization": f"Bearer {API_TOKEN}"},
                                json={"kind": "awork-image-delete", "connection": "awork",
                                      "params": {"entity": "users", "id": "1"},
                                      "callback_url": "http://127.0.0.1:8080/hook"})
    finally:
        client.close()
    assert answer.status_code == 422
    assert [p["field"] for p in answer.json()["problems"]] == ["callback_url"]
    assert "https" in answer.json()["problems"][0]["message"]


# ---- the event stream -----------------------------------------------------------------------------
def sse(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The events of a server-sent event stream, as their fields (comments skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "event" in fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def test_an_sse_client_that_resumes_with_last_event_id_sees_every_event_once(
        ferry: Ferry, sandbox: SandboxControl, tmp_path: Path) -> None:
    sandbox.add_fault(path=IMAGE_UPLOAD, method="POST", status=503, times=2)  # a run with retries
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    seen: list[dict[str, str]] = []
    with LiveApi(ferry, tokens=[API_TOKEN]) as api, httpx.Client(base_url=api.url, timeout=30) as http:
        with http.stream("GET", "/events", headers=auth) as first:
            assert first.headers["content-type"].startswith("text/event-stream")
            job = upload(ferry, sandbox, tmp_path, None)
            for event in sse(first):
                if json.loads(event["data"])["job"] == job.id:
                    seen.append(event)
                if len(seen) == 2:
                    break  # disconnect mid-run
        assert ferry.status(job.id).status != "succeeded"
        ferry.wait(job.id, timeout=60)
        with http.stream("GET", f"/events?job={job.id}", headers={**auth, "Last-Event-ID": seen[-1]["id"]}) as second:
            for event in sse(second):
                seen.append(event)
                if event["event"] == "job.succeeded":
                    break

    stored = events.read(ferry.redis, events.START, events.EventFilters(job=job.id)).events
    assert [e["id"] for e in seen] == [e.id for e in stored]
    # An upload that runs a while also tells its bytes (step.progress, test_stalls); the state
    # changes around them are exact.
    assert [e["event"] for e in seen if e["event"] != "step.progress"] == [
        "job.queued", "step.started", "step.retrying", "step.started", "step.retrying", "step.started",
        "step.succeeded", "job.succeeded"]
    assert all(json.loads(e["data"])["connection"] == "awork" for e in seen)


def test_ferry_events_prints_a_jobs_events_as_json_lines(
        ferry: Ferry, hooked: FerryEnv, sandbox: SandboxControl, tmp_path: Path) -> None:
    job = upload(ferry, sandbox, tmp_path, None)
    ferry.wait(job.id, timeout=60)
    proc = hooked.cli("events", "--job", job.id, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in lines if e["event"] != "step.progress"] == [
        "job.queued", "step.started", "step.succeeded", "job.succeeded"]
    assert {e["job"] for e in lines} == {job.id}


def test_the_stream_wants_auth_a_valid_id_and_beats_while_quiet(
        ferry: Ferry, monkeypatch: pytest.MonkeyPatch) -> None:
    from producers.web import events as web_events

    monkeypatch.setattr(web_events, "HEARTBEAT_SECONDS", 0.2)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with LiveApi(ferry, tokens=[API_TOKEN]) as api, httpx.Client(base_url=api.url, timeout=30) as http:
        assert http.get("/events").status_code == 401
        assert http.get("/events?last_event_id=yesterday", headers=auth).status_code == 422
        with http.stream("GET", "/events?job=no-such-job", headers=auth) as quiet:
            lines = quiet.iter_lines()
            assert next(lines) == "retry: 2000"
            assert ": heartbeat" in [next(lines) for _ in range(3)]
