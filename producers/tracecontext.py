"""W3C trace context for jobs, and the OpenTelemetry tracer of a process that submits them.

One trace per run of a job: the submit (``POST /jobs``, ``POST /jobs:batch``, ``Ferry.submit(...,
traceparent=)``) continues the caller's ``traceparent`` with a ``ferry.submit`` span, and the
context of that span is kept with the job (``RunRecord.trace``; for the first run in the job's
meta, ``producers.store.codec``), so each step, on any worker of any machine, is a child of it
(``worker.telemetry``). A replay starts a new trace, linked to the one before.

Telemetry is off unless ``[telemetry] otlp_endpoint`` or ``$OTEL_EXPORTER_OTLP_ENDPOINT`` names an
OTLP/HTTP receiver, and the ``otel`` extra (opentelemetry-sdk and its OTLP exporter) is
installed: nothing here imports OpenTelemetry until then, so a producer-only install needs none
of it. Off, a submit only keeps a valid incoming ``traceparent`` (a string check), and a
replay keeps nothing.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from producers.config import FerryConfig
from producers.errors import SubmitError
from producers.store.types import NewJob

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16

Attributes = Mapping[str, str | int | float | bool]


# ---- the header ------------------------------------------------------------------------------
def parse(header: str | None) -> str | None:
    """A valid version-00 ``traceparent`` (lower case, as W3C writes it), else None: an invalid
    header is ignored, as the recommendation says, and the submit starts a trace of its own."""
    if not header:
        return None
    value = header.strip().lower()
    match = _TRACEPARENT.fullmatch(value)
    if match is None or match[1] == _ZERO_TRACE or match[2] == _ZERO_SPAN:
        return None
    return value


def trace_id(traceparent: str | None) -> str | None:
    """The trace id a traceparent names (what log lines carry as ``trace_id``)."""
    return traceparent[3:35] if traceparent else None


def new_traceparent() -> str:
    """A fresh, sampled context: for a run started with telemetry off in this process."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


# ---- the tracer --------------------------------------------------------------------------------
def endpoint(config: FerryConfig) -> str | None:
    """Where spans go: ``[telemetry] otlp_endpoint`` (its ``/v1/traces``), else what the
    exporter reads from the environment; None: telemetry is off."""
    if config.telemetry.otlp_endpoint:
        base = config.telemetry.otlp_endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"
    if os.environ.get(TRACES_ENDPOINT_ENV) or os.environ.get(ENDPOINT_ENV):
        return ""  # the exporter's own reading of the OTEL_* variables
    return None


class Tracing:
    """This process's tracer provider: made on first use when telemetry is on, once per process
    (a forked child makes its own: the parent's export thread did not come along), and flushed by
    ``shutdown``."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._key: tuple[int, str | None] | None = None  # (pid, endpoint) the provider was made for
        self._provider: Any = None
        self.tracer: Any = None
        self._lock = threading.Lock()

    def get(self, config: FerryConfig) -> Any:
        """The tracer, or None when telemetry is off (or the ``otel`` extra is missing)."""
        where = endpoint(config)
        if self._key == (os.getpid(), where):
            return self.tracer
        with self._lock:  # two threads of the API meeting the first submit make one provider
            if self._key == (os.getpid(), where):
                return self.tracer
            if self._provider is not None and self._key is not None and self._key[0] == os.getpid():
                self._provider.shutdown()  # another endpoint (a test's): flush to the old one first
            self._provider, self.tracer = self._make(where)
            self._key = (os.getpid(), where)  # last: the fast path above reads it without the lock
            return self.tracer

    def _make(self, where: str | None) -> tuple[Any, Any]:
        """(provider, tracer) sending to ``where``; (None, None) when off."""
        if where is None:
            return None, None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            warnings.warn("telemetry is configured but the otel extra is not installed "
                          "(pip install 'ferry[otel]'): no traces", RuntimeWarning, stacklevel=3)
            return None, None
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or self.service,
                                    "process.pid": os.getpid()})
        provider = TracerProvider(resource=resource, shutdown_on_exit=True)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=where or None)))
        return provider, provider.get_tracer("ferry")

    def shutdown(self) -> None:
        """Export what is buffered and stop (a worker process's exit)."""
        if self._provider is not None and self._key is not None and self._key[0] == os.getpid():
            self._provider.shutdown()
        self._key, self._provider, self.tracer = None, None, None


PRODUCER = Tracing("ferry")


def context_of(traceparent: str | None) -> Any:
    """An OpenTelemetry context whose parent is ``traceparent`` (None: a new trace's root)."""
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    if not traceparent:
        return None
    return set_span_in_context(NonRecordingSpan(span_context(traceparent)))


def span_context(traceparent: str) -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(int(traceparent[3:35], 16), int(traceparent[36:52], 16), is_remote=True,
                       trace_flags=TraceFlags(int(traceparent[53:55], 16)))


def format_context(span: Any) -> str:
    """The traceparent of ``span``: what the job keeps."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class SubmitTrace:
    """What a submit hands its jobs: the ``traceparent`` they keep (None: none), and its span's
    attributes once the jobs exist."""

    def __init__(self, traceparent: str | None, span: Any = None) -> None:
        self.traceparent = traceparent
        self.span = span

    def stamp(self, checked: list[NewJob | SubmitError]) -> list[NewJob | SubmitError]:
        """The validated jobs carrying this submit's context (the refusals as they are)."""
        if self.traceparent is None:
            return checked
        return [replace(c, trace=self.traceparent) if isinstance(c, NewJob) else c for c in checked]

    def ended(self, outcomes: list[Any]) -> list[Any]:
        """The submit's outcomes, a lone job's id, kind and connection put on the span."""
        if self.span is not None and len(outcomes) == 1 and isinstance(outcomes[0], tuple):
            record = outcomes[0][0]
            self.span.set_attributes({"ferry.job": record.id, "ferry.kind": record.kind,
                                      "ferry.connection": record.connection})
        return outcomes


@contextmanager
def submitting(config: FerryConfig, traceparent: str | None, attributes: Attributes) -> Iterator[SubmitTrace]:
    """A submit's span (``ferry.submit``), continuing the caller's ``traceparent``; off, the
    incoming context itself is what the jobs keep."""
    incoming = parse(traceparent)
    tracer = PRODUCER.get(config)
    if tracer is None:
        yield SubmitTrace(incoming)
        return
    with tracer.start_as_current_span("ferry.submit", context=context_of(incoming), kind=_server(),
                                      attributes=dict(attributes)) as span:
        yield SubmitTrace(format_context(span), span)


def replay_trace(config: FerryConfig, job_id: str, previous: str | None, from_step: str) -> str | None:
    """The context a replay's run keeps: a new trace (``ferry.replay``, linked to the run
    before's trace); off, None (the worker's spans then make the run a trace of its own)."""
    tracer = PRODUCER.get(config)
    if tracer is None:
        return None
    from opentelemetry.trace import Link

    links = [Link(span_context(previous))] if previous else []
    with tracer.start_as_current_span("ferry.replay", context=_root(), links=links,
                                      attributes={"ferry.job": job_id, "ferry.from_step": from_step}) as span:
        return format_context(span)


def _root() -> Any:
    from opentelemetry.context import Context

    return Context()  # no parent: a new trace, whatever span is current


def _server() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.SERVER
