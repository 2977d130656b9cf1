"""Reading jobs (by id, by filters, in counts), replaying and purging them.

Status by id is one HGETALL; lists page through the sorted-set indexes by score
(``producers.store.selection``) without scanning keys. Succeeded jobs expire after the
retention; failed ones stay until replayed or purged. Index entries of expired jobs are dropped
lazily when a listing meets them, and by ``sweep``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Iterator
from typing import Any, cast

from producers import events, keys
from producers.errors import JobNotFound
from producers.records import JobRecord, JobStatus, RunRecord, StepRecord, StepStatus, utcnow
from producers.store import codec, spanning
from producers.store.counts import Counts
from producers.store.selection import BATCH, Filters, Selection, count_indexed, select_page
from producers.store.types import JobRow, Page, dump


class JobReads(Counts):
    def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        connection: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        batch: str | None = None,
        priority: str | None = None,
        tenant: str | None = None,
    ) -> Page:
        """Newest first, ``limit`` per page; ``cursor`` is the ``next_cursor`` of the page before.
        A record that expired since the index named it is left out (and leaves the index)."""
        chosen = self.select(Filters(status=status, kind=kind, connection=connection, batch=batch,
                                     priority=priority, tenant=tenant), limit=limit, cursor=cursor)
        return Page(self._records(chosen.ids), chosen.next_cursor)

    def select(self, filters: Filters, *, limit: int | None = None,
               cursor: str | None = None) -> Selection:
        """The ids matching ``filters``, newest first, from ``cursor`` on: ``limit`` of them (None:
        every one), and the cursor of the next page; in Redis and the archive."""
        hot = self.select_hot(filters, limit=limit, cursor=cursor)
        if self.archive is None:
            return hot
        return spanning.merge(self.redis, self.archive, filters, hot, limit, cursor)

    def select_hot(self, filters: Filters, *, limit: int | None = None,
                   cursor: str | None = None) -> Selection:
        """``select`` in Redis alone. The one loop over ``select_page``, which may stop short of
        a page when narrowing filters use up its scan budget."""
        ids: builtins.list[str] = []
        scanned = 0
        while limit is None or len(ids) < limit:
            want = BATCH if limit is None else min(BATCH, limit - len(ids))
            page = select_page(self.redis, filters, limit=want, cursor=cursor, scan_budget=50 * BATCH)
            ids += page.ids
            scanned += page.scanned
            cursor = page.next_cursor
            if cursor is None:
                break
        return Selection(ids, cursor, scanned)

    def records(self, ids: builtins.list[str]) -> builtins.list[JobRecord]:
        """The records of ``ids`` in their order, from Redis or the archive (the missing left out)."""
        return self._records(ids)

    def count(self, filters: Filters) -> int:
        """How many jobs match: from the counts for status, kind and connection alone (one
        read, whatever the store's size), inside Redis when the indexes answer, else by
        walking them."""
        if filters.reads_records:
            return len(self.select(filters).ids)
        if filters.since is None and filters.until is None and filters.file_name is None:
            return self.count_where(status=filters.status, kind=filters.kind, connection=filters.connection)
        cold = self.archive.count(filters) if self.archive is not None else 0
        return count_indexed(self.redis, filters) + cold

    def counts(self) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            for s in JobStatus:
                pipe.zcard(keys.index_status(s.value))
            values = pipe.execute()
        found = {s.value: int(v) for s, v in zip(JobStatus, values, strict=True)}
        for (status, _, _), n in self._archived_counts().items():
            found[status] = found.get(status, 0) + n
        return found

    def iter_ids(self, *, status: str | None = None, kind: str | None = None,
                 connection: str | None = None) -> Iterator[str]:
        """Every job id matching the filters, newest first."""
        yield from self.select(Filters(status=status, kind=kind, connection=connection)).ids

    def rows(self, ids: builtins.list[str]) -> builtins.list[JobRow]:
        """What a job list shows of each of ``ids``, in one round trip and without decoding the
        steps; ids whose record expired are left out."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), builtins.list(codec.ROW_FIELDS))
            replies: builtins.list[builtins.list[str | None]] = pipe.execute()
        hot = {job_id: codec.row(job_id, values) for job_id, values in zip(ids, replies, strict=True) if values[0]}
        return spanning.fill(ids, hot, self.archive)

    def statuses(self, ids: builtins.list[str]) -> builtins.list[str | None]:
        """Each job's status (None: no such job any more), in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(keys.job(job_id), codec.STATUS)
            return [None if v is None else str(v) for v in pipe.execute()]

    def connection_of(self, job_id: str) -> str | None:
        """The connection of a job (None: no such job), in one small read."""
        return codec.connection_of(cast(str | None, self.redis.hget(keys.job(job_id), codec.META)))

    def index_sizes(self, kinds: Iterable[str],
                    connections: Iterable[str]) -> tuple[dict[str, int], dict[str, int]]:
        """How many jobs each kind and each connection has: ({kind: n}, {connection: n})."""
        kinds, connections = builtins.list(kinds), builtins.list(connections)
        with self.redis.pipeline(transaction=False) as pipe:
            for kind in kinds:
                pipe.zcard(keys.index_kind(kind))
            for name in connections:
                pipe.zcard(keys.index_connection(name))
            values = [int(v) for v in pipe.execute()]
        by_kind = dict(zip(kinds, values[: len(kinds)], strict=True))
        by_connection = dict(zip(connections, values[len(kinds):], strict=True))
        for (_, kind, connection), n in self._archived_counts().items():
            if kind in by_kind:
                by_kind[kind] += n
            if connection in by_connection:
                by_connection[connection] += n
        return by_kind, by_connection

    def lookup(self, text: str) -> builtins.list[str]:
        """The job ``text`` names exactly: by its id, or by its idempotency key (the dashboard's
        search; a file name is matched by ``Filters.file_name``)."""
        text = text.strip()
        if not text:
            return []
        if self.redis.exists(keys.job(text)):
            return [text]
        found = self.redis.get(keys.idempotency(text))
        if found and self.redis.exists(keys.job(str(found))):
            return [str(found)]
        if self.archive is None:
            return []
        for job_id in (text, str(found or ""), self.archive.by_idempotency_key(text)):
            if job_id and self.archive.get_many([job_id]):
                return [job_id]
        return []

    def throughput(self, minutes: int = 60) -> builtins.list[tuple[int, int]]:
        """Jobs finished per minute over the last ``minutes`` (oldest first): (epoch minute, n)."""
        now = int(time.time() // 60)
        span = builtins.list(range(now - minutes + 1, now + 1))
        values = self.redis.mget([keys.throughput(m) for m in span])
        return [(m, int(v or 0)) for m, v in zip(span, values, strict=True)]

    # ---- replay and purge ----------------------------------------------------------------
    def begin_run(
        self, job_id: str, *, trigger: str, from_step: str, note: str | None = None,
        not_before: float | None = None, trace: str | None = None,
    ) -> JobRecord:
        """Start another pass: steps before ``from_step`` keep their output (marked reused), the
        rest are reset; the history of earlier runs stays in ``runs`` and each step's attempts.
        With ``not_before`` (epoch s) the job is scheduled: the releaser queues it then. The job
        is in Redis (``bring_back`` an archived one first)."""
        record = self.find_hot(job_id)
        if record is None:
            raise JobNotFound(job_id)
        names = [s.name for s in record.steps]
        start = names.index(from_step)
        runs = [*record.runs, RunRecord(number=len(record.runs) + 1, trigger=trigger,
                                        from_step=from_step, note=note, trace=trace)]
        fields: dict[Any, Any] = {codec.RUNS: dump([r.model_dump(exclude_none=True) for r in runs]),
                                  codec.UPDATED_AT: utcnow()}
        for i, s in enumerate(record.steps):
            if i < start:
                s.status = StepStatus.REUSED
            else:
                s = StepRecord(name=s.name, history=s.history)
            fields[codec.step_field(s.name)] = s.stored()
        status = JobStatus.QUEUED if not_before is None else JobStatus.SCHEDULED
        if not_before is not None:
            fields[codec.META] = codec.with_not_before(str(self.redis.hget(keys.job(job_id), codec.META)), not_before)
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.job(job_id), mapping=fields)
            pipe.hdel(keys.job(job_id), *codec.RUN_ENDING)
            self._set_status(pipe, self._state(job_id), status)
            if not_before is not None:
                pipe.zadd(keys.scheduled(), {job_id: int(not_before * 1000)})
            pipe.persist(keys.job(job_id))
            self._event(pipe, events.REPLAYED, job_id, record.model_dump(include={"kind", "connection"}),
                        status, step=from_step, run=len(runs))
            pipe.execute()
        return self.get(job_id)

    def delete(self, job_id: str) -> bool:
        """Purge a job: its record, its steps' secrets and memos, its index entries (and its
        archived copy); it leaves its batch's counts (``total`` and all: as if never submitted;
        the batch's ``purged`` counts it)."""
        archived = self.archive.delete([job_id]) if self.archive is not None else 0
        record = self.find_hot(job_id)
        if record is None:
            return archived > 0
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.job(job_id))
            for step in record.steps:
                pipe.delete(keys.job_secret(job_id, step.name), keys.step_memo(job_id, step.name))
            pipe.execute()
        size = record.file.size or 0 if record.file else 0
        self._forget(job_id, self._batch_context(record.batch, size=size) if record.batch else "")
        return True

    def sweep(self, batch: int = 1000) -> int:
        """Drop index entries of succeeded jobs whose record has expired. Returns how many."""
        ids = cast(builtins.list[str], self.redis.zrange(keys.index_status(JobStatus.SUCCEEDED.value), 0, batch - 1))
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(keys.job(job_id))
            alive = pipe.execute()
        gone = [j for j, a in zip(ids, alive, strict=True) if not a]
        for job_id in gone:
            self._forget(job_id)
        return len(gone)

    def sweep_if_due(self, every_seconds: int = 60) -> int:
        """``sweep`` at most once per ``every_seconds`` across every caller (dashboard viewers)."""
        if self.redis.set(keys.sweep_lock(), "1", nx=True, ex=every_seconds):
            return self.sweep()
        return 0
