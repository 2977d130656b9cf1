"""A step's transitions: begin, settle (succeed, retry, fail), its lease, and the outbox.

Each transition is ONE Redis call (a Lua script, EVALSHA) and the one place to add a write to
it: ``begin_step`` runs ``lua/begin.lua`` (lease + read the job + mark the step running), the
others ``lua/settle.lua`` through ``_settle`` (record + release the lease + status move + the
next step's message or outbox entry + events + webhook delivery). The worker passes back the
``JobState`` that ``begin_step`` returned, so ending a step needs no read; called without it
(replay, tools) they read first. A status move in a transition happens in those two scripts
(and ``StoreCore._set_status`` for replay and cancel): the place for anything that must move
with a job's status.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, cast

from producers import events, keys
from producers.records import AttemptStatus, JobRecord, JobStatus, Progress, StepError, StepStatus, utc_in, utcnow
from producers.store import codec
from producers.store.core import StoreCore
from producers.store.deliveries import delivery_commands
from producers.store.scripts import Settle
from producers.store.types import PERSIST, Begun, JobState, Lease, OutboxEntry, Outgoing, dump


class Transitions(StoreCore):
    def begin_step(self, job_id: str, step: str, lease: Lease | None = None) -> Begun:
        """Take the job's lease and mark ``step`` running, in one call: a new attempt starts
        (the one still open, if any, was lost with its worker) and the job is ``running``.
        Outcomes other than ``started`` change nothing but what ``Begun`` says (a paused
        connection parks the step): the job is gone, the step already succeeded (a
        redelivered message), the job ended, or another worker holds the lease."""
        now = utcnow()
        reply = self._scripts.begin(job_id, step, token=lease.token if lease else "",
                                    now_ms=int(time.time() * 1000),
                                    lease_ms=int(lease.seconds * 1000) if lease else 0, now=now,
                                    events_max=self.events_max_length)
        if reply.outcome == "missing":
            return Begun(reply.outcome)
        raw = reply.raw
        if reply.step_json is None:
            return Begun(reply.outcome, job=codec.decode(raw, job_id))
        record = codec.step(step, reply.step_json)
        raw.update({codec.step_field(step): reply.step_json, codec.STATUS: JobStatus.RUNNING.value,
                    codec.UPDATED_AT: now})
        job = codec.decode(raw, job_id)
        meta = json.loads(raw[codec.META])
        state = JobState(job_id=job_id, status=JobStatus.RUNNING, score=self._score(job_id, raw.get(codec.SCORE)),
                         runs=codec.runs(raw, meta), step_record=record, meta=meta)
        return Begun(reply.outcome, job=job, state=state, paused_until=reply.paused_until)

    def finish_step(self, job_id: str, step: str, result: dict[str, Any], *, state: JobState | None = None,
                    lease: Lease | None = None, job_result: dict[str, Any] | None = None,
                    then: Outgoing | None = None) -> bool:
        """Record the step's output; with ``job_result`` (its last step) the job succeeds in the
        same call. ``then``: the next step's message, written with the record. False when the
        lease was lost meanwhile (another worker has the step; nothing was written)."""
        state = state or self._state(job_id, step)
        record = state.step
        now = utcnow()
        record.status = StepStatus.SUCCEEDED
        record.finished_at = now
        record.result = result
        record.error = None
        record.end_attempt(AttemptStatus.SUCCEEDED, now)
        fields = {codec.step_field(step): record.stored(), codec.UPDATED_AT: now}
        succeeded = self._job_event(events.STEP_SUCCEEDED, state, state.status, step=step,
                                    attempt=record.attempts)
        if job_result is None:
            return self._settle(state, fields, lease=lease, then=then, events_=[succeeded])
        fields.update({codec.RESULT: dump(job_result), codec.FINISHED_AT: now,
                       codec.RUNS: state.finished_runs("succeeded", now)})
        ended = self._job_event(events.SUCCEEDED, state, JobStatus.SUCCEEDED, run=state.run_number)
        return self._settle(state, fields, lease=lease, status=JobStatus.SUCCEEDED,
                            expire=self.retention_seconds, then=then, events_=[succeeded, ended],
                            delivery=events.SUCCEEDED)

    def retry_step(self, job_id: str, step: str, error: StepError, delay: float, *,
                   state: JobState | None = None, lease: Lease | None = None,
                   then: Outgoing | None = None) -> bool:
        """The step waits ``delay`` seconds for its next attempt; ``then`` is that attempt's
        (delayed) message, written with the record."""
        state = state or self._state(job_id, step)
        record = state.step
        record.status = StepStatus.RETRYING
        record.error = error
        record.next_attempt_at = utc_in(delay)
        record.end_attempt(AttemptStatus.RETRIED, utcnow(), error, retry_delay=round(delay, 3))
        retrying = self._job_event(events.STEP_RETRYING, state, state.status, step=step,
                                   attempt=record.attempts, delay=round(delay, 3),
                                   next_attempt_at=record.next_attempt_at)
        return self._settle(state, {codec.step_field(step): record.stored(), codec.UPDATED_AT: utcnow()},
                            lease=lease, then=then, events_=[retrying])

    def mark_failed(self, job_id: str, step: str, error: StepError, *, state: JobState | None = None,
                    lease: Lease | None = None) -> bool:
        state = state or self._state(job_id, step)
        record = state.step
        now = utcnow()
        record.status = StepStatus.FAILED
        record.finished_at = now
        record.next_attempt_at = None
        record.error = error
        record.end_attempt(AttemptStatus.FAILED, now, error)
        return self._settle(state, {
            codec.step_field(step): record.stored(), codec.ERROR: error.model_dump_json(),
            codec.FINISHED_AT: now, codec.UPDATED_AT: now,
            codec.RUNS: state.finished_runs("failed", now, error),
        }, lease=lease, status=JobStatus.FAILED, expire=PERSIST,
            events_=[self._job_event(events.FAILED, state, JobStatus.FAILED, step=step, run=state.run_number)],
            delivery=events.FAILED)

    def renew_lease(self, job_id: str, lease: Lease) -> bool:
        """Extend ``lease`` by its length if it is still this holder's."""
        return self._scripts.renew(job_id, lease.token, int((time.time() + lease.seconds) * 1000))

    def record_progress(self, job: JobRecord, step: str, progress: Progress, lease: Lease) -> bool:
        """Keep an upload step's figures on its record and append a ``step.progress`` event,
        while ``lease`` is still this holder's (and extend it: the holder is alive). False: the
        job is gone or the step is another worker's now; nothing was written."""
        event = events.new(events.STEP_PROGRESS, job=job.id, kind=job.kind, connection=job.connection,
                           status="running", step=step, tenant=job.tenant,
                           **progress.model_dump(exclude={"updated_at"}))
        return self._scripts.progress(
            job.id, step, token=lease.token, until_ms=int((time.time() + lease.seconds) * 1000),
            progress=progress.model_dump_json(exclude_none=True), kept=events.PROGRESS_KEPT,
            event_data=json.dumps(event.data, separators=(",", ":")), batch=job.batch)

    def lease_expiry(self, job_id: str) -> float:
        """When the job's lease lapses (epoch seconds; 0: nobody holds it)."""
        return codec.lease_until(cast(str | None, self.redis.hget(keys.job(job_id), codec.LEASE)))

    # ---- the outbox: step messages for a broker other than the store's Redis -----------------
    def outbox_due(self, older_than: float, limit: int = 1000) -> list[OutboxEntry]:
        """Entries written over ``older_than`` seconds ago and still there: their worker did
        not get to publish them (it or the broker died in between)."""
        members = self.redis.zrangebyscore(keys.outbox(), "-inf", (time.time() - older_than) * 1000,
                                           start=0, num=limit)
        return [OutboxEntry.decode(str(m)) for m in members]

    def outbox_done(self, entry: OutboxEntry) -> None:
        self.redis.zrem(keys.outbox(), entry.encode())

    # ---- internals -----------------------------------------------------------------------
    def _settle(self, state: JobState, fields: dict[str, str], *, lease: Lease | None = None,
                status: JobStatus | None = None, expire: int = 0, then: Outgoing | None = None,
                events_: Sequence[events.Event] = (), delivery: str | None = None) -> bool:
        """Write a transition in one call of ``settle.lua``: ``fields``, the status (and its
        index entry) when it changes, the expiry, the lease released, ``then``'s message or
        outbox entry, the transition's ``events_`` and, for a job with a callback URL, the
        webhook ``delivery`` of that ending event. False (nothing written) when ``lease`` is no
        longer this holder's."""
        moves = status is not None and status != state.status
        if moves:
            assert status is not None
            fields = {**fields, codec.STATUS: status.value}
        then = then or Outgoing()
        commands: list[list[Any]] = [[name, *args] for name, args in then.commands]
        commands += [["XADD", keys.events(), "MAXLEN", "~", self.events_max_length, "*", "type", e.type,
                      "data", json.dumps(e.data, separators=(",", ":"))] for e in events_]
        if delivery:
            commands += delivery_commands(state, delivery)
        if moves and status is not None:
            commands += codec.count_moves(state.meta, state.status.value, status.value)
        now = time.time()
        written = self._scripts.settle(Settle(
            state.job_id, fields, token=lease.token if lease else "", status_from=state.status.value,
            status_to=status.value if moves and status else "", score=f"{state.score:.0f}",
            finished=moves and status in (JobStatus.SUCCEEDED, JobStatus.FAILED), expire=expire,
            outbox_entry=then.outbox.encode() if then.outbox else "", commands=commands,
            batch=self._job_batch_context(state, status) if moves and status else ""),
            now_ms=int(now * 1000), minute=int(now // 60))
        if written and moves and status is not None:
            state.status = status
        return written

    def _job_event(self, type_: str, state: JobState, status: JobStatus, **extra: Any) -> events.Event:
        return events.new(type_, job=state.job_id, kind=str(state.meta.get("kind", "")),
                          connection=str(state.meta.get("connection", "")), status=status.value,
                          tenant=codec.tenant_of(state.meta), **extra)
