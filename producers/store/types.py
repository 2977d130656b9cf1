"""The job store's value types: what its methods take and hand back (no Redis, no field names)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from producers.records import FileInfo, JobRecord, JobStatus, StepError, StepRecord

# What ``cancel`` did: the job is cancelled, or a step runs now and it is cancelled after that
# step, or it had ended already (nothing changed).
CANCELLED, CANCELLING, FINISHED_ALREADY = "cancelled", "cancelling", "finished"

PERSIST = -1  # ``settle(expire=...)``: the record never expires (a failed job)

RedisCommand = tuple[str, tuple[Any, ...]]


def dump(value: Any) -> str:
    """Compact JSON, as every value the store writes is encoded."""
    return json.dumps(value, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class ArchiveCandidate:
    """An ended job the archiver may move: its record, and the version it read (what
    ``lua/archive_drop.lua`` checks before the job leaves Redis)."""

    id: str
    status: str
    record: dict[str, Any]  # the record as JSON (``codec.as_json``): what ``ferry status --json`` shows
    score: int
    meta: dict[str, Any]
    updated_at: str  # the hash's field as read ('' none)
    deliveries: int  # how many webhook deliveries it had


@dataclass(frozen=True)
class Page:
    jobs: list[JobRecord]
    next_cursor: str | None


@dataclass
class JobState:
    """What a transition needs to know about a job: read in one HMGET, or handed back by
    ``begin_step`` so the step's end needs no read at all."""

    job_id: str
    status: JobStatus
    score: float
    runs: list[dict[str, Any]]
    step_record: StepRecord | None = None  # when the read named a step
    meta: dict[str, Any] = dataclass_field(default_factory=dict)

    @property
    def step(self) -> StepRecord:
        assert self.step_record is not None, "read without a step"
        return self.step_record

    @property
    def run_number(self) -> int:
        return len(self.runs) or 1

    def finished_runs(self, outcome: str, now: str, error: StepError | None = None) -> str:
        """The runs, the current one ended with ``outcome`` (and, when it failed, why)."""
        if self.runs:
            self.runs[-1].update(finished_at=now, outcome=outcome,
                                 error=error.model_dump(exclude_none=True) if error else None)
        return dump([{k: v for k, v in run.items() if v is not None} for run in self.runs])


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a job while one of its steps runs (the job hash's lease field:
    ``token:until-ms``): a second copy of the step's message waits instead of running the step
    twice at once, and the reaper knows a step whose lease lapsed lost its worker."""

    token: str
    seconds: float

    @classmethod
    def new(cls, seconds: float) -> Lease:
        return cls(uuid.uuid4().hex, seconds)


@dataclass(frozen=True)
class Begun:
    """What ``begin_step`` found: ``started`` (``state`` to end the step with), ``done`` (the
    step already succeeded or was reused), ``ended`` (the job succeeded or failed), ``busy``
    (another worker holds the lease), ``cancel`` (a cancel was requested), ``parked`` (its
    connection is paused) or ``missing`` (no such job or step)."""

    outcome: str
    job: JobRecord | None = None
    state: JobState | None = None
    paused_until: str | None = None  # the connection's 429 pause as read (``keys.rate_limit_pause``)


@dataclass(frozen=True)
class OutboxEntry:
    """A step message a transition recorded for a broker other than the store's Redis: the
    worker publishes it right after, then deletes it; the reaper publishes what stays."""

    job_id: str
    step: str
    queue: str
    eta: float | None = None  # epoch seconds: a delayed retry
    retries: int = 0  # Celery's ``retries`` header: how many retries of this step came before

    def encode(self) -> str:
        return dump([self.job_id, self.step, self.queue, self.eta, self.retries])

    @classmethod
    def decode(cls, text: str) -> OutboxEntry:
        job_id, step, queue, eta, retries = json.loads(text)
        return cls(job_id, step, queue, eta, retries)


@dataclass(frozen=True)
class Outgoing:
    """The next message of a job, written by the same call as the transition that leads to it:
    the Redis commands that publish it (the broker is the store's own Redis), or an outbox
    entry (another broker)."""

    commands: tuple[RedisCommand, ...] = ()
    outbox: OutboxEntry | None = None


@dataclass(frozen=True)
class CancelOutcome:
    job_id: str
    outcome: str  # CANCELLED, CANCELLING or FINISHED_ALREADY
    status: str  # the job's status now

    def as_json(self) -> dict[str, str]:
        return {"id": self.job_id, "outcome": self.outcome, "status": self.status}


@dataclass(frozen=True)
class ConnectionState:
    """What an operator sees of one connection (``ferry connections``, ``GET /connections``)."""

    name: str
    paused: dict[str, Any] | None  # {by, at} while an operator holds it
    parked: int  # steps waiting for a resume
    throttled_until: str | None  # the destination's 429 pause, while it lasts
    jobs: dict[str, int]  # queued / running / failed


@dataclass(frozen=True)
class JobRow:
    """One line of a job list: a job without its steps, parameters and results."""

    id: str
    kind: str
    connection: str
    status: str
    created_at: str
    updated_at: str | None
    finished_at: str | None
    error: StepError | None
    runs: int
    file: str | None
    not_before: str | None = None  # a scheduled job's time
    priority: str = "normal"
    tenant: str | None = None
    archived: bool = False  # read from the archive (it left Redis), not from Redis


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery: which, and the claim's token (see ``claim_due_deliveries``)."""

    job_id: str
    delivery_id: str
    token: str


@dataclass(frozen=True)
class NewJob:
    """A validated job about to be stored."""

    kind: str
    connection: str
    steps: tuple[str, ...]
    params: dict[str, Any]
    file: FileInfo | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None
    batch: str | None = None  # the open batch it joins
    not_before: float | None = None  # epoch seconds; set: stored scheduled, with no message yet
    priority: str = "normal"  # high | normal | low (producers.priority)
    tenant: str | None = None
    # Held in its connection's ready sets, with no message, while this many of its kind are
    # queued there already (None: never held; producers.store.ready).
    window: int | None = None
    trace: str | None = None  # the submit's traceparent (producers.tracecontext): its first run's

    @property
    def not_before_ms(self) -> int | None:
        return None if self.not_before is None else int(self.not_before * 1000)


Created = tuple[JobRecord, bool]  # the record, and False when an idempotency key named an old job
# A new job's first Celery message: (the Redis list it is pushed onto, the message as kombu's
# Redis transport stores it), built by ``producers.queue.StepMessages.first``.
MessageFor = Callable[[str, NewJob], tuple[str, str]]
