"""What a job *is* once stored: the record every surface (CLI, HTTP API, dashboard) shows."""

from __future__ import annotations

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


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


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


class StepRecord(BaseModel):
    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    next_attempt_at: str | None = None
    result: dict[str, Any] | None = None
    error: StepError | None = None


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

    def step(self, name: str) -> StepRecord:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def done(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
