"""Replay and purge: what an operator does with the jobs the store kept.

A failed job replays from its failed step, reusing what earlier steps produced, unless an output a
later step needs has expired: each ``Step.needs_secret_of`` in ``producers.kinds`` names the step
whose short-lived secret (the media JWT) it uses, and when that secret is gone the replay starts
at the producing step instead, saying why in the run's note. Nothing here knows a kind by name.

Selecting jobs pages over the store's sorted-set indexes (status, kind, connection; the score is
the creation time, so a time range is a score range) and reads only the ``error`` field of each
candidate when the filter asks for a failed step or an HTTP status. Nothing loads every job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis

from producers import keys, queue
from producers.client import Ferry
from producers.errors import JobNotFound, ReplayRefused
from producers.kinds import KINDS, Kind
from producers.records import JobRecord, JobStatus, StepError, StepStatus

DEFAULT_RATE = 20.0  # jobs per second a bulk replay enqueues: gentle on the destination
CLAIM_SECONDS = 30  # two operators pressing replay at once: only one enqueues a chain
BATCH = 500
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# ---- filters -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    """Which jobs: every field that is set must match. Times bound ``created_at`` (until: before)."""

    status: str | None = None
    kind: str | None = None
    connection: str | None = None
    error_step: str | None = None
    http_status: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Filters:
        """From CLI options, a query string or a JSON body; blank values mean "any".
        Raises ValueError naming the bad field."""
        def text(name: str) -> str | None:
            value = raw.get(name)
            return str(value).strip() or None if value is not None else None

        status = text("status")
        if status is not None and status not in {s.value for s in JobStatus}:
            raise ValueError(f"status: unknown status {status!r}")
        kind = text("kind")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind: unknown kind {kind!r}")
        http = text("http_status")
        if http is not None and not http.isdigit():
            raise ValueError(f"http_status: not a number: {http!r}")
        return cls(status=status, kind=kind, connection=text("connection"),
                   error_step=text("error_step"), http_status=int(http) if http else None,
                   since=parse_time(text("since"), "since"), until=parse_time(text("until"), "until"))

    @property
    def reads_records(self) -> bool:
        """True when matching needs each candidate's error, not just the indexes."""
        return self.error_step is not None or self.http_status is not None

    def as_query(self) -> dict[str, str]:
        """The set fields as strings (query string, JSON answer)."""
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            out[name] = _iso(value) if isinstance(value, datetime) else str(value)
        return out

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.as_query().items()) or "all jobs"


