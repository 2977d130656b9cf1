"""Reading jobs through the Python API: one job, waiting for it, lists, and the event stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from producers import events
from producers.client_core import ClientCore
from producers.records import DeliveryRecord, JobRecord
from producers.store import Filters, Page


class Reads(ClientCore):
    # ---- reads ---------------------------------------------------------------------------
    def status(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.1,
             on_poll: Callable[[JobRecord], None] | None = None) -> JobRecord:
        """Block until the job ends (succeeded or failed). Polls the store; never a Celery result.
        ``on_poll``: shown each record read while the job runs (a progress bar)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.store.get(job_id)
            if record.done:
                return record
            if on_poll is not None:
                on_poll(record)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {record.status} after {timeout}s")
            time.sleep(poll)

    def jobs(self, *, status: str | None = None, kind: str | None = None,
             connection: str | None = None, limit: int = 50, cursor: str | None = None,
             batch: str | None = None, priority: str | None = None, tenant: str | None = None) -> Page:
        return self.store.list(status=status, kind=kind, connection=connection, limit=limit, cursor=cursor,
                               batch=batch, priority=priority, tenant=tenant)

    def search(self, filters: Filters, *, limit: int = 50, cursor: str | None = None) -> Page:
        """Jobs matching ``filters`` (every filter the HTTP API has), newest first, in Redis and
        the archive."""
        chosen = self.store.select(filters, limit=limit, cursor=cursor)
        return Page(self.store.records(chosen.ids), chosen.next_cursor)

    def notify(self, job_id: str) -> DeliveryRecord:
        """Deliver an ended job's webhook again (a new delivery, due now; a worker sends it). An
        archived job comes back into Redis first: it stays there until the delivery settles."""
        self.store.bring_back(job_id)
        return self.store.redeliver(job_id)

    def events(self, after_id: str = events.START, *, job: str | None = None, kind: str | None = None,
               connection: str | None = None, follow: bool = False) -> Iterator[events.Event]:
        """The job events after ``after_id`` (default: the oldest kept), filtered; with
        ``follow``, then each new one as it happens, without end."""
        filters = events.EventFilters(job=job, kind=kind, connection=connection)
        if follow:
            yield from events.follow(self.redis, after_id, filters)
            return
        position = after_id
        while True:
            batch = events.read(self.redis, position, filters)
            yield from batch.events
            if batch.position == position:
                return
            position = batch.position
