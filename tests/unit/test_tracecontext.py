"""Trace context with telemetry off (issue 28): what a submit keeps of the caller's
``traceparent``, how the job record carries it (the first run's in meta, each replay's in its
run), and where spans would go. The spans themselves: tests/e2e/test_traces.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers import keys, tracecontext
from producers.client import Ferry, JobRequest
from producers.config import parse_config
from producers.embedded import RedisLocation
from producers.store import codec
from producers.store.types import NewJob
from tests import jobs

DB = 13  # other tests use 0 and 3-12
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("header", [TP, TP.upper(), f" {TP} "])
def test_a_valid_traceparent_is_kept_in_lower_case(header: str) -> None:
    assert tracecontext.parse(header) == TP
    assert tracecontext.trace_id(tracecontext.parse(header)) == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("header", [
    None, "", "garbage", TP[:-1], "ff" + TP[2:], TP + "-extra",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
])
def test_an_invalid_traceparent_is_ignored(header: str | None) -> None:
    assert tracecontext.parse(header) is None


def test_telemetry_is_off_unless_an_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracecontext.ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(tracecontext.TRACES_ENDPOINT_ENV, raising=False)
    assert tracecontext.endpoint(parse_config({})) is None
    configured = parse_config({"telemetry": {"otlp_endpoint": "http://collector:4318/"}})
    assert tracecontext.endpoint(configured) == "http://collector:4318/v1/traces"
    monkeypatch.setenv(tracecontext.ENDPOINT_ENV, "http://collector:4318")
    assert tracecontext.endpoint(parse_config({})) == ""  # the exporter reads the variable itself


def test_the_first_runs_context_lives_in_meta_and_decodes_into_its_run() -> None:
    job = NewJob(kind="jira-avatar", connection="acme", steps=("upload_avatar", "set_current"),
                 params={}, trace=TP)
    meta = codec.new_meta(job, "2026-01-01T00:00:00Z")
    assert json.loads(meta)["trace"] == TP
    record = codec.decode({codec.META: meta}, "j1")
    assert record.runs[0].trace == TP
    assert codec.new_record(job, "j1", "2026-01-01T00:00:00Z").runs[0].trace == TP
    untraced = codec.new_meta(NewJob(kind="jira-avatar", connection="acme", steps=("a",), params={}), "t")
    assert "trace" not in json.loads(untraced)  # no bytes for it in an untraced backlog


@pytest.fixture
def ferry(module_db: tuple[RedisLocation, redis.Redis], tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Ferry]:
    monkeypatch.delenv(tracecontext.ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(tracecontext.TRACES_ENDPOINT_ENV, raising=False)
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 200 + b"\n%%EOF\n")
    client = jobs.producer(module_db[0], tmp_path)
    yield client
    client.close()


def test_with_telemetry_off_a_submit_keeps_the_callers_context_as_it_came(ferry: Ferry, tmp_path: Path) -> None:
    doc = str(tmp_path / "doc.pdf")
    job = ferry.submit("assets-attachment", connection="acme", file=doc, params={"object": "1"}, traceparent=TP)
    assert ferry.status(job.id).runs[0].trace == TP
    plain = ferry.submit("assets-attachment", connection="acme", file=doc, params={"object": "2"},
                         traceparent="not a traceparent")
    assert ferry.status(plain.id).runs[0].trace is None
    assert "trace" not in json.loads(str(ferry.redis.hget(keys.job(plain.id), codec.META)))
    batch = ferry.submit_many([JobRequest(kind="assets-attachment", connection="acme", file=doc,
                                          params={"object": str(n)}) for n in (3, 4)], traceparent=TP)
    assert [ferry.status(record.id).runs[0].trace for record, _ in batch] == [TP, TP]  # type: ignore[misc]


def test_with_telemetry_off_a_steps_log_lines_carry_its_runs_trace_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import structlog

    from worker import telemetry

    monkeypatch.delenv(tracecontext.ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(tracecontext.TRACES_ENDPOINT_ENV, raising=False)
    config = parse_config({})
    traced = codec.new_record(NewJob(kind="jira-avatar", connection="acme", steps=("upload_avatar",), params={},
                                     trace=TP), "j1", "2026-01-01T00:00:00Z")
    with telemetry.step_span(config, traced, "upload_avatar", 1):
        assert structlog.contextvars.get_contextvars()["trace_id"] == TP[3:35]
        assert telemetry.request_span("GET", "/x", "https://acme.example") is None  # no span, no cost
    assert "trace_id" not in structlog.contextvars.get_contextvars()
    untraced = codec.new_record(NewJob(kind="jira-avatar", connection="acme", steps=("upload_avatar",), params={}),
                                "j2", "2026-01-01T00:00:00Z")
    with telemetry.step_span(config, untraced, "upload_avatar", 1):
        assert "trace_id" not in structlog.contextvars.get_contextvars()
