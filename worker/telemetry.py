"""A worker's spans: one per step attempt, a child per destination request (``producers.tracecontext``).

A step's span (``ferry.step <name>``: job, kind, connection, step, attempt, outcome, the last
HTTP status) is a child of the context its run keeps in the job record (the submit's span, or a
replay's), so a job's steps join one trace whichever worker runs them. A run that keeps none (it
was submitted or replayed with telemetry off there) gets a trace id made from the job id and the
run's number: its steps still share one trace. Each ``Destination.call`` is a child span of its
step (method, route template, server, status, bytes sent and received): never a header, a query,
a token or a signed URL.

Off (no OTLP endpoint, or no ``otel`` extra), a step costs a look at its run's context, to put
its ``trace_id`` on the step's log lines, and a request costs one attribute read.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from celery.exceptions import Ignore, Retry
from urllib3.util import parse_url

from producers import tracecontext
from producers.config import FerryConfig
from producers.records import JobRecord

WORKER = tracecontext.Tracing("ferry-worker")
_step = threading.local()  # this thread's step span, for its requests' status


def _tracer(config: FerryConfig) -> Any:
    return WORKER.get(config)


def run_context(job: JobRecord) -> str | None:
    """The traceparent of the job's current run (None: it keeps none)."""
    return job.runs[-1].trace if job.runs else None


def _derived(job: JobRecord) -> str:
    """The context of a run that keeps none: a trace id and a (never exported) parent span id
    made from the job id and the run's number, the same on every worker."""
    digest = hashlib.sha256(f"{job.id}/{len(job.runs)}".encode()).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01"


@contextmanager
def step_span(config: FerryConfig, job: JobRecord, step: str, attempt: int) -> Iterator[None]:
    """Around one step attempt: its span and its log lines' ``trace_id``."""
    kept = run_context(job)
    tracer = _tracer(config)
    if tracer is None:
        if kept is None:
            yield
            return
        with structlog.contextvars.bound_contextvars(trace_id=tracecontext.trace_id(kept)):
            yield
        return
    parent = kept or _derived(job)
    first = job.runs[0].trace if len(job.runs) > 1 else None
    links = [_link(first)] if first and first != kept else []
    attributes = {"ferry.job": job.id, "ferry.kind": job.kind, "ferry.connection": job.connection,
                  "ferry.step": step, "ferry.attempt": attempt, "ferry.run": len(job.runs)}
    with tracer.start_as_current_span(f"ferry.step {step}", context=tracecontext.context_of(parent),
                                      links=links, attributes=attributes, kind=_consumer(),
                                      record_exception=False, set_status_on_exception=False) as span:
        _step.span, _step.status = span, None
        trace_id = f"{span.get_span_context().trace_id:032x}"
        try:
            with structlog.contextvars.bound_contextvars(trace_id=trace_id):
                yield
            span.set_attribute("ferry.outcome", "succeeded")
        except (Ignore, Retry):  # the attempt's retry is a message of its own, delayed
            span.set_attribute("ferry.outcome", "retried")
            raise
        except Exception as exc:
            span.set_attribute("ferry.outcome", "failed")
            _error(span, str(exc))
            raise
        finally:
            if _step.status is not None:
                span.set_attribute("http.response.status_code", _step.status)
            _step.span = _step.status = None


class RequestSpan:
    """One destination request's span, ended by ``end``."""

    def __init__(self, span: Any) -> None:
        self.span = span

    def end(self, status: int | None, sent: int | None, received: str | None) -> None:
        span = self.span
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            _step.status = status
            if status >= 400:
                _error(span, f"HTTP {status}")
        else:
            _error(span, "no answer")
        if sent is not None:
            span.set_attribute("http.request.body.size", sent)
        if received and received.isdigit():
            span.set_attribute("http.response.body.size", int(received))
        span.end()


def request_span(method: str, route: str, base_url: str) -> RequestSpan | None:
    """A request about to be sent by the step on this thread (None: telemetry off, or no step)."""
    step = getattr(_step, "span", None)
    if step is None:
        return None
    tracer = WORKER.tracer
    if tracer is None:
        return None
    from opentelemetry.trace import SpanKind, set_span_in_context

    template = route or "(the job's uri)"
    span = tracer.start_span(f"{method} {template}", context=set_span_in_context(step), kind=SpanKind.CLIENT,
                             attributes={"http.request.method": method, "http.route": template,
                                         "server.address": parse_url(base_url).host or ""})
    return RequestSpan(span)


def _link(traceparent: str) -> Any:
    from opentelemetry.trace import Link

    return Link(tracecontext.span_context(traceparent))


def _consumer() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.CONSUMER


def _error(span: Any, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))


def shutdown() -> None:
    """Export the spans still buffered (a worker process's exit)."""
    WORKER.shutdown()
