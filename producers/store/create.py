"""Storing new jobs (``Ferry.submit``, ``Ferry.submit_many``): ``lua/create.lua`` per chunk."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import redis

from producers import keys
from producers.errors import BatchClosed, IdempotencyConflict, Problem
from producers.records import FileInfo, JobRecord, utcnow
from producers.store import codec
from producers.store.core import StoreCore
from producers.store.types import Created, MessageFor, NewJob

# Scores are ms x 1000 + the job.queued event's stream sequence % 1000: past 1000 entries in one
# millisecond two could meet. A script of 500 jobs keeps that far off even on a Redis whose
# scripts see one frozen clock (7.0's XADD reads the time anew: its ids spread).
MAX_CHUNK = 500
BATCH_REFUSAL = "BATCH "  # how create.lua's error for a sealed or missing batch begins


def check_same_job(found: JobRecord, job: NewJob) -> None:
    """A repeated idempotency key must name the same job: same kind, connection, parameters and
    file reference (path or URL)."""
    differs = [name for name, old, new in (
        ("kind", found.kind, job.kind),
        ("connection", found.connection, job.connection),
        ("params", found.params, job.params),
        ("file", _file_ref(found.file), _file_ref(job.file)),
    ) if old != new]
    if differs:
        raise IdempotencyConflict([Problem("idempotency_key", (
            f"{job.idempotency_key!r} was used for job {found.id} with a different {', '.join(differs)}; "
            "use a new key for a different job"))])


def _file_ref(file: FileInfo | None) -> str | None:
    return (file.path or file.uri) if file else None


def _same_or_conflict(old: JobRecord, job: NewJob) -> Created | IdempotencyConflict:
    assert job.idempotency_key is not None
    try:
        check_same_job(old, job)
    except IdempotencyConflict as exc:
        return exc
    return old, False


def _leaders(jobs: Sequence[NewJob], pending: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """The jobs of ``pending`` to send (each idempotency key's first use) and the followers:
    (job, the job sent with its key)."""
    first: dict[str, int] = {}
    followers: list[tuple[int, int]] = []
    sent = []
    for i in pending:
        key = jobs[i].idempotency_key
        if key is not None and key in first:
            followers.append((i, first[key]))
        else:
            if key is not None:
                first[key] = i
            sent.append(i)
    return sent, followers


class Creation(StoreCore):
    def create_many(self, jobs: Sequence[NewJob], *, message: MessageFor | None = None,
                    chunk_size: int = MAX_CHUNK, batch: str | None = None,
                    held: set[str] | None = None) -> list[Created | IdempotencyConflict]:
        """Store new queued jobs: one Lua script per ``chunk_size`` jobs writes their records,
        indexes, idempotency keys, events and, with ``message``, each new job's Celery message
        (so a job and its message are stored together or not at all). One result per job, in
        order: the record and whether it is new, or the conflict for a key reused for a
        different job (also within ``jobs``). Of N identical requests from concurrent
        producers, exactly one creates the job and the others read it back. ``batch``: the open
        batch every job joins (each job's ``batch`` names it too); a job found by its key stays in
        its first batch, and this one counts it as ``existing``. ``held`` collects the ids of the
        jobs written with no message: they wait in their connection's ready sets (``NewJob.window``)."""
        chunk_size = max(1, min(chunk_size, MAX_CHUNK))
        results: list[Created | IdempotencyConflict] = []
        for start in range(0, len(jobs), chunk_size):
            results += self._create_chunk(jobs[start:start + chunk_size], message, batch, held)
        if batch is not None:
            self._count_existing(batch, sum(1 for r in results if isinstance(r, tuple) and not r[1]))
        return results

    def _create_chunk(self, jobs: Sequence[NewJob], message: MessageFor | None,
                      batch: str | None, held: set[str] | None) -> list[Created | IdempotencyConflict]:
        """One call of the script for the chunk's jobs whose idempotency key is their first use
        in the chunk; a later job with a key used earlier in the chunk takes the outcome of the
        job behind that key (the same job: returned; another: refused). A job whose key's
        stored job vanished between the script and the read is tried again."""
        results: dict[int, Created | IdempotencyConflict] = {}
        pending = list(range(len(jobs)))
        while pending:
            sent, followers = _leaders(jobs, pending)
            created, clashes = self._run_create([jobs[i] for i in sent], message, batch, held)
            behind: dict[int, JobRecord] = {}  # sent job -> the record its key names
            for n, i in enumerate(sent):
                if n in created:
                    results[i] = (created[n], True)
                    behind[i] = created[n]
            found = {r.id: r for r in self._records(list(set(clashes.values())))} if clashes else {}
            pending = []
            for n, old_id in clashes.items():
                i = sent[n]
                old = found.get(old_id)
                if old is None:
                    pending.append(i)  # expired or purged meanwhile: the key is free again
                    continue
                behind[i] = old
                results[i] = _same_or_conflict(old, jobs[i])
            for i, leader in followers:
                if leader in pending:
                    pending.append(i)
                else:
                    results[i] = _same_or_conflict(behind[leader], jobs[i])
            pending.sort()
        return [results[i] for i in range(len(jobs))]

    def _run_create(self, jobs: Sequence[NewJob], message: MessageFor | None, batch: str | None,
                    held: set[str] | None = None) -> tuple[dict[int, JobRecord], dict[int, str]]:
        """One call of the script: the records of the jobs written and, for the others, the id
        of the stored job their idempotency key names (both by position in ``jobs``)."""
        now = utcnow()
        ids = [uuid.uuid4().hex for _ in jobs]
        kinds, conns = {j.kind for j in jobs}, {j.connection for j in jobs}
        kind_names = keys.index_names("kind") if self._names.needed("kind", kinds) else ""
        conn_names = keys.index_names("conn") if self._names.needed("conn", conns) else ""
        messages: list[tuple[str, str]] = [message(job_id, job) if message is not None else ("", "")
                                           for job, job_id in zip(jobs, ids, strict=True)]
        try:
            clashes = self._scripts.create(jobs, ids, messages, now=now, idempotency_seconds=self.idempotency_seconds,
                                           events_max=self.events_max_length, kind_names=kind_names,
                                           conn_names=conn_names, batch=batch)
        except redis.ResponseError as exc:
            if str(exc).startswith(BATCH_REFUSAL):
                raise BatchClosed(f"{batch}: {str(exc).removeprefix(BATCH_REFUSAL)}") from None
            raise
        if kind_names:
            self._names.written("kind", kinds)
        if conn_names:
            self._names.written("conn", conns)
        if held is not None:  # written, waiting in the ready sets with no message yet
            held.update(ids[n] for n, found in clashes.items() if not found)
        clashes = {n: found for n, found in clashes.items() if found}
        created = {n: codec.new_record(job, ids[n], now) for n, job in enumerate(jobs) if n not in clashes}
        return created, clashes

    def _count_existing(self, batch_id: str, found: int) -> None:
        """Jobs a batch's submission found by their idempotency key (not counted in it)."""
        if found:
            self.redis.hincrby(keys.batch(batch_id), codec.BATCH_EXISTING, found)
