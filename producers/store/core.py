"""What every part of the job store shares: its Redis client, its settings, its scripts, and
the reads and index moves its parts build on (a record by id, a transition's state)."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, cast

import redis

from producers import events, keys
from producers.errors import JobNotFound
from producers.records import JobRecord, JobStatus, utc_at
from producers.store import codec
from producers.store.history import HistoryArchive
from producers.store.scripts import StoreScripts
from producers.store.types import JobState

BATCH_OWNER = "batch:"  # a batch's deliveries sit in the due set as "batch:<id> <delivery id>"


def batch_due_member(batch_id: str, delivery_id: str) -> str:
    return f"{BATCH_OWNER}{batch_id} {delivery_id}"


# How long the process trusts that the kind and connection names it added are still in their
# sets (``keys.index_names``): a flushed Redis gets them again within this.
NAMES_FRESH_SECONDS = 60.0


class IndexNames:
    """The kind and connection names this process has added to ``keys.index_names`` lately,
    so a submit writes them once a minute instead of on every call."""

    def __init__(self) -> None:
        self.added: dict[tuple[str, str], float] = {}

    def needed(self, which: str, names: Iterable[str]) -> bool:
        now = time.monotonic()
        return any(now - self.added.get((which, n), -NAMES_FRESH_SECONDS) >= NAMES_FRESH_SECONDS
                   for n in names)

    def written(self, which: str, names: Iterable[str]) -> None:
        now = time.monotonic()
        self.added.update(((which, n), now) for n in names)


class StoreCore:
    """The job store's shared state; ``producers.store.JobStore`` adds its parts' methods."""

    # The archive of ended jobs, when there is one (``producers.archive``): reads span both.
    archive: HistoryArchive | None = None

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        retention_seconds: int = 7 * 24 * 3600,
        idempotency_seconds: int = 24 * 3600,
        events_max_length: int = events.DEFAULT_MAX_LENGTH,
    ) -> None:
        self.redis = redis_client
        self.retention_seconds = retention_seconds
        self.idempotency_seconds = idempotency_seconds
        # XADD MAXLEN counts every entry; up to PROGRESS_KEPT of them are progress events.
        self.events_max_length = events_max_length + events.PROGRESS_KEPT
        self._names = IndexNames()

    def client(self) -> redis.Redis:
        """The store's Redis client, for a part that keeps its own keys on the same server
        (the worker's rate limiter)."""
        return self.redis

    @functools.cached_property
    def _scripts(self) -> StoreScripts:
        return StoreScripts(self.redis)

    def find(self, job_id: str) -> JobRecord | None:
        """The job from Redis, else from the archive (None: neither has it)."""
        raw = cast(dict[str, str], self.redis.hgetall(keys.job(job_id)))
        if raw:
            return codec.decode(raw, job_id)
        found = self.archive.get_many([job_id]) if self.archive is not None else []
        return found[0] if found else None

    def find_hot(self, job_id: str) -> JobRecord | None:
        """The job as Redis holds it (None: not there, perhaps archived)."""
        raw = cast(dict[str, str], self.redis.hgetall(keys.job(job_id)))
        return codec.decode(raw, job_id) if raw else None

    def get(self, job_id: str) -> JobRecord:
        record = self.find(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def _records(self, ids: list[str]) -> list[JobRecord]:
        """The records of ``ids`` in one round trip; ids whose record expired leave the indexes."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            raws = pipe.execute()
        found: dict[str, JobRecord] = {}
        for job_id, raw in zip(ids, raws, strict=True):
            if raw:
                found[job_id] = codec.decode(raw, job_id)
            else:
                self._forget(job_id)
        missing = [i for i in ids if i not in found]
        if missing and self.archive is not None:
            found.update((r.id, r) for r in self.archive.get_many(missing))
        return [found[i] for i in ids if i in found]

    def _state(self, job_id: str, step: str | None = None) -> JobState:
        fields = [*codec.STATE_FIELDS, *([codec.step_field(step)] if step else [])]
        values = cast(list[str | None], self.redis.hmget(keys.job(job_id), fields))
        meta = json.loads(values[3] or "{}")
        if values[0] is None or (step and step not in meta.get("steps", ())):
            raise JobNotFound(job_id, f"step {step}" if step else None)
        return JobState(job_id=job_id, status=JobStatus(values[0]), score=self._score(job_id, values[1]),
                        runs=codec.runs({codec.RUNS: values[2]}, meta), meta=meta,
                        step_record=codec.step(step, values[4]) if step else None)

    def _score(self, job_id: str, stored: str | None) -> float:
        # Records written before the score was a field of the hash find it in the index.
        score = float(stored) if stored else self.redis.zscore(keys.index_all(), job_id)
        return score or self._next_score()

    def _next_score(self) -> float:
        # Milliseconds x 1000 plus a rolling counter: unique per job, ordered by creation, and
        # exact in a double (< 2**53), so a score is a stable paging cursor.
        seq = int(self.redis.incr(keys.sequence())) % 1000
        return float(int(time.time() * 1000) * 1000 + seq)

    def _batch_context(self, batch_id: str, *, to: str = "", size: int = 0) -> str:
        """What ``lua/lib/batch.lua`` needs to move (and maybe complete) batch ``batch_id``."""
        now = time.time()
        return json.dumps({
            "key": keys.batch(batch_id), "members": keys.batch_jobs(batch_id), "id": batch_id,
            "now": utc_at(now), "now_s": repr(now), "events": keys.events(), "events_max": self.events_max_length,
            "due": keys.notify_due(), "member": batch_due_member(batch_id, ""), "delivery": uuid.uuid4().hex,
            "retention": self.retention_seconds, "to": to, "size": size}, separators=(",", ":"))

    def _job_batch_context(self, state: JobState, status: JobStatus) -> str:
        """The batch context of a job moving to ``status`` ('' for a job of no batch)."""
        batch_id = codec.batch_of(state.meta)
        return self._batch_context(batch_id, to=status.value, size=codec.file_size(state.meta)) if batch_id else ""

    def _set_status(self, pipe: Any, state: JobState, status: JobStatus) -> None:
        job_id = state.job_id
        context = self._job_batch_context(state, status)
        if context:
            self._scripts.batch_move(job_id, context, pipe)
        pipe.hset(keys.job(job_id), codec.STATUS, status.value)
        for s in JobStatus:
            if s is not status:
                pipe.zrem(keys.index_status(s.value), job_id)
        pipe.zadd(keys.index_status(status.value), {job_id: state.score})
        for command in codec.count_moves(state.meta, state.status.value, status.value):
            pipe.execute_command(*command)  # the counts move with the index entry (producers.store.counts)
        if status is not JobStatus.SCHEDULED:
            pipe.zrem(keys.scheduled(), job_id)  # a cancelled scheduled job is never released

    def _forget(self, job_id: str, batch_context: str = "") -> None:
        """Take a job that is gone out of every index and the counts (``lua/forget.lua``: its
        record may have expired, so where it stood is read from the indexes it leaves), and out
        of its batch's counts when ``batch_context`` (``_batch_context`` with its file's size)
        names it: a purge knows the batch; an expired record does not, and its batch keeps it."""
        self._scripts.forget(job_id, [s.value for s in JobStatus], batch_context)

    def _event(self, pipe: Any, type_: str, job_id: str, meta: Mapping[str, Any], status: JobStatus,
               **extra: Any) -> None:
        """Append a state change to the event stream, in the transition's own MULTI."""
        events.append(pipe, events.new(type_, job=job_id, kind=str(meta.get("kind", "")),
                                       connection=str(meta.get("connection", "")), status=status.value,
                                       tenant=codec.tenant_of(meta), **extra), self.events_max_length)
