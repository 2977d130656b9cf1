"""Test helpers that drive the job store through the paths production runs: a job stored as
``Ferry.submit`` stores it (``create_many``), steps begun and ended as the worker does
(``begin_step``, ``finish_step``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from producers.client import Ferry
from producers.config import parse_config
from producers.embedded import RedisLocation
from producers.errors import IdempotencyConflict, JobNotFound
from producers.records import FileInfo, JobRecord, StepRecord, StepStatus
from producers.store import JobStore, NewJob


def producer(location: RedisLocation, root: Path) -> Ferry:
    """A producer on ``location`` with one atlassian connection, ``acme`` (no destination
    behind it: nothing runs), taking files under ``root``."""
    config = parse_config({"connections": {"acme": {
        "service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
        "email": "a@b.c", "token_env": "X"}}, "files": {"roots": [str(root)]}})
    return Ferry(location.url, config=config)


def create(store: JobStore, *, kind: str, connection: str, steps: Iterable[str], params: dict[str, Any],
           file: FileInfo | None, idempotency_key: str | None = None,
           callback_url: str | None = None) -> tuple[JobRecord, bool]:
    """Store a new queued job: the record and whether it is new (an idempotency key already
    seen returns that job; a different job under it raises IdempotencyConflict)."""
    [outcome] = store.create_many([NewJob(kind=kind, connection=connection, steps=tuple(steps), params=params,
                                          file=file, idempotency_key=idempotency_key,
                                          callback_url=callback_url)])
    if isinstance(outcome, IdempotencyConflict):
        raise outcome
    return outcome


def start_step(store: JobStore, job_id: str, step: str) -> StepRecord:
    """``begin_step`` without a lease: the step's record once running."""
    begun = store.begin_step(job_id, step)
    if begun.state is None:
        raise JobNotFound(job_id, f"step {step} ({begun.outcome})")
    return begun.state.step


def succeed(store: JobStore, job_id: str, result: dict[str, Any]) -> None:
    """Run every step not done yet to success, the last one ending the job with ``result``."""
    todo = [s.name for s in store.get(job_id).steps if s.status not in (StepStatus.SUCCEEDED, StepStatus.REUSED)]
    for n, step in enumerate(todo):
        start_step(store, job_id, step)
        store.finish_step(job_id, step, {}, job_result=result if n == len(todo) - 1 else None)


def outputs(store: JobStore, job_id: str) -> dict[str, dict[str, Any]]:
    """Results of the steps that have succeeded (or were reused), by step name."""
    return {s.name: dict(s.result or {}) for s in store.get(job_id).steps
            if s.status in (StepStatus.SUCCEEDED, StepStatus.REUSED)}
