"""Every error Ferry raises on purpose, under one root, so ``except FerryError`` catches them all::

    FerryError                 the root (producers.errors)
    ├── SubmitError            a job refused before anything was enqueued; lists every Problem
    │   ├── IdempotencyConflict  a known idempotency key came back with a different job
    │   └── BatchClosed    a job named a batch that is sealed or gone
    ├── ConfigError            ferry.toml is missing something or says something impossible
    ├── JobNotFound            no job with that id (never existed, purged, past retention)
    ├── BatchNotFound          no batch with that id (never opened, or expired with its jobs)
    ├── ReplayRefused          the job cannot be replayed in its state (running, succeeded…)
    ├── ActiveJob              a queued or running job cannot be deleted
    ├── NotifyRefused          a job with no callback_url, or not ended, cannot be notified
    ├── ManifestError          a batch manifest as a whole is unusable
    └── DestinationError       what a destination did to a step (worker.errors, drawn there)
        ├── RetryableError
        └── PermanentError

The worker's tree hangs under this root; ``producers`` never imports ``worker`` to define it.
"""

from __future__ import annotations

from dataclasses import dataclass


class FerryError(Exception):
    """The root of every error Ferry raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job: which field, and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SubmitError(FerryError):
    """A job was refused before anything was enqueued. Lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class IdempotencyConflict(SubmitError):
    """An idempotency key seen before came back with a different job: refusing is the only safe
    answer (returning the old job would hide that the new one was never submitted)."""


class BatchClosed(SubmitError):
    """A job named a batch no job may join any more: sealed, or gone."""

    def __init__(self, message: str) -> None:
        super().__init__([Problem("batch", message)])


class ConfigError(FerryError):
    """ferry.toml is missing something or says something impossible."""


class JobNotFound(FerryError):
    """No job with that id in the store (never existed, purged, or past retention)."""

    def __init__(self, job_id: str, detail: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id}" + (f" ({detail})" if detail else ""))


class BatchNotFound(FerryError):
    """No batch with that id (never opened, or expired with its last job)."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(f"no batch {batch_id}")


class ReplayRefused(FerryError):
    """The job cannot be replayed in its current state (running, or succeeded without force)."""


class ActiveJob(FerryError):
    """A queued or running job cannot be deleted: its worker would write to a deleted record."""


class NotifyRefused(FerryError):
    """A webhook cannot be (re)delivered: the job has no callback_url, or has not ended."""


class ManifestError(FerryError):
    """A batch manifest as a whole is unusable (unreadable, bad CSV header, no jobs)."""
