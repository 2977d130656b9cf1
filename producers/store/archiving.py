"""The Redis side of the archive: which ended jobs may leave, taking them out once the archive
holds them, and bringing one back for a replay (``producers.archive.mover`` runs the rounds).

A candidate is an ended job (succeeded, failed, cancelled) whose last change is older than the
cutoff and with no webhook delivery still open. It leaves Redis in ``lua/archive_drop.lua``, only
if it is still the version copied; its index entries and its count leave in the same call, so
``ferry:counts`` counts exactly the jobs Redis holds.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from producers import keys
from producers.records import FINISHED, DeliveryStatus, JobStatus, utcnow
from producers.store import codec
from producers.store.core import StoreCore
from producers.store.types import ArchiveCandidate

_ENDED = frozenset(s.value for s in FINISHED)
_SETTLED = frozenset({DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value})
SCAN_BUDGET = 20_000  # index entries examined per status per round (jobs that must stay hot are skipped)


class Archiving(StoreCore):
    def claim_archive_round(self, owner: str, seconds: float) -> bool:
        """True when this process has the archiver's round (one for the fleet)."""
        return bool(self.redis.set(keys.archive_round(), owner, nx=True, px=int(seconds * 1000)))

    def archive_candidates(self, cutoff: str, limit: int,
                           skip: Collection[str] = ()) -> builtins.list[ArchiveCandidate]:
        """Up to ``limit`` ended jobs last changed before ``cutoff`` (an ISO time as records
        write them), oldest created first, none of ``skip`` (a batch being moved). Index
        entries of records gone leave their indexes."""
        found: builtins.list[ArchiveCandidate] = []
        for status in sorted(FINISHED):
            offset = 0
            while len(found) < limit and offset < SCAN_BUDGET:
                ids = cast(builtins.list[str], self.redis.zrange(
                    keys.index_status(status.value), offset, offset + 499))
                if not ids:
                    break
                offset += len(ids)
                ids = [i for i in ids if i not in skip]
                with self.redis.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.hgetall(keys.job(job_id))
                    raws = cast(builtins.list[dict[str, str]], pipe.execute())
                for job_id, raw in zip(ids, raws, strict=True):
                    if not raw:
                        self._forget(job_id)
                        offset -= 1
                        continue
                    candidate = self._candidate(job_id, raw, cutoff)
                    if candidate is not None and len(found) < limit:
                        found.append(candidate)
        return found

    def _candidate(self, job_id: str, raw: Mapping[str, str], cutoff: str) -> ArchiveCandidate | None:
        if raw.get(codec.STATUS) not in _ENDED or raw.get(codec.UPDATED_AT, "") > cutoff:
            return None
        record = codec.as_json(raw, job_id)
        if record["updated_at"] > cutoff or any(d.get("status") not in _SETTLED for d in record["notifications"]):
            return None
        score = int(float(raw.get(codec.SCORE) or self._score(job_id, None)))
        return ArchiveCandidate(id=job_id, status=record["status"], record=record, score=score,
                                meta=json.loads(raw[codec.META]), updated_at=raw.get(codec.UPDATED_AT, ""),
                                deliveries=len(record["notifications"]))

    def drop_archived(self, moved: Sequence[ArchiveCandidate]) -> int:
        """Take each job out of Redis unless it changed since it was read; how many left. Then
        the keys beside the record that left: its steps' short-lived secrets, and the memos of a
        job that did not fail (a failed one's memos stay, until the retention, for a replay's
        first attempt to see what an earlier one made; ``lua/archive_drop.lua``)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for c in moved:
                self._scripts.archive_drop(c.id, c.meta, status=c.status,
                                           updated_at=c.updated_at, deliveries=c.deliveries, pipe=pipe)
            dropped = [c for c, n in zip(moved, pipe.execute(), strict=True) if int(n)]
        with self.redis.pipeline(transaction=False) as pipe:
            for c in dropped:
                for step in c.meta.get("steps", ()):
                    pipe.delete(keys.job_secret(c.id, step))
                    if c.status != JobStatus.FAILED.value:
                        pipe.delete(keys.step_memo(c.id, step))
            pipe.execute()
        return len(dropped)

    def bring_back(self, job_id: str) -> bool:
        """An archived job written back into Redis (and out of the archive), for a replay; False
        when Redis holds it already or nothing does. Its ``updated_at`` is now, so the archiver
        leaves it alone for ``hot_seconds``."""
        if self.archive is None or self.redis.exists(keys.job(job_id)):
            return False
        stored = self.archive.raw(job_id)
        if stored is None:
            return False
        restored = self.restore({**stored, "updated_at": utcnow()})
        self.archive.delete([job_id])  # a crash before this: both hold it; reads take Redis's
        return restored

    def restore(self, stored: Mapping[str, Any]) -> bool:
        """Write an archived record (its JSON, with ``_score``) back into Redis as it was, its
        index entries and count with it; False when Redis holds the job already."""
        job_id = str(stored["id"])
        fields: dict[Any, Any] = codec.encode(stored)
        status, kind, connection = str(stored["status"]), str(stored["kind"]), str(stored["connection"])
        score = int(stored["_score"])
        with self.redis.pipeline() as pipe:
            pipe.watch(keys.job(job_id))  # type: ignore[no-untyped-call]
            if pipe.exists(keys.job(job_id)):
                return False
            pipe.multi()
            pipe.hset(keys.job(job_id), mapping=fields)
            for index in (keys.index_all(), keys.index_status(status), keys.index_kind(kind),
                          keys.index_connection(connection)):
                pipe.zadd(index, {job_id: score})
            if stored.get("batch"):
                pipe.zadd(keys.batch_jobs(str(stored["batch"])), {job_id: score})
            pipe.sadd(keys.index_names("kind"), kind)
            pipe.sadd(keys.index_names("conn"), connection)
            pipe.hincrby(keys.job_counts(), codec.count_field(status, kind, connection), 1)
            if status != JobStatus.FAILED.value:
                pipe.expire(keys.job(job_id), self.retention_seconds)
            pipe.execute()
        return True
