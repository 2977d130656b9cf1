"""What a job *is* once stored: the record every surface (CLI, HTTP API, dashboard) shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


def utcnow() -> str:
    return utc_in(0)


def utc_in(seconds: float) -> str:
    """ISO-8601 UTC time ``seconds`` from now, millisecond precision, ``Z`` suffix."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def still_to_come(at: datetime | None) -> float | None:
    """A ``not_before`` as epoch seconds while it is still to come (None: now, or a time
    passed); a time without an offset is UTC."""
    if at is None:
        return None
    epoch = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
    return epoch if epoch > datetime.now(UTC).timestamp() else None


def utc_at(epoch: float) -> str:
    """An epoch time (seconds) as ``utc_in`` writes times."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # an operator stopped it; it ran no step after that (replayable)
    SCHEDULED = "scheduled"  # waits for its not_before in the store; no message exists yet


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"  # waiting for its next attempt (backoff or the server's Retry-After)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REUSED = "reused"  # a replay kept this step's earlier output instead of running it again


class StepError(BaseModel):
    """Why a step failed: the destination's own words, its HTTP status, and whether a retry may help."""

    step: str
    status: int | None = None
    message: str
    retryable: bool = False
    at: str = Field(default_factory=utcnow)


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRIED = "retried"  # a retryable error: another attempt follows after ``retry_delay``
    FAILED = "failed"  # the error that failed the job
    LOST = "lost"  # no outcome was recorded: its worker stopped, and the step was run again


MAX_ATTEMPT_HISTORY = 20  # per step, across runs: the newest are kept


class AttemptRecord(BaseModel):
    """One attempt at a step: which run it belonged to, when it ran and how it ended."""

    run: int  # 1: the submit; 2, 3…: each replay
    number: int  # the step's attempt number within that run
    started_at: str
    finished_at: str | None = None
    status: AttemptStatus = AttemptStatus.RUNNING
    http_status: int | None = None
    message: str | None = None
    retry_delay: float | None = None  # seconds until the next attempt (status retried)


class Progress(BaseModel):
    """An upload's figures (``worker.progress``): written while it runs, kept after the step ends."""

    bytes_sent: int
    bytes_total: int
    rate_bps: int | None = None  # over the last few seconds
    eta_s: float | None = None
    updated_at: str

    @property
    def percent(self) -> int:
        return 100 if self.bytes_total <= 0 else min(100, self.bytes_sent * 100 // self.bytes_total)

    def describe(self) -> str:
        """``2.0 MiB of 3.0 MiB (66 %), 64.0 KiB/s, about 16 s left`` (CLI and dashboard)."""
        parts = [f"{byte_size(self.bytes_sent)} of {byte_size(self.bytes_total)} ({self.percent} %)"]
        if self.rate_bps:
            parts.append(f"{byte_size(self.rate_bps)}/s")
        if self.bytes_sent < self.bytes_total and self.eta_s is not None:
            parts.append(f"about {self.eta_s:.0f} s left")
        return ", ".join(parts)


def byte_size(n: float) -> str:
    """Bytes for people, 1024-based: ``512 B``, ``64.0 KiB``, ``3.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable: GiB is the last unit


class StepRecord(BaseModel):
    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0  # in the current run; the retry budget counts these
    started_at: str | None = None
    finished_at: str | None = None
    next_attempt_at: str | None = None
    result: dict[str, Any] | None = None
    error: StepError | None = None
    history: list[AttemptRecord] = Field(default_factory=list)  # the last MAX_ATTEMPT_HISTORY
    progress: Progress | None = None  # an upload step's bytes (kept apart: see JobStore.record_progress)

    def stored(self) -> str:
        """The record as the job store keeps it: no null fields, and none of a step's defaults
        (pending, 0 attempts, no history), so a step that has not run is just its name.
        ``model_validate_json`` fills them back in. Not ``exclude_defaults``: that would also
        drop a timestamp its default factory made in the same millisecond."""
        data = self.model_dump(mode="json", exclude_none=True, exclude={"progress"})
        for name, default in _STEP_DEFAULTS.items():
            if data.get(name) == default:
                del data[name]
        return json.dumps(data, separators=(",", ":"))

    @property
    def eventful(self) -> bool:
        """The attempts tell more than one clean success: a retry, a failure, a lost attempt or
        another run's attempt (what ``ferry status`` and the job page list)."""
        return len(self.history) > 1 or any(
            a.status not in (AttemptStatus.SUCCEEDED, AttemptStatus.RUNNING) for a in self.history)

    def begin_attempt(self, run: int, at: str) -> None:
        """Record that attempt ``self.attempts`` of run ``run`` started ``at``."""
        self.end_attempt(AttemptStatus.LOST, at=None)  # an attempt still open never ended
        self.history = [*self.history, AttemptRecord(run=run, number=self.attempts, started_at=at)]
        del self.history[:-MAX_ATTEMPT_HISTORY]

    def end_attempt(self, status: AttemptStatus, at: str | None, error: StepError | None = None,
                    retry_delay: float | None = None) -> None:
        """Close the open attempt, if there is one, with its outcome."""
        if not self.history or self.history[-1].status != AttemptStatus.RUNNING:
            return  # e.g. a job failed before any attempt started (its message was never sent)
        attempt = self.history[-1]
        attempt.status, attempt.finished_at, attempt.retry_delay = status, at, retry_delay
        if error is not None:
            attempt.http_status, attempt.message = error.status, error.message


_STEP_DEFAULTS: dict[str, Any] = {"status": StepStatus.PENDING.value, "attempts": 0, "history": []}


class FileInfo(BaseModel):
    """The file a job carries: a path the worker can open or a URL; never the bytes."""

    path: str | None = None
    uri: str | None = None
    name: str
    size: int | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None


class RunRecord(BaseModel):
    """One pass through the chain: the submit, or a replay (who asked, from which step, outcome)."""

    number: int
    trigger: str
    from_step: str
    started_at: str = Field(default_factory=utcnow)
    finished_at: str | None = None
    outcome: str | None = None
    note: str | None = None
    error: StepError | None = None  # why it failed: kept when a later run succeeds
    # The run's W3C trace context (a traceparent, not a secret): its steps' spans join its trace.
    trace: str | None = None


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first attempt
    DELIVERING = "delivering"  # an attempt is under way
    RETRYING = "retrying"  # an attempt failed in a way that may pass; the next is at next_attempt_at
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # refused (4xx other than 408/429, a redirect) or out of retry window


class DeliveryRecord(BaseModel):
    """One webhook delivery of a job's end (``callback_url``): one per run that ended, plus one
    per redeliver. ``last_status`` is the receiver's HTTP status, ``last_error`` what went wrong."""

    id: str
    event: str  # job.succeeded | job.failed | job.cancelled
    run: int
    trigger: str = "end"  # end: the run ended; redeliver: asked for again
    created_at: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: str | None = None
    next_attempt_at: str | None = None
    delivered_at: str | None = None

    @property
    def open(self) -> bool:
        return self.status not in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)


