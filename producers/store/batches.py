"""Batches: many jobs watched, replayed and told about as one.

A batch is a hash (``keys.batch``, fields in ``codec``: BATCH_*) and the sorted set of its jobs
(``keys.batch_jobs``, scored like the job indexes, so ``Filters(batch=…)`` pages through it).
Its counts by status are never computed by a scan: ``lua/create.lua`` counts the jobs that join
it, and every script that moves a job's status moves them too (``lua/lib/batch.lua``, from
``begin.lua``, ``settle.lua`` and, for replay and cancel, ``batch_move.lua`` in the same MULTI
as ``StoreCore._set_status``). So they are exact after a worker's crash (a lost step writes no
status; its re-run moves it once) and after replays. A sealed batch whose last job ends
completes in that same call: its time, one ``batch.completed`` event and, with a callback URL,
one webhook delivery (``lua/lib/batch.lua``'s ``batch.complete``).
"""

from __future__ import annotations

import builtins
import time
import uuid
from datetime import datetime
from typing import Any, cast

from producers import keys
from producers.errors import BatchNotFound
from producers.records import BatchRecord, JobStatus, utcnow
from producers.store import codec
from producers.store.core import StoreCore


def eta(record: BatchRecord, now: float) -> float | None:
    """Seconds until the batch's last job ends, at the pace its ended jobs kept since it was
    opened (None: nothing left, or nothing ended yet to tell the pace by)."""
    ended = sum(record.counts.get(s.value, 0) for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED))
    if record.active == 0 or ended == 0:
        return None
    opened = datetime.fromisoformat(record.created_at.replace("Z", "+00:00")).timestamp()
    return round(record.active * max(now - opened, 0.0) / ended, 1)


class Batches(StoreCore):
    def open_batch(self, name: str | None = None, callback_url: str | None = None) -> str:
        """A new open batch: jobs join it until it is sealed. Its id."""
        batch_id = uuid.uuid4().hex
        fields: dict[Any, Any] = codec.new_batch(name, callback_url, utcnow())
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.batch(batch_id), mapping=fields)
            pipe.zadd(keys.batches(), {batch_id: int(time.time() * 1000)})
            pipe.execute()
        return batch_id

    def seal_batch(self, batch_id: str) -> bool:
        """No more jobs join it; it completes now if none is left to run. False: sealed already."""
        sealed = self._scripts.seal(batch_id, self._batch_context(batch_id))
        if sealed < 0:
            raise BatchNotFound(batch_id)
        return sealed == 1

    def unseal_batch(self, batch_id: str) -> None:
        """Open a sealed batch again (a replay of its failures, sealed again once enqueued, so
        that it completes once, after the last of them)."""
        key = keys.batch(batch_id)
        if not self.redis.hdel(key, codec.BATCH_SEALED) and not self.redis.exists(key):
            raise BatchNotFound(batch_id)

    def find_batch(self, batch_id: str) -> BatchRecord | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.batch(batch_id)))
        if not raw:
            return None
        record = codec.decode_batch(raw, batch_id)
        record.eta_seconds = eta(record, time.time())
        return record

    def get_batch(self, batch_id: str) -> BatchRecord:
        record = self.find_batch(batch_id)
        if record is None:
            raise BatchNotFound(batch_id)
        return record

    def batches(self, limit: int = 50) -> builtins.list[BatchRecord]:
        """The newest ``limit`` batches, those still running first; a batch that expired with
        its jobs leaves the list."""
        ids = [str(i) for i in self.redis.zrevrange(keys.batches(), 0, max(limit, 1) - 1)]
        with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                pipe.hgetall(keys.batch(batch_id))
            raws = pipe.execute()
        gone = [i for i, raw in zip(ids, raws, strict=True) if not raw]
        if gone:
            self.redis.zrem(keys.batches(), *gone)
        now = time.time()
        found = [codec.decode_batch(raw, i) for i, raw in zip(ids, raws, strict=True) if raw]
        for record in found:
            record.eta_seconds = eta(record, now)
        return sorted(found, key=lambda r: r.done)  # stable: newest first within each group
