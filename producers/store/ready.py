"""What runs next: a connection's ready sets, released into a short run of broker messages.

A queued job of a connection with a window (``FerryConfig.window_of``) whose kind already has
that many jobs queued there is stored with no message (``lua/create.lua``); it waits in the
connection's ready sets (``lua/lib/ready.lua``: one pair per priority level, ordered by tenant
turn and by age). ``release_ready`` (the worker's dispatcher, ``worker.dispatch``) tops the
connection's run in the broker up to its window, taking the next jobs by aging between levels
and tenant turns within one (``lua/ready_take.lua``); each gets its first message as an outbox
entry, published right after. A job's ``priority`` lives in its meta (``codec``); a change is
allowed while the job waits (``queued`` or ``scheduled``), written under WATCH (a job a worker
starts meanwhile keeps the priority it started with), and moves a held job to its new level.
"""

from __future__ import annotations

import builtins
import time
from typing import cast

import redis

from producers import keys
from producers.errors import BatchNotFound, JobNotFound
from producers.priority import PRIORITIES, level
from producers.records import JobStatus
from producers.store import codec
from producers.store.core import StoreCore
from producers.store.types import OutboxEntry

CHUNK = 500  # jobs per WATCH/MULTI round when a batch changes priority
WAITING = frozenset({JobStatus.QUEUED.value, JobStatus.SCHEDULED.value})


class Priorities(StoreCore):
    def release_ready(self, connection: str, *, queue: str, window: int, aging_seconds: float,
                      kinds: builtins.list[str]) -> builtins.list[OutboxEntry]:
        """Release the connection's next waiting jobs, as many as its window has room for
        (``kinds``: every kind its service serves, whose queued and running jobs fill it); their outbox
        entries, for the caller to publish (``StepPublisher.deliver_entry``)."""
        fields = [codec.count_field(status.value, kind, connection) for kind in kinds
                  for status in (JobStatus.QUEUED, JobStatus.RUNNING)]
        entries = self._scripts.ready_take(connection, queue=queue, window=window, aging_ms=int(aging_seconds * 1000),
                                           now_ms=int(time.time() * 1000), fields=fields)
        return [OutboxEntry.decode(e) for e in entries]

    def ready_waits(self, connection: str) -> dict[str, dict[str, float]]:
        """Per priority, how many of the connection's jobs wait in its ready sets and how long
        the oldest has waited (s; 0 when none): queue wait by priority, now."""
        with self.redis.pipeline(transaction=False) as pipe:
            for n in range(len(PRIORITIES)):
                pipe.zcard(keys.ready_at(connection, n))
                pipe.zrange(keys.ready_at(connection, n), 0, 0, withscores=True)
            found = pipe.execute()
        now_ms = time.time() * 1000
        return {name: {"waiting": int(found[2 * n]),
                       "oldest_seconds": round(max(0.0, now_ms - found[2 * n + 1][0][1]) / 1000, 1)
                       if found[2 * n + 1] else 0.0}
                for n, name in enumerate(PRIORITIES)}

    def held(self, job_id: str, connection: str, priority: str) -> bool:
        """Whether the job waits in its connection's ready sets (no message yet)."""
        return self.redis.zscore(keys.ready_at(connection, level(priority)), job_id) is not None

    def claim_dispatch_round(self, holder: str, seconds: float) -> bool:
        """True for the one dispatcher that has this round (``seconds`` long)."""
        return bool(self.redis.set(keys.dispatch_round(), holder, nx=True, px=max(1, int(seconds * 1000))))

    def ready_count(self, connections: builtins.list[str]) -> dict[str, int]:
        """How many jobs wait in each connection's ready sets (one round trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name in connections:
                for n in range(3):
                    pipe.zcard(keys.ready(name, n))
            found = pipe.execute()
        return {name: sum(found[3 * i:3 * i + 3]) for i, name in enumerate(connections)}

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
                        was = codec.priority_of_meta(meta)
                        if status in WAITING and was != priority:
                            pipe.hset(name, codec.META, codec.with_priority(meta, priority))
                            self._scripts.ready_move(job_id, level_from=level(was), level_to=level(priority), pipe=pipe)
                    pipe.execute()
                    return outcome
                except redis.WatchError:
                    continue
