"""Changing what runs next while a job waits: its priority (``ferry priority``, per batch too).

A job's ``priority`` lives in its meta (``codec``); a change is allowed while the job waits
(``queued`` or ``scheduled``) and is written under WATCH, so a job that a worker starts
meanwhile keeps the priority it started with and the change answers "no longer waiting".
"""

from __future__ import annotations

import builtins
from typing import cast

import redis

from producers import keys
from producers.errors import BatchNotFound, JobNotFound
from producers.records import JobStatus
from producers.store import codec
from producers.store.core import StoreCore

CHUNK = 500  # jobs per WATCH/MULTI round when a batch changes priority
WAITING = frozenset({JobStatus.QUEUED.value, JobStatus.SCHEDULED.value})


class Priorities(StoreCore):
    def set_priority(self, job_id: str, priority: str) -> bool:
        """Give a waiting job ``priority``: True when changed (or already so), False when it no
        longer waits (running or ended). Raises JobNotFound."""
        found = self._set_priorities([job_id], priority)
        if job_id not in found:
            raise JobNotFound(f"no job {job_id}")
        return found[job_id]

    def set_batch_priority(self, batch_id: str, priority: str) -> int:
        """Give every waiting job of the batch ``priority``; how many wait with it now. Raises
        BatchNotFound."""
        if not self.redis.exists(keys.batch(batch_id)):
            raise BatchNotFound(f"no batch {batch_id} (it expired, or was never opened)")
        changed, start = 0, 0
        while True:
            ids = cast(builtins.list[str], self.redis.zrange(keys.batch_jobs(batch_id), start, start + CHUNK - 1))
            if not ids:
                return changed
            changed += sum(self._set_priorities(ids, priority).values())
            start += CHUNK

    def _set_priorities(self, ids: builtins.list[str], priority: str) -> dict[str, bool]:
        """Each existing job of ``ids``: whether it waits with ``priority`` now (one MULTI for
        all, tried again if one of them moved meanwhile)."""
        names = [keys.job(i) for i in ids]
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*names)  # type: ignore[no-untyped-call]
                    found = [cast(list[str | None], pipe.hmget(n, [codec.META, codec.STATUS])) for n in names]
                    pipe.multi()
                    outcome: dict[str, bool] = {}
                    for job_id, name, (meta, status) in zip(ids, names, found, strict=True):
                        if meta is None:
                            continue
                        outcome[job_id] = status in WAITING
                        if status in WAITING and codec.priority_of_meta(meta) != priority:
                            pipe.hset(name, codec.META, codec.with_priority(meta, priority))
                    pipe.execute()
                    return outcome
                except redis.WatchError:
                    continue
