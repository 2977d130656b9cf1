"""Errors a producer sees. Worker-side errors live in ``worker.errors``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job: which field, and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SubmitError(ValueError):
    """A job was refused before anything was enqueued. Lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class IdempotencyConflict(SubmitError):
    """An idempotency key seen before came back with a different job: refusing is the only safe
    answer (returning the old job would hide that the new one was never submitted)."""


class ConfigError(ValueError):
    """ferry.toml is missing something or says something impossible."""


class JobNotFound(KeyError):
    """No job with that id in the store (never existed, purged, or past retention)."""


class ReplayRefused(ValueError):
    """The job cannot be replayed in its current state (running, or succeeded without force)."""
