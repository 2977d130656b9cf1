"""One job, one trace (issue 28): the submit continues the caller's ``traceparent``, each step
attempt is a child of the submit's span and each destination request a child of its step's,
whichever worker process runs the step.

Real parts: an embedded Redis of the test's own, the sandbox, ``POST /jobs`` on the live API (in
this process, with telemetry on through ferry.toml's ``[telemetry]``), two ``ferry worker``
processes one after the other (the first stopped, warm, while it runs the first step; the second
runs the rest), and an OTLP/HTTP receiver here that decodes what the exporters send with
opentelemetry-proto's own classes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("opentelemetry.sdk", reason="the otel extra (installed by ./dev test)")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from producers import tracecontext
from producers.client import Ferry
from producers.config import load_config
from producers.embedded import EmbeddedRedis
from producers.records import JobStatus, StepStatus
from sandbox.testing import SandboxControl
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import SANDBOX_URIS, worker_env, write_config
from worker.processes import WorkerProcess

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
STEPS = ("get_credentials", "media_upload", "link_attachment")


class Span(dict[str, Any]):
    """One received span: ids as hex, its attributes and its resource's, as plain values."""


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


class Receiver:
    """OTLP over HTTP, protobuf: ``POST /v1/traces``, decoded and kept."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    for rs in request.resource_spans:
                        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                spans.append(Span(
                                    name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                                    parent=s.parent_span_id.hex(), resource=resource,
                                    attributes={a.key: _value(a.value) for a in s.attributes},
                                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links]))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> list[Span]:
        return [s for s in list(self.spans) if s["name"] == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s, not 5 s
    found = Receiver()
    yield found
    tracecontext.PRODUCER.shutdown()  # this process's provider points at the receiver: drop it
    found.close()


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_one_job_is_one_trace_from_the_callers_span_through_two_worker_processes(
        tmp_path: Path, sandbox: SandboxControl, receiver: Receiver) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    location = server.ensure_running()
    config = write_config(tmp_path / "ferry.toml", sandbox.url, sandbox.email,
                          settings=f'[telemetry]\notlp_endpoint = "{receiver.url}"',
                          files={**SANDBOX_URIS, "roots": [str(tmp_path)]})
    env = worker_env(tmp_path, config, location)
    doc = tmp_path / "report.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 200 + b"\n%%EOF\n")
    seed = sandbox.seed()
    # The first step waits 3 s for its answer: long enough to stop the first worker under it.
    sandbox.add_fault(path=r"/credentials$", method="GET", latency_ms=3000, times=1)
    ferry = Ferry(location.url, config=load_config(config))
    first = WorkerProcess(env, tmp_path / "first.log")
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        with LiveApi(ferry, tokens=["t"]) as api:
            answer = requests.post(f"{api.url}/jobs", timeout=30, json={
                "kind": "assets-attachment", "connection": "acme", "file": str(doc),
                "params": {"object": seed["object_id"]}},
                headers={"Authorization": "Bearer t", "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        wait_until(lambda: ferry.status(job_id).step(STEPS[0]).status == StepStatus.RUNNING, 30,
                   "the first step running")
        first_pool = children(first.proc.pid)
        first.stop()  # warm: its step ends (publishing the next), then it exits
        assert ferry.status(job_id).step(STEPS[1]).status == StepStatus.PENDING
        second = WorkerProcess(env, tmp_path / "second.log").wait_ready()
        wait_until(lambda: ferry.status(job_id).status == JobStatus.SUCCEEDED, 60, "the job to succeed")
        second_pool = children(second.proc.pid)
        second.stop()  # flushes its spans on the way out
        wait_until(lambda: all(receiver.named(f"ferry.step {s}") for s in STEPS), 30, "every step's span")
    finally:
        if second is not None:
            second.stop()
        first.stop()
        ferry.close()
        server.stop()

    [submit] = receiver.named("ferry.submit")
    assert (submit["trace_id"], submit["parent"]) == (TRACE_ID, CALLER_SPAN)
    assert submit["attributes"]["ferry.job"] == job_id
    steps = {s: receiver.named(f"ferry.step {s}") for s in STEPS}
    assert all(len(found) == 1 for found in steps.values()), steps
    by_id = {s["span_id"]: s for s in receiver.spans}
    for name, [span] in steps.items():
        assert span["trace_id"] == TRACE_ID and span["parent"] == submit["span_id"], name
        assert span["attributes"] == {**span["attributes"], "ferry.job": job_id, "ferry.kind": "assets-attachment",
                                      "ferry.connection": "acme", "ferry.step": name, "ferry.attempt": 1,
                                      "ferry.outcome": "succeeded"}
        assert 200 <= span["attributes"]["http.response.status_code"] < 300
        calls = [s for s in receiver.spans if s["parent"] == span["span_id"]]
        assert calls, f"no request span under {name}"
        for call in calls:
            assert call["trace_id"] == TRACE_ID
            route = call["attributes"]["http.route"]
            assert "?" not in route and call["name"] == f"{call['attributes']['http.request.method']} {route}"
            assert isinstance(call["attributes"]["http.response.status_code"], int)
        assert any(200 <= c["attributes"]["http.response.status_code"] < 300 for c in calls), name
    # Nothing of a token, a JWT or a signed URL in any span.
    text = json.dumps([dict(s) for s in receiver.spans])
    assert "sandbox-token" not in text and "eyJ" not in text and "Bearer" not in text
    upload = [by_id[c] for c in by_id if by_id[c]["parent"] == steps["media_upload"][0]["span_id"]
              and by_id[c]["attributes"]["http.request.method"] in ("POST", "PUT")]
    assert any(u["attributes"].get("http.request.body.size", 0) >= doc.stat().st_size for u in upload)
    # The first step ran in the first worker's pool, the others in the second's.
    pids = {name: span["resource"]["process.pid"] for name, [span] in steps.items()}
    assert pids["get_credentials"] in first_pool
    assert {pids["media_upload"], pids["link_attachment"]} <= second_pool
    # Their log lines carry the trace id.
    lines = [json.loads(line) for line in (tmp_path / "second.log").read_text().splitlines()
             if line.startswith("{")]
    assert {line.get("trace_id") for line in lines if line.get("event") == "step succeeded"} == {TRACE_ID}


def test_a_replay_is_a_new_trace_linked_to_the_first(tmp_path: Path, sandbox: SandboxControl,
                                                      receiver: Receiver) -> None:
    """The Python API's ``traceparent=``, a step that fails its job (its span says so), and a
    replay: a trace of its own whose ``ferry.replay`` span links to the first run's."""
    from producers.replay import replay

    server = EmbeddedRedis(tmp_path / "redis")
    location = server.ensure_running()
    config = write_config(tmp_path / "ferry.toml", sandbox.url, sandbox.email,
                          settings=f'[telemetry]\notlp_endpoint = "{receiver.url}"')
    doc = tmp_path / "report.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 200 + b"\n%%EOF\n")
    sandbox.add_fault(path=r"/attachments/object/\d+$", method="POST", status=403, times=1)
    ferry = Ferry(location.url, config=load_config(config))
    worker = WorkerProcess(worker_env(tmp_path, config, location), tmp_path / "worker.log")
    try:
        worker.wait_ready()
        job = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                           params={"object": sandbox.seed()["object_id"]},
                           traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01")
        assert job.runs[0].trace is not None and job.runs[0].trace[3:35] == TRACE_ID
        wait_until(lambda: ferry.status(job.id).status == JobStatus.FAILED, 60, "the job to fail")
        again = replay(ferry, job.id)
        assert again.runs[1].trace is not None and again.runs[1].trace[3:35] != TRACE_ID
        wait_until(lambda: ferry.status(job.id).status == JobStatus.SUCCEEDED, 60, "the replay to succeed")
        worker.stop()
        wait_until(lambda: len(receiver.named("ferry.step link_attachment")) == 2, 30, "both link spans")
    finally:
        worker.stop()
        ferry.close()
        server.stop()
    [submit] = receiver.named("ferry.submit")
    failed, linked = sorted(receiver.named("ferry.step link_attachment"), key=lambda s: s["attributes"]["ferry.run"])
    assert (failed["trace_id"], failed["parent"]) == (TRACE_ID, submit["span_id"])
    assert failed["attributes"]["ferry.outcome"] == "failed"
    assert failed["attributes"]["http.response.status_code"] == 403
    [replayed] = receiver.named("ferry.replay")
    assert replayed["trace_id"] != TRACE_ID and replayed["links"] == [(TRACE_ID, submit["span_id"])]
    assert (linked["trace_id"], linked["parent"]) == (replayed["trace_id"], replayed["span_id"])
    assert linked["attributes"]["ferry.outcome"] == "succeeded"
    assert linked["links"] == [(TRACE_ID, submit["span_id"])]
