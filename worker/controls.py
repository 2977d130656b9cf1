"""The operator's controls as a step sees them, checked by the step's start (``begin_step``).

- A job whose cancel was requested while one of its steps ran is cancelled here, at the start
  of its next step, and that step does not run.
- A step on a paused connection is parked: it goes into the connection's parked set in Redis
  (atomically with the pause check) and its message is acknowledged. It spends no attempt, holds
  no worker slot, and survives worker restarts; ``ferry resume`` re-publishes it at once.
- Otherwise the step goes ahead.

``StepFailed`` is how a step that failed its job ends its Celery task: as a failure (Flower shows
FAILURE), declared in the task's ``throws``, so Celery logs one line instead of a traceback.
"""

from __future__ import annotations

from typing import NoReturn

from celery.exceptions import Ignore

from producers.errors import FerryError
from producers.records import JobRecord
from worker.log import get_logger
from worker.runtime import Runtime


class StepFailed(FerryError):
    """The step failed and so did its job (the record says why); the chain stops here."""


def stopped(rt: Runtime, job: JobRecord, step: str, verdict: str) -> NoReturn:
    """End the task of a step that ``JobStore.begin_step`` did not start (``Ignore``): the job's
    cancel was requested (it is cancelled now), or its connection is paused (the step is parked)."""
    if verdict == "cancel":
        rt.store.settle_cancel(job.id)
        get_logger(job_id=job.id, kind=job.kind, step=step).info("job cancelled; step not run")
    else:
        get_logger(job_id=job.id, kind=job.kind, step=step, connection=job.connection).info(
            "connection paused; step parked until it is resumed")
    raise Ignore()
