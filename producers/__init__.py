"""Ferry's submission side: what a system that only *produces* upload jobs imports.

It depends on redis, celery (to publish by task name) and pydantic — never on the worker's
destination clients (``requests`` & co.).
"""

from producers.client import Ferry, JobRequest
from producers.errors import (
    ActiveJob,
    ConfigError,
    FerryError,
    IdempotencyConflict,
    JobNotFound,
    ManifestError,
    Problem,
    ReplayRefused,
    SubmitError,
)
from producers.kinds import KINDS, Kind, Step
from producers.records import FileInfo, JobRecord, JobStatus, StepError, StepRecord, StepStatus
from producers.store import JobStore, Page

__all__ = [
    "KINDS",
    "ActiveJob",
    "ConfigError",
    "Ferry",
    "FerryError",
    "FileInfo",
    "IdempotencyConflict",
    "JobNotFound",
    "JobRecord",
    "JobRequest",
    "JobStatus",
    "JobStore",
    "Kind",
    "ManifestError",
    "Page",
    "Problem",
    "ReplayRefused",
    "Step",
    "StepError",
    "StepRecord",
    "StepStatus",
    "SubmitError",
]
