"""An operator's controls: cancel a job, pause and resume a connection, and the claims that
keep two operators' replays apart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis

from producers import events, keys
from producers.errors import JobNotFound
from producers.priority import level
from producers.records import JobRecord, JobStatus, StepStatus, utc_at, utcnow
from producers.store import codec
from producers.store.counts import Counts
from producers.store.deliveries import add_delivery
from producers.store.types import (
    CANCELLED,
    CANCELLING,
    FINISHED_ALREADY,
    CancelOutcome,
    ConnectionState,
    JobState,
    dump,
)

_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED)  # the job counts a connection shows


class Controls(Counts):
    def cancel(self, job_id: str, by: str) -> CancelOutcome:
        """Stop a job. Queued, or between steps (a step waiting to retry): cancelled now, and a
        message still on its way finds it ended. A step running now finishes; the job is
        cancelled when its next step would start (``begin_step``). Ended (in Redis, or moved into the
        archive): nothing changes."""
        return self._cancel(job_id, by, wait_for_running_step=True)

    def settle_cancel(self, job_id: str) -> CancelOutcome:
        """The worker, at the start of a step of a job whose cancel was requested: cancel it now."""
        return self._cancel(job_id, None, wait_for_running_step=False)

    def _cancel(self, job_id: str, by: str | None, *, wait_for_running_step: bool) -> CancelOutcome:
        key = keys.job(job_id)
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = cast(dict[str, str], pipe.hgetall(key))
                    if not raw:
                        pipe.unwatch()
                        return self._cancel_archived(job_id)
                    record = codec.decode(raw, job_id)
                    if record.done:
                        pipe.unwatch()
                        return CancelOutcome(job_id, FINISHED_ALREADY, record.status.value)
                    asked = json.loads(raw.get(codec.CANCEL) or "null") or {"by": by, "at": utcnow()}
                    running = wait_for_running_step and any(
                        s.status == StepStatus.RUNNING for s in record.steps)
                    pipe.multi()
                    pipe.hset(key, codec.CANCEL, dump(asked))
                    if not running:
                        self._write_cancelled(pipe, raw, record, str(asked.get("by") or "unknown"))
                    pipe.execute()
                except redis.WatchError:
                    continue  # a worker wrote the job meanwhile: look again
            status = JobStatus.RUNNING if running else JobStatus.CANCELLED
            return CancelOutcome(job_id, CANCELLING if running else CANCELLED, status.value)

    def _cancel_archived(self, job_id: str) -> CancelOutcome:
        """A job not in Redis: ended already if the archive holds it (it moved there ended),
        else there is no such job."""
        found = self.archive.get_many([job_id]) if self.archive is not None else []
        if not found:
            raise JobNotFound(job_id)
        return CancelOutcome(job_id, FINISHED_ALREADY, found[0].status.value)

    def _write_cancelled(self, pipe: Any, raw: dict[str, str], record: JobRecord, by: str) -> None:
        now = utcnow()
        meta = json.loads(raw.get(codec.META) or "{}")
        state = JobState(job_id=record.id, status=record.status,
                         score=float(raw.get(codec.SCORE) or self._next_score()), runs=codec.runs(raw, meta),
                         meta=meta)
        runs = json.loads(state.finished_runs(CANCELLED, now))
        if runs:
            runs[-1]["note"] = "; ".join(filter(None, [runs[-1].get("note"), f"cancelled by {by}"]))
        fields: dict[Any, Any] = {codec.FINISHED_AT: now, codec.UPDATED_AT: now, codec.RUNS: dump(runs)}
        pipe.hset(keys.job(record.id), mapping=fields)
        self._set_status(pipe, state, JobStatus.CANCELLED)
        if record.status == JobStatus.QUEUED:  # out of its connection's ready sets, if it waits there
            self._scripts.ready_move(record.id, level_from=level(record.priority), level_to=None, pipe=pipe)
        pipe.persist(keys.job(record.id))  # kept, like a failed job, until replayed or purged
        self._event(pipe, events.CANCELLED, record.id, state.meta, JobStatus.CANCELLED)
        if state.meta.get("callback_url"):
            add_delivery(pipe, state.job_id, events.CANCELLED, state.run_number, "end")

    def pause_connection(self, connection: str, by: str) -> bool:
        """Hold every step on ``connection`` until ``resume_connection``. False if already paused."""
        return bool(self.redis.set(keys.connection_paused(connection), dump({"by": by, "at": utcnow()}), nx=True))

    def resume_connection(self, connection: str) -> tuple[bool, list[tuple[str, str]]]:
        """Lift the pause. Returns whether it was paused, and the (job id, step) pairs parked
        meanwhile, taken out of the parked set in the same atomic step (the caller re-publishes
        them; ``park_again`` puts back what it could not)."""
        was, members = self._scripts.resume(connection)
        return was, [cast(tuple[str, str], tuple(m.split(" ", 1))) for m in members]

    def is_parked(self, connection: str, job_id: str, step: str) -> bool:
        """Whether the step waits in its paused connection's parked set (``begin.lua`` put it
        there; ``resume`` publishes it)."""
        return bool(self.redis.sismember(keys.parked(connection), f"{job_id} {step}"))

    def park_again(self, connection: str, parked: Iterable[tuple[str, str]]) -> None:
        members = [f"{job_id} {step}" for job_id, step in parked]
        if members:
            self.redis.sadd(keys.parked(connection), *members)

    def connection_states(self, connections: Sequence[str]) -> dict[str, ConnectionState]:
        """Each connection's pause, the destination's 429 pause, parked steps and job counts."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name in connections:
                pipe.get(keys.connection_paused(name))
                pipe.get(keys.rate_limit_pause(name))
                pipe.scard(keys.parked(name))
            replies = pipe.execute()
        counts = self.counts_by_connection(connections)
        states = {}
        for i, name in enumerate(connections):
            paused, throttled, parked = replies[3 * i: 3 * i + 3]
            until = float(throttled) if throttled and float(throttled) > time.time() else None
            states[name] = ConnectionState(
                name=name, paused=json.loads(paused) if paused else None, parked=int(parked),
                throttled_until=utc_at(until) if until else None,
                jobs={s.value: counts[name][s.value] for s in _ACTIVE})
        return states

    # ---- claims and bulk progress ------------------------------------------------------
    def claim_replay(self, job_id: str, holder: str, seconds: int) -> bool:
        """True when this caller may replay the job now; a second caller within ``seconds`` of
        the first (or before it releases) gets False."""
        return bool(self.redis.set(keys.replay_claim(job_id), holder, nx=True, ex=seconds))

    def release_replay(self, job_id: str) -> None:
        self.redis.delete(keys.replay_claim(job_id))

    def save_bulk_replay(self, state: dict[str, Any], seconds: int) -> None:
        self.redis.set(keys.bulk_replay(), dump(state), ex=seconds)

    def last_bulk_replay(self) -> dict[str, Any] | None:
        raw = self.redis.get(keys.bulk_replay())
        return cast(dict[str, Any], json.loads(str(raw))) if raw else None