def parse_time(value: str | None, name: str = "time") -> datetime | None:
    """ISO-8601 (naive means UTC) or an age like ``90m``, ``2h``, ``7d`` (that long ago)."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip().lower())
    if relative:
        seconds = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not a time (ISO-8601 or an age like 2h): {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _score(at: datetime) -> int:
    # The store scores a job by creation time in ms x 1000 (+ a counter below 1000).
    return int(at.timestamp() * 1000) * 1000


# ---- selection ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """One page of matching ids (newest first) and where the next page starts."""

    ids: list[str]
    next_cursor: str | None
    scanned: int


def _indexes(filters: Filters) -> list[str]:
    chosen = [k for k in (
        keys.index_status(filters.status) if filters.status else None,
        keys.index_kind(filters.kind) if filters.kind else None,
        keys.index_connection(filters.connection) if filters.connection else None,
    ) if k]
    return chosen or [keys.index_all()]


def _index(client: redis.Redis, filters: Filters) -> str:
    """One sorted set holding exactly the index-matching jobs (for counting)."""
    chosen = _indexes(filters)
    if len(chosen) == 1:
        return chosen[0]
    tmp = f"{keys.PREFIX}:tmp:" + "|".join(chosen)
    with client.pipeline() as pipe:
        pipe.zinterstore(tmp, chosen, aggregate="MAX")
        pipe.expire(tmp, 10)
        pipe.execute()
    return tmp


def _error_matches(raw: str | None, filters: Filters) -> bool:
    if raw is None:
        return False
    error = StepError.model_validate_json(raw)
    if filters.error_step is not None and error.step != filters.error_step:
        return False
    return filters.http_status is None or error.status == filters.http_status


def select_page(client: redis.Redis, filters: Filters, *, limit: int = 50,
                cursor: str | None = None, scan_budget: int = 5000) -> Selection:
    """Up to ``limit`` matching ids, newest first, starting below ``cursor`` (a score).

    Walks the smallest matching index by score and checks the other indexes with ZMSCORE (and,
    for a failed step or HTTP status, each candidate's ``error`` field), a batch at a time, so
    a page costs the same at 100 000 jobs as at 100. With such narrowing filters at most
    ``scan_budget`` entries are examined per call; a short page with a cursor then means "keep
    going", not "no more"."""
    if cursor is not None and not cursor.isdigit():
        raise ValueError(f"cursor: not a cursor from an earlier page: {cursor!r}")
    indexes = _indexes(filters)
    if len(indexes) > 1:
        with client.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.zcard(index)
            sizes = pipe.execute()
        indexes = [i for _, i in sorted(zip(sizes, indexes, strict=True))]
    base, others = indexes[0], indexes[1:]
    narrowing = bool(others) or filters.reads_records
    top = f"({cursor}" if cursor else (f"({_score(filters.until)}" if filters.until else "+inf")
    bottom = str(_score(filters.since)) if filters.since else "-inf"
    found: list[str] = []
    scanned = 0
    last: float | None = None
    while len(found) < limit and scanned < scan_budget:
        want = (min(max(4 * limit, 100), BATCH, scan_budget - scanned) if narrowing
                else limit - len(found))
        batch = cast(list[tuple[str, float]], client.zrevrangebyscore(
            base, top, bottom, start=0, num=max(want, 1), withscores=True))
        if not batch:
            return Selection(found, None, scanned)
        scanned += len(batch)
        keep = _narrow(client, [job_id for job_id, _ in batch], others, filters)
        for (job_id, score), ok in zip(batch, keep, strict=True):
            last = score
            if ok:
                found.append(job_id)
                if len(found) == limit:
                    break
        top = f"({last:.0f}"
    more = client.zrevrangebyscore(base, top, bottom, start=0, num=1)
    return Selection(found, f"{last:.0f}" if more and last is not None else None, scanned)


def _narrow(client: redis.Redis, ids: list[str], others: list[str],
            filters: Filters) -> list[bool]:
    """Which of ``ids`` are also in every index of ``others`` and match the error filters."""
    if not others and not filters.reads_records:
        return [True] * len(ids)
    with client.pipeline(transaction=False) as pipe:
        for index in others:
            pipe.zmscore(index, ids)
        if filters.reads_records:
            for job_id in ids:
                pipe.hget(keys.job(job_id), "error")
        replies = pipe.execute()
    keep = [True] * len(ids)
    for scores in replies[: len(others)]:
        keep = [k and s is not None for k, s in zip(keep, scores, strict=True)]
    if filters.reads_records:
        errors = replies[len(others):]
        keep = [k and _error_matches(e, filters) for k, e in zip(keep, errors, strict=True)]
    return keep


def select(ferry: Ferry, filters: Filters, *, limit: int | None = None) -> list[str]:
    """Every matching job id (newest first), or the first ``limit``."""
    return list(_iter_ids(ferry.redis, filters, limit))


def _iter_ids(client: redis.Redis, filters: Filters, limit: int | None) -> Iterator[str]:
    cursor: str | None = None
    taken = 0
    while True:
        want = BATCH if limit is None else min(BATCH, limit - taken)
        page = select_page(client, filters, limit=want, cursor=cursor, scan_budget=50 * BATCH)
        yield from page.ids
        taken += len(page.ids)
        if page.next_cursor is None or (limit is not None and taken >= limit):
            return
        cursor = page.next_cursor


def count(ferry: Ferry, filters: Filters) -> int:
    """How many jobs match (the dry run). Index-only filters are counted inside Redis."""
    if filters.reads_records:
        return sum(1 for _ in _iter_ids(ferry.redis, filters, None))
    index = _index(ferry.redis, filters)
    if filters.since is None and filters.until is None:
        return int(ferry.redis.zcard(index))
    top = f"({_score(filters.until)}" if filters.until else "+inf"
    bottom = str(_score(filters.since)) if filters.since else "-inf"
    return int(ferry.redis.zcount(index, bottom, top))


# ---- one replay --------------------------------------------------------------------------------
def plan(ferry: Ferry, record: JobRecord, kind: Kind, *, restart: bool) -> tuple[str, str | None]:
    """The step to start from and, when it is not the obvious one, why."""
    names = list(kind.step_names)
    if restart:
        return names[0], "restart requested: every step runs again"
    if record.status == JobStatus.SUCCEEDED:
        return names[0], "forced replay of a succeeded job: every step runs again"
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
           trigger: str = "cli") -> JobRecord:
    """Run a failed job again from its failed step (or the first, with ``restart``), as a new
    run in the same record. Raises JobNotFound, or ReplayRefused for a queued/running job, a
    succeeded one without ``force``, or a kind no longer declared."""
    record = ferry.store.get(job_id)
    _check_replayable(record, force)
    kind = KINDS.get(record.kind)
    if kind is None:
        raise ReplayRefused(f"job {job_id} is of kind {record.kind!r}, which is no longer declared")
    claim = f"{keys.PREFIX}:replay-claim:{job_id}"
    if not ferry.redis.set(claim, trigger, nx=True, ex=CLAIM_SECONDS):
        raise ReplayRefused(f"job {job_id} is being replayed right now")
    try:
        record = ferry.store.get(job_id)  # re-read under the claim: it may have moved meanwhile
        _check_replayable(record, force)
        from_step, note = plan(ferry, record, kind, restart=restart)
        record = ferry.store.begin_run(job_id, trigger=trigger, from_step=from_step, note=note)
        try:
            queue.enqueue(ferry.celery, job_id, kind, from_step)
        except Exception as exc:  # broker down: the job stays failed, ready for the next replay
            ferry.store.mark_failed(job_id, from_step, StepError(
                step=from_step, message=f"could not enqueue: {exc}", retryable=True))
            raise
        return record
    finally:
        ferry.redis.delete(claim)


def _check_replayable(record: JobRecord, force: bool) -> None:
    if record.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        raise ReplayRefused(f"job {record.id} is {record.status.value}; wait for it to end")
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
            outcome.refused[job_id] = str(exc).strip("'\"")
        if progress is not None:
            progress(i + 1, len(ids))
    outcome.seconds = time.monotonic() - started
    return outcome


# ---- purge -------------------------------------------------------------------------------------
@dataclass
class PurgeOutcome:
    matched: int = 0
    deleted: int = 0
    skipped: int = 0  # queued or running: a worker may be writing to them

    def as_json(self) -> dict[str, int]:
        return asdict(self)


def delete(ferry: Ferry, job_id: str) -> None:
    """Forget one job. Raises JobNotFound, or ActiveJob while it is queued or running."""
    record = ferry.store.get(job_id)
    if record.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        raise ActiveJob(f"job {job_id} is {record.status.value}; it can be deleted once it ends")
    ferry.store.delete(job_id)


class ActiveJob(ValueError):
    """A queued or running job cannot be deleted: its worker would write to a deleted record."""


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