class JobRecord(BaseModel):
    id: str
    kind: str
    connection: str
    status: JobStatus
    created_at: str
    updated_at: str | None = None
    finished_at: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    file: FileInfo | None = None
    idempotency_key: str | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    error: StepError | None = None
    runs: list[RunRecord] = Field(default_factory=list)
    callback_url: str | None = None
    notifications: list[DeliveryRecord] = Field(default_factory=list)  # oldest first
    batch: str | None = None  # the batch it was submitted in (its first, for a repeated key)
    not_before: str | None = None  # ISO time: the job (or its latest replay) starts no earlier
    priority: str = "normal"  # high | normal | low: what runs next (producers.priority)
    tenant: str | None = None  # takes turns with other tenants' jobs within one priority

    def step(self, name: str) -> StepRecord:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def done(self) -> bool:
        return self.status in FINISHED


class BatchRecord(BaseModel):
    """A batch of jobs (a manifest, ``POST /jobs:batch``, ``submit_many``, or one opened and
    sealed by its submitter): what ``ferry batch status --json`` and ``GET /batches/{id}`` show.
    ``counts`` move in the same Lua call as each job's status; ``bytes_done`` is what its jobs'
    uploads sent (upload progress, each byte once), a job's whole file once it succeeds, nothing
    of a failed one. A purged job leaves ``total``, ``counts`` and bytes (``purged`` counts it)."""

    id: str
    name: str | None = None
    created_at: str
    total: int = 0  # the jobs it counts (a job found by its idempotency key is ``existing``)
    existing: int = 0
    counts: dict[str, int] = Field(default_factory=dict)  # status -> jobs
    bytes_total: int = 0
    bytes_done: int = 0
    sealed_at: str | None = None  # no more jobs join it; it completes when none is left to run
    finished_at: str | None = None  # null until completion (cleared again by a replay)
    completions: int = 0  # how many times it completed (a replay of its failures completes it again)
    purged: int = 0  # jobs purged since: gone from total, counts and bytes as if never submitted
    eta_seconds: float | None = None
    callback_url: str | None = None
    failures: str = ""  # where to list its failed jobs (HTTP)
    notifications: list[DeliveryRecord] = Field(default_factory=list)  # oldest first

    @property
    def active(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING))

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def all_succeeded(self) -> bool:
        return self.counts.get(JobStatus.SUCCEEDED.value, 0) == self.total
