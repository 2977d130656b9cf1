"""Storing new jobs (``Ferry.submit``, ``Ferry.submit_many``): ``lua/create.lua`` per chunk."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence

import redis

from producers import keys
from producers.errors import BatchClosed, FerryError, IdempotencyConflict, Problem
from producers.records import FileInfo, JobRecord, utcnow
from producers.store import codec
from producers.store.core import StoreCore
from producers.store.loader import Pipelined
from producers.store.scripts import create_clashes
from producers.store.types import Created, MessageFor, NewJob

# Scores are ms x 1000 + the job.queued event's stream sequence % 1000: past 1000 entries in one
# millisecond two could meet. A script of 500 jobs keeps that far off even on a Redis whose
# scripts see one frozen clock (7.0's XADD reads the time anew: its ids spread).
MAX_CHUNK = 500
MAX_TRIES = 5  # rounds of a chunk whose keys' jobs vanish meanwhile (expired, purged, archived)
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


# What a chunk of create_chunks came to: each job's result, or the error that kept it from being stored.
ChunkOutcome = list[Created | IdempotencyConflict] | Exception
# A call of create.lua, run or sent: reading it gives the records of the jobs written and, for
# the others, the id of the job their idempotency key names (by position).
_Reply = Callable[[], tuple[dict[int, JobRecord], dict[int, str]]]


@contextlib.contextmanager
def _refusal(batch: str | None) -> Iterator[None]:
    """create.lua's refusal of a sealed or missing batch, as ``BatchClosed``."""
    try:
        yield
    except redis.ResponseError as exc:
        if str(exc).startswith(BATCH_REFUSAL):
            raise BatchClosed(f"{batch}: {str(exc).removeprefix(BATCH_REFUSAL)}") from None
        raise


def new_ids(count: int) -> list[str]:
    """``count`` random job ids, each a uuid4's hex as ``uuid.uuid4().hex`` makes it, from one
    read of the OS's random source (a read per id cost more than the rest of the id)."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # the RFC 4122 variant
    text = raw.hex()
    return [text[i:i + 32] for i in range(0, 32 * count, 32)]


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
        its first batch, and this one counts it as ``existing``. The first chunk that fails raises
        (``create_chunks`` goes on past it). ``held`` collects the ids of the jobs written with no
        message: they wait in their connection's ready sets (``NewJob.window``)."""
        chunk_size = max(1, min(chunk_size, MAX_CHUNK))
        results: list[Created | IdempotencyConflict] = []
        chunks = [jobs[start:start + chunk_size] for start in range(0, len(jobs), chunk_size)]
        with contextlib.closing(self.create_chunks(chunks, message=message, batch=batch, held=held)) as outcomes:
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
                results += outcome
        return results

    def create_chunks(self, chunks: Iterable[Sequence[NewJob]], *, message: MessageFor | None = None,
                      batch: str | None = None, held: set[str] | None = None) -> Generator[ChunkOutcome, None, None]:
        """``create_many`` a chunk (at most ``MAX_CHUNK`` jobs) at a time: one outcome per chunk,
        in order, its results or the error that kept it from being stored (the chunks after it
        are tried all the same). Pipelined: a chunk's call is sent before the reply to the
        chunk before it is read, so Redis stores one chunk while this prepares the next and
        makes the records of the one before (one connection; the calls run in order)."""
        with self._scripts.pipelined() as line:
            previous: tuple[Sequence[NewJob], _Reply] | Exception | None = None
            for chunk in chunks:
                current: tuple[Sequence[NewJob], _Reply] | Exception
                try:
                    leaders, _ = _leaders(chunk, list(range(len(chunk))))
                    current = chunk, self._run_create([chunk[i] for i in leaders], message, batch, line, held)
                except Exception as exc:  # the chunk's outcome: the caller sorts them
                    current = exc
                if previous is not None:
                    yield self._finish_chunk(previous, message, batch, held)
                previous = current
            if previous is not None:
                yield self._finish_chunk(previous, message, batch, held)

    def _finish_chunk(self, sent: tuple[Sequence[NewJob], _Reply] | Exception, message: MessageFor | None,
                      batch: str | None, held: set[str] | None) -> list[Created | IdempotencyConflict] | Exception:
        if isinstance(sent, Exception):
            return sent
        chunk, reply = sent
        try:
            results = self._create_chunk(chunk, message, batch, reply, held)
            if batch is not None:
                self._count_existing(batch, sum(1 for r in results if isinstance(r, tuple) and not r[1]))
        except Exception as exc:  # as in create_chunks
            return exc
        return results

    def _create_chunk(self, jobs: Sequence[NewJob], message: MessageFor | None,
                      batch: str | None, first: _Reply | None = None,
                      held: set[str] | None = None) -> list[Created | IdempotencyConflict]:
        """One call of the script for the chunk's jobs whose idempotency key is their first use
        in the chunk (``first``: that call, sent already); a later job with a key used earlier
        in the chunk takes the outcome of the job behind that key (the same job: returned;
        another: refused). A job whose key's stored job vanished between the script and the
        read is tried again."""
        results: dict[int, Created | IdempotencyConflict] = {}
        pending = list(range(len(jobs)))
        for tries in itertools.count():
            if not pending:
                break
            if tries == MAX_TRIES:  # the key's job is archived and this process has no archive
                raise FerryError("a job's idempotency key names a job in the archive, which this process "
                                 "cannot read (install ferry[archive], and set [archive] url)")
            sent, followers = _leaders(jobs, pending)
            reply, first = first or self._run_create([jobs[i] for i in sent], message, batch, None, held), None
            created, clashes = reply()
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
                    line: Pipelined | None = None, held: set[str] | None = None) -> _Reply:
        """One call of the script, run now or sent on ``line``; the function returned reads
        its outcome: the records of the jobs written and, for the others, the id of the stored
        job their idempotency key names (both by position in ``jobs``)."""
        now = utcnow()
        ids = new_ids(len(jobs))
        kinds, conns = {j.kind for j in jobs}, {j.connection for j in jobs}
        kind_names = keys.index_names("kind") if self._names.needed("kind", kinds) else ""
        conn_names = keys.index_names("conn") if self._names.needed("conn", conns) else ""
        messages: list[tuple[str, str]] = [message(job_id, job) if message is not None else ("", "")
                                           for job, job_id in zip(jobs, ids, strict=True)]
        with _refusal(batch):
            clashes = self._scripts.create(jobs, ids, messages, now=now, idempotency_seconds=self.idempotency_seconds,
                                           events_max=self.events_max_length, kind_names=kind_names,
                                           conn_names=conn_names, batch=batch, line=line)

        def outcome() -> tuple[dict[int, JobRecord], dict[int, str]]:
            found = clashes
            if line is not None:
                with _refusal(batch):
                    found = create_clashes(line.receive())
            if kind_names:
                self._names.written("kind", kinds)
            if conn_names:
                self._names.written("conn", conns)
            if held is not None:  # written, waiting in the ready sets with no message yet
                held.update(ids[n] for n, old in found.items() if not old)
            found = {n: old for n, old in found.items() if old}
            return {n: codec.new_record(job, ids[n], now) for n, job in enumerate(jobs) if n not in found}, found

        return outcome

    def _count_existing(self, batch_id: str, found: int) -> None:
        """Jobs a batch's submission found by their idempotency key (not counted in it)."""
        if found:
            self.redis.hincrby(keys.batch(batch_id), codec.BATCH_EXISTING, found)
