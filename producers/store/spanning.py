"""Reads that span Redis and the archive of ended jobs (``HistoryArchive``), with no change for
the caller: one newest-first order by score (both keep the Redis indexes' score), one cursor.

A page takes up to ``limit`` from each side and keeps the newest ``limit`` of both: the union's
first ``limit`` are among them. A job in both for a moment (copied, not yet dropped; or brought
back by a replay) is shown once, from Redis.
"""

from __future__ import annotations

from typing import cast

import redis

from producers import keys
from producers.records import JobRecord
from producers.store.history import HistoryArchive
from producers.store.selection import Filters, Selection
from producers.store.types import JobRow


def merge(client: redis.Redis, archive: HistoryArchive, filters: Filters, hot: Selection,
          limit: int | None, cursor: str | None) -> Selection:
    """``hot`` (the Redis page) and the archive's page for the same filters, as one page."""
    cold, cold_more = archive.select(filters, limit, cursor)
    if not cold:
        return hot
    with client.pipeline(transaction=False) as pipe:
        pipe.zmscore(keys.index_all(), hot.ids) if hot.ids else pipe.echo("")
        for job_id, _ in cold:
            pipe.exists(keys.job(job_id))
        replies = pipe.execute()
    hot_scores = cast(list[float | None], replies[0]) if hot.ids else []
    both = [(int(s or 0), i) for i, s in zip(hot.ids, hot_scores, strict=True)]
    both += [(score, job_id) for (job_id, score), in_redis in zip(cold, replies[1:], strict=True) if not in_redis]
    both.sort(reverse=True)
    taken = both if limit is None else both[:limit]
    more = hot.next_cursor is not None or cold_more or len(both) > len(taken)
    next_cursor = str(taken[-1][0]) if more and taken else None
    return Selection([i for _, i in taken], next_cursor, hot.scanned + len(cold))


def row_of(record: JobRecord) -> JobRow:
    """A job list's line of an archived record."""
    return JobRow(id=record.id, kind=record.kind, connection=record.connection, status=record.status.value,
                  created_at=record.created_at, updated_at=record.updated_at, finished_at=record.finished_at,
                  error=record.error, runs=len(record.runs) or 1,
                  file=record.file.name if record.file else None, not_before=record.not_before,
                  priority=record.priority, tenant=record.tenant, archived=True)


def fill(ids: list[str], hot: dict[str, JobRow], archive: HistoryArchive | None) -> list[JobRow]:
    """The rows of ``ids`` in their order: Redis's, else the archive's; the missing left out."""
    missing = [i for i in ids if i not in hot]
    if missing and archive is not None:
        hot = {**hot, **{r.id: row_of(r) for r in archive.get_many(missing)}}
    return [hot[i] for i in ids if i in hot]
