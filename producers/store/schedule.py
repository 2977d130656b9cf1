"""Scheduled jobs: held in the store until their ``not_before``, then queued by one releaser.

A job submitted (or replayed) with a ``not_before`` is stored ``scheduled`` with no message
anywhere: its id sits in ``keys.scheduled()`` scored by that time (epoch ms), nothing else. No
broker holds it, so no worker memory is spent on it and Celery's ``eta`` (tasks run again after
the visibility timeout on Redis, celery#2599, kombu#337) is never involved. A worker's releaser
(``worker.schedule``), one per round across the fleet, takes the due ids in bounded batches
and ``lua/release.lua`` queues each with its first message, checking under the script that it
is still scheduled and due: a cancelled job is never released, and none is released early.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import cast

from producers import keys
from producers.priority import level
from producers.records import utc_at
from producers.store import codec
from producers.store.core import StoreCore
from producers.store.types import Outgoing

RELEASE_BATCH = 500  # jobs per script call: a bounded pause for every other Redis client

# The message of a released job: (job id, its connection, the step it starts at) -> what its
# first message is (the publisher's ``outgoing``).
ReleaseMessage = Callable[[str, str, str], Outgoing]


def _first_step(meta: str, stored_runs: str | None) -> str:
    """The step a scheduled job starts at: its latest run's (a replay's ``from_step``)."""
    return str(codec.runs({codec.RUNS: stored_runs}, json.loads(meta))[-1]["from_step"])


class Schedule(StoreCore):
    def claim_release_round(self, holder: str, seconds: float) -> bool:
        """True for the one releaser that has this round (``seconds`` long)."""
        return bool(self.redis.set(keys.scheduler_round(), holder, nx=True, px=max(1, int(seconds * 1000))))

    def scheduled_count(self) -> int:
        return int(self.redis.zcard(keys.scheduled()))

    def next_due(self) -> float | None:
        """When the earliest scheduled job is due (epoch seconds), or None."""
        first = cast(list[tuple[str, float]], self.redis.zrange(keys.scheduled(), 0, 0, withscores=True))
        return first[0][1] / 1000 if first else None

    def release_due(self, message: ReleaseMessage, *, now: float | None = None, limit: int = RELEASE_BATCH,
                    window_of: Callable[[str], int | None] | None = None) -> list[tuple[str, Outgoing]]:
        """Queue up to ``limit`` scheduled jobs whose time has come (``now``, epoch s; default
        the clock), each with the message ``message`` builds; returns them with their
        messages, so the caller can publish outbox entries (another broker). With
        ``window_of`` (a connection's window, ``FerryConfig.window_of``) a job past its
        connection's window waits in the ready sets instead: returned with no message."""
        now = time.time() if now is None else now
        now_ms = int(now * 1000)
        ids = [str(i) for i in self.redis.zrangebyscore(keys.scheduled(), "-inf", now_ms, start=0,
                                                        num=max(1, limit))]
        if not ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), [codec.META, codec.RUNS])
            found = cast(list[list[str | None]], pipe.execute())
        outgoing: dict[str, Outgoing] = {}
        held: dict[str, str] = {}
        for job_id, (meta, stored_runs) in zip(ids, found, strict=True):
            connection = codec.connection_of(meta)
            if meta is None or connection is None:
                continue  # deleted meanwhile: the script drops it from the due set
            outgoing[job_id] = message(job_id, connection, _first_step(meta, stored_runs))
            window = window_of(connection) if window_of is not None else None
            if window is not None:
                held[job_id] = f"{window}|{level(codec.priority_of(json.loads(meta)))}"
        args = [(job_id, *_message_args(outgoing.get(job_id)), held.get(job_id, "")) for job_id in ids]
        released = self._scripts.release(args, now_ms=now_ms, now=utc_at(now), events_max=self.events_max_length)
        return [(job_id.removesuffix("+"), Outgoing() if job_id.endswith("+") else outgoing[job_id])
                for job_id in released]


def _message_args(outgoing: Outgoing | None) -> tuple[str, str, str]:
    """A message as ``release.lua`` takes it: its list and body (a Redis broker's LPUSH), or an
    outbox entry."""
    if outgoing is None:
        return "", "", ""
    if outgoing.outbox is not None:
        return "", "", outgoing.outbox.encode()
    [(command, (target, body))] = outgoing.commands
    if command != "lpush":
        raise ValueError(f"a released job's first message is one LPUSH, not {command}")
    return str(target), str(body), ""
