"""Replay and purge: what an operator does with the jobs the store kept.

A failed job replays from its failed step, reusing what earlier steps produced, unless an output a
later step needs has expired: each ``Step.needs_secret_of`` in ``producers.kinds`` names the step
whose short-lived secret (the media JWT) it uses, and when that secret is gone the replay starts
at the producing step instead, saying why in the run's note. Nothing here knows a kind by name.

Which jobs a bulk action touches is ``producers.store.selection`` (filters paged over the indexes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from producers import tracecontext
from producers.client import Ferry
from producers.errors import ActiveJob, JobNotFound, ReplayRefused
from producers.kinds import KINDS, Kind
from producers.records import JobRecord, JobStatus, StepStatus
from producers.store import Filters

DEFAULT_RATE = 20.0  # jobs per second a bulk replay enqueues: gentle on the destination
CLAIM_SECONDS = 30  # two operators pressing replay at once: only one enqueues a chain


def select(ferry: Ferry, filters: Filters, *, limit: int | None = None) -> list[str]:
    """Every matching job id (newest first), or the first ``limit``."""
    return ferry.store.select(filters, limit=limit).ids


def count(ferry: Ferry, filters: Filters) -> int:
    """How many jobs match (the dry run)."""
    return ferry.store.count(filters)


# ---- one replay --------------------------------------------------------------------------------
def plan(ferry: Ferry, record: JobRecord, kind: Kind, *, restart: bool) -> tuple[str, str | None]:
    """The step to start from and, when it is not the obvious one, why."""
    names = list(kind.step_names)
    if restart:
        return names[0], "restart requested: every step runs again"
    if record.status == JobStatus.SUCCEEDED:
        return names[0], "forced replay of a succeeded job: every step runs again"
    if record.status == JobStatus.QUEUED:
        return names[0], "forced: a queued job re-published (its message may have been lost)"
    done = (StepStatus.SUCCEEDED, StepStatus.REUSED)
    steps = {s.name: s for s in record.steps}
    start = next((i for i, n in enumerate(names)
                  if n not in steps or steps[n].status not in done), 0)
    note: str | None = None
    # Go back while a step that will run needs a secret an earlier (reused) step produced and
    # that secret has lapsed; repeat, since the producing step may itself need another's.
    moved = True
    while moved:
        moved = False
        for spec in kind.steps[start:]:
            producer = spec.needs_secret_of
            if producer is None or names.index(producer) >= start:
                continue
            if ferry.store.get_secret(record.id, producer) is None:
                start = names.index(producer)
                note = (f"{spec.name} needs the short-lived output of {producer} "
                        f"({kind.step(producer).title.lower()}), which has expired: "
                        f"replaying from {producer}")
                moved = True
                break
    return names[start], note


def replay(ferry: Ferry, job_id: str, *, restart: bool = False, force: bool = False,
           trigger: str = "cli", not_before: float | None = None) -> JobRecord:
    """Run a failed job again from its failed step (or the first, with ``restart``), as a new
    run in the same record; with ``not_before`` (epoch s) the run is scheduled for then. Raises
    JobNotFound, or ReplayRefused for a queued/scheduled/running job, a succeeded one without
    ``force``, or a kind no longer declared."""
    record = ferry.store.get(job_id)
    _check_replayable(record, force)
    kind = KINDS.get(record.kind)
    if kind is None:
        raise ReplayRefused(f"job {job_id} is of kind {record.kind!r}, which is no longer declared")
    if not ferry.store.claim_replay(job_id, trigger, CLAIM_SECONDS):
        raise ReplayRefused(f"job {job_id} is being replayed right now")
    try:
        ferry.store.bring_back(job_id)  # an archived job returns to Redis for its new run
        record = ferry.store.get(job_id)  # re-read under the claim: it may have moved meanwhile
        _check_replayable(record, force)
        from_step, note = plan(ferry, record, kind, restart=restart)
        trace = tracecontext.replay_trace(ferry.config, job_id, record.runs[-1].trace if record.runs else None,
                                          from_step)
        record = ferry.store.begin_run(job_id, trigger=trigger, from_step=from_step, note=note,
                                       not_before=not_before, trace=trace)
        if not_before is None:  # scheduled: the releaser publishes it when due
            ferry.enqueue(job_id, kind, from_step)  # broker down: failed again, ready for the next replay
        return record
    finally:
        ferry.store.release_replay(job_id)


def _check_replayable(record: JobRecord, force: bool) -> None:
    started = any(s.status != StepStatus.PENDING for s in record.steps)
    if record.status == JobStatus.SCHEDULED:
        raise ReplayRefused(f"job {record.id} is scheduled for {record.not_before}; cancel it first")
    if record.status == JobStatus.RUNNING or (record.status == JobStatus.QUEUED and started):
        raise ReplayRefused(f"job {record.id} is {record.status.value}; wait for it to end")
    if record.status == JobStatus.QUEUED and not force:
        # Its message may still be waiting in a backlog. Force re-publishes it (a producer that
        # died between storing and publishing lost it); a second copy would find the work done.
        raise ReplayRefused(f"job {record.id} is queued and has not started; force re-publishes it "
                            "if its message was lost")
    if record.status == JobStatus.SUCCEEDED and not force:
        raise ReplayRefused(f"job {record.id} succeeded; replay it with force to run it again")


# ---- many --------------------------------------------------------------------------------------
@dataclass
class BulkOutcome:
    matched: int = 0
    replayed: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # job id -> why
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"matched": self.matched, "replayed": self.replayed, "refused": self.refused,
                "seconds": round(self.seconds, 2)}


def replay_many(ferry: Ferry, ids: list[str], *, restart: bool = False, force: bool = False,
                trigger: str = "cli", rate: float = DEFAULT_RATE,
                progress: Callable[[int, int], None] | None = None) -> BulkOutcome:
    """Replay each job, at most ``rate`` per second, so a thousand replays reach the workers (and
    the destination) as a steady stream rather than all at once. Refusals are collected."""
    outcome = BulkOutcome(matched=len(ids))
    started = time.monotonic()
    interval = 1.0 / rate if rate > 0 else 0.0
    for i, job_id in enumerate(ids):
        pause = started + i * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            replay(ferry, job_id, restart=restart, force=force, trigger=trigger)
            outcome.replayed += 1
        except (ReplayRefused, JobNotFound) as exc:
            outcome.refused[job_id] = str(exc)
        if progress is not None:
            progress(i + 1, len(ids))
    outcome.seconds = time.monotonic() - started
    return outcome


def replay_batch(ferry: Ferry, batch_id: str, *, trigger: str = "cli", rate: float = DEFAULT_RATE,
                 only: list[str] | None = None, progress: Callable[[int, int], None] | None = None) -> BulkOutcome:
    """Replay the batch's failed jobs (``only``: those of them), each from its failed step, at
    most ``rate`` per second. The batch is unsealed while they are enqueued and sealed again
    after, so it completes (and is told so, a new delivery) once, after the last of them has
    ended. Raises BatchNotFound."""
    ferry.store.get_batch(batch_id)
    ids = select(ferry, Filters(batch=batch_id, status=JobStatus.FAILED.value))
    if only is not None:
        wanted = set(only)
        ids = [i for i in ids if i in wanted]
    if not ids:
        return BulkOutcome()
    ferry.store.unseal_batch(batch_id)
    try:
        return replay_many(ferry, ids, trigger=trigger, rate=rate, progress=progress)
    finally:
        ferry.store.seal_batch(batch_id)


# ---- purge -------------------------------------------------------------------------------------
@dataclass
class PurgeOutcome:
    matched: int = 0
    deleted: int = 0
    skipped: int = 0  # queued or running: a worker may be writing to them

    def as_json(self) -> dict[str, int]:
        return asdict(self)


def delete(ferry: Ferry, job_id: str) -> None:
    """Forget one job. Raises JobNotFound, or ActiveJob while it is queued, scheduled or running."""
    record = ferry.store.get(job_id)
    if record.status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING):
        raise ActiveJob(f"job {job_id} is {record.status.value}; it can be deleted once it ends")
    ferry.store.delete(job_id)


def purge(ferry: Ferry, filters: Filters, *, ids: list[str] | None = None) -> PurgeOutcome:
    """Delete the matching jobs that have ended (queued and running ones are skipped)."""
    chosen = ids if ids is not None else select(ferry, filters)
    outcome = PurgeOutcome(matched=len(chosen))
    for job_id in chosen:
        try:
            delete(ferry, job_id)
            outcome.deleted += 1
        except ActiveJob:
            outcome.skipped += 1
        except JobNotFound:
            pass
    return outcome
