"""Batches through the Python API: open one and submit into it, seal it, read it, wait for it,
cancel it (replaying its failures is ``producers.replay.replay_batch``)::

    with ferry.open_batch(name="night avatars", callback_url="https://…/done") as batch:
        for path in files:
            batch.submit("jira-avatar", connection="acme", file=path, params={…})
    ferry.wait_batch(batch.id)            # sealed on leaving the block; completes once all ended

A bulk submission (``Ferry.submit_many``, ``ferry submit-batch``, ``POST /jobs:batch``) is a batch
of its own, opened and sealed in one go.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from producers.audit import audit
from producers.errors import JobNotFound, SubmitError
from producers.records import BatchRecord, DeliveryRecord, JobRecord, JobStatus
from producers.store import Filters
from producers.submit import Submission


class OpenBatch:
    """A batch open for jobs: ``submit`` into it, ``seal`` it (a ``with`` block seals it on leaving)."""

    def __init__(self, ferry: BatchOps, batch_id: str) -> None:
        self.ferry = ferry
        self.id = batch_id

    def submit(self, kind: str, **job: Any) -> JobRecord:
        """``Ferry.submit`` into this batch."""
        return self.ferry.submit(kind, batch=self.id, **job)

    def seal(self) -> bool:
        return self.ferry.seal_batch(self.id)

    def __enter__(self) -> OpenBatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.seal()  # the jobs submitted are queued whatever happened: the batch must complete


class BatchOps(Submission):
    def open_batch(self, name: str | None = None, callback_url: str | None = None) -> OpenBatch:
        """A new open batch; ``callback_url`` is told (signed, ``batch.completed``) each time it
        completes. Raises SubmitError for a callback URL Ferry will not call."""
        problems = self._check_callback(callback_url)
        if problems:
            raise SubmitError(problems)
        return OpenBatch(self, self.store.open_batch(name, callback_url))

    def seal_batch(self, batch_id: str) -> bool:
        """No more jobs join it; it completes once none is left to run. False: sealed already.
        Raises BatchNotFound."""
        return self.store.seal_batch(batch_id)

    def batch(self, batch_id: str) -> BatchRecord:
        """Its record: counts by status, bytes, ETA, sealed and finished times. Raises BatchNotFound."""
        return self.store.get_batch(batch_id)

    def batches(self, limit: int = 50) -> list[BatchRecord]:
        """The newest batches, those still running first."""
        return self.store.batches(limit)

    def wait_batch(self, batch_id: str, timeout: float | None = None, poll: float = 0.25,
                   progress: Callable[[BatchRecord], None] | None = None) -> BatchRecord:
        """Block until the batch completes (sealed, and no job left to run): one read of its
        record per ``poll``, whatever its size. Raises TimeoutError, BatchNotFound."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.store.get_batch(batch_id)
            if progress is not None:
                progress(record)
            if record.done:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} not complete after {timeout}s")
            time.sleep(poll)

    def notify_batch(self, batch_id: str) -> DeliveryRecord:
        """Deliver the completed batch's webhook again (its last completion, a new delivery id,
        due now; a worker sends it). Raises BatchNotFound, NotifyRefused (no callback_url, or
        not complete)."""
        return self.store.redeliver_batch(batch_id)

    def cancel_batch(self, batch_id: str, *, by: str = "python") -> dict[str, int]:
        """Seal the batch and cancel its scheduled, queued and running jobs (a running step ends
        first)."""
        self.store.get_batch(batch_id)
        self.store.seal_batch(batch_id)
        ids = [job_id for status in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING)
               for job_id in self.store.select(Filters(batch=batch_id, status=status.value)).ids]
        outcomes: dict[str, int] = {"matched": len(ids), "cancelled": 0, "cancelling": 0, "finished": 0}
        for job_id in ids:
            try:
                outcomes[self.store.cancel(job_id, by).outcome] += 1
            except JobNotFound:
                outcomes["finished"] += 1  # purged meanwhile: nothing to stop
        audit("cancel", by, target={"batch": batch_id}, jobs=outcomes["cancelled"] + outcomes["cancelling"],
              matched=len(ids))
        return outcomes
