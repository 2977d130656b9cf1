"""A worker's Prometheus metrics: steps, their durations, HTTP answers (and 429s), retries,
rate-limit waits, bytes uploaded and webhook deliveries, served by ``ferry worker --metrics-port N`` (``serve``).

Multi-process safe: with ``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported (the
``ferry worker`` command sets it to a fresh directory when given ``--metrics-port``), every
process of a prefork pool writes its counters to its own files there, and the main process's
endpoint adds them up (prometheus-client's documented multiprocess mode). Without it the metrics
live in the process (the threads pool) and the endpoint serves them directly.

What a step is doing is kept per thread (``begin_step`` at the start of a step, ``end_step`` when
Celery reports how its task ended), so the HTTP hook knows which connection a request was for.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server
from prometheus_client.registry import REGISTRY

from producers.records import JobRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PORT_ENV = "FERRY_METRICS_PORT"
HOST_ENV = "FERRY_METRICS_HOST"
DEFAULT_HOST = "127.0.0.1"

STEPS = Counter("ferry_steps", "Step runs that ended, by outcome (succeeded, failed, retried, stopped)",
                ["kind", "step", "outcome"])
STEP_SECONDS = Histogram("ferry_step_duration_seconds", "How long a step run took, whatever its outcome",
                         ["kind", "step"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
HTTP_RESPONSES = Counter("ferry_http_responses", "Destination answers by status class (error: no answer)",
                         ["connection", "status_class"])
RETRIES = Counter("ferry_retries", "Steps scheduled to run again (a retryable error or a wait)",
                  ["kind", "step", "connection"])
THROTTLED = Counter("ferry_throttled", "Destination answers 429 Too Many Requests (each pauses the connection)",
                    ["connection"])
WEBHOOKS = Counter("ferry_webhook_deliveries", "Webhook delivery attempts by how they left the delivery "
                   "(delivered, retrying, failed: refused or past its retry window)", ["outcome"])
RATE_LIMIT_WAIT = Counter("ferry_rate_limit_wait_seconds",
                          "Seconds requests waited for their connection's budget, in-flight slot or 429 pause",
                          ["connection"])
QUEUE_WAIT = Histogram("ferry_queue_wait_seconds",
                       "From a run's start (its submit or replay, or its not_before when later) to its "
                       "first step's start", ["priority"],
                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600))
BYTES_UPLOADED = Counter("ferry_bytes_uploaded", "Request body bytes of uploads the destination accepted",
                         ["connection"])

# Celery's task states as step outcomes (Ignore/Reject: cancelled, parked or nothing to do).
_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}


@dataclass
class _Step:
    kind: str
    step: str
    connection: str
    started: float
    retried: bool = False  # its retry is a message of its own: the task itself ends ignored


_current = threading.local()


def begin_step(kind: str, step: str, connection: str) -> None:
    """This thread now runs ``step`` of a ``kind`` job on ``connection``."""
    _current.step = _Step(kind, step, connection, time.monotonic())


def first_start(job: JobRecord, step: str, attempt: int) -> None:
    """A step started: when it is its run's first step's first attempt, the run's queue wait,
    labelled with the job's priority."""
    run = job.runs[-1] if job.runs else None
    if run is None or run.from_step != step or attempt != 1:
        return
    ready = max(_epoch(run.started_at), _epoch(job.not_before) if job.not_before else 0.0)
    QUEUE_WAIT.labels(priority=job.priority).observe(max(0.0, time.time() - ready))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def end_step(state: str | None) -> None:
    """The task this thread ran ended in Celery state ``state``; a task that never began a step
    (cancelled, parked, redelivered after success) counts nothing."""
    step: _Step | None = getattr(_current, "step", None)
    _current.step = None
    if step is None:
        return
    outcome = "retried" if step.retried else _OUTCOMES.get(state or "", "stopped")
    STEPS.labels(step.kind, step.step, outcome).inc()
    STEP_SECONDS.labels(step.kind, step.step).observe(time.monotonic() - step.started)
    if outcome == "retried":
        RETRIES.labels(step.kind, step.step, step.connection).inc()


def retried() -> None:
    """The step on this thread scheduled its retry (its task then ends as ignored, not RETRY)."""
    step: _Step | None = getattr(_current, "step", None)
    if step is not None:
        step.retried = True


def current_connection() -> str:
    step: _Step | None = getattr(_current, "step", None)
    return step.connection if step is not None else ""


def http_answer(status: int | None, uploaded: int | None = None) -> None:
    """A destination answered ``status`` (None: no answer), and accepted ``uploaded`` bytes."""
    connection = current_connection()
    HTTP_RESPONSES.labels(connection, f"{status // 100}xx" if status else "error").inc()
    if status == 429:
        THROTTLED.labels(connection).inc()
    if uploaded and status is not None and 200 <= status < 300:
        BYTES_UPLOADED.labels(connection).inc(uploaded)


def webhook_attempt(outcome: str) -> None:
    """A webhook delivery attempt left its delivery ``outcome`` (its status)."""
    WEBHOOKS.labels(outcome).inc()


def waited(connection: str, seconds: float) -> None:
    if seconds > 0:
        RATE_LIMIT_WAIT.labels(connection).inc(seconds)


def registry() -> CollectorRegistry:
    """What the endpoint serves: every process's metrics (multiprocess mode) or this one's."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return combined


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` from this (the main) process, in a background thread, on
    ``$FERRY_METRICS_HOST`` (``ferry worker --metrics-host``): loopback unless the operator says
    otherwise, because the endpoint has no auth."""
    start_http_server(port, addr=os.environ.get(HOST_ENV) or DEFAULT_HOST, registry=registry())
