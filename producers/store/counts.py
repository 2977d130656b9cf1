"""How many jobs the store holds by status, kind and connection, without counting them.

One hash (``keys.job_counts``) with a field ``status|kind|connection`` per combination that has
jobs, moved in the same call as the status it counts: ``lua/create.lua`` (queued), ``lua/begin.lua``
(running), ``settle``'s commands (``codec.count_moves``: succeeded, failed, back to queued),
``StoreCore._set_status`` (replay, cancel) and ``lua/forget.lua`` (a purge, or the sweep of an
expired record). Reading a count is one HMGET or HGETALL, whatever the size of the store: the
index intersections it replaces cost Redis time in proportion to the indexes, for every scrape of
``/metrics`` and every refresh of ``/connections`` and the dashboard (issue 20 item 3).

A store written before the counts existed (or whose hash was deleted) is counted once, in one
atomic pass over the indexes (``lua/rebuild_counts.lua``), on the first read that misses the
``built`` field. The hash counts the jobs Redis holds (a job moved to the archive leaves it in
``lua/archive_drop.lua``); ``job_counts``, ``count_where`` and ``counts_by_connection`` add the
archive's (``HistoryArchive.counts``), so every count spans both. Like the indexes, a succeeded
job whose record has expired is counted until the
sweep takes it out of both.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import cast

from producers import keys
from producers.records import JobStatus
from producers.store import codec
from producers.store.core import StoreCore

SEP = "|"
BUILT = "built"
count_field = codec.count_field


class Counts(StoreCore):
    def job_counts(self, combos: Sequence[tuple[str, str, str]]) -> builtins.list[int]:
        """How many jobs have each (status, kind, connection): one HMGET."""
        fields = [BUILT, *(count_field(*combo) for combo in combos)]
        values = cast(list[str | None], self.redis.hmget(keys.job_counts(), fields))
        if values[0] is None and self._rebuild_counts():
            values = cast(list[str | None], self.redis.hmget(keys.job_counts(), fields))
        archived = self._archived_counts()
        return [max(0, int(v or 0)) + archived.get(combo, 0) for v, combo in zip(values[1:], combos, strict=True)]

    def count_where(self, *, status: str | None = None, kind: str | None = None,
                    connection: str | None = None) -> int:
        """How many jobs match every given filter: one HGETALL of the (small) counts hash."""
        total = 0
        for (s, k, c), n in self._all_counts().items():
            if (status or s) == s and (kind or k) == k and (connection or c) == c:
                total += n
        return total

    def counts_by_connection(self, connections: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each connection's jobs by status (every status present, 0 when none)."""
        found = {name: {s.value: 0 for s in JobStatus} for name in connections}
        for (status, _, connection), n in self._all_counts().items():
            if connection in found and status in found[connection]:
                found[connection][status] += n
        return found

    def _all_counts(self) -> dict[tuple[str, str, str], int]:
        raw = cast(dict[str, str], self.redis.hgetall(keys.job_counts()))
        if BUILT not in raw and self._rebuild_counts():
            raw = cast(dict[str, str], self.redis.hgetall(keys.job_counts()))
        counts: dict[tuple[str, str, str], int] = {}
        for field, value in raw.items():
            status, _, rest = field.partition(SEP)
            kind, _, connection = rest.partition(SEP)
            if connection:
                counts[(status, kind, connection)] = max(0, int(value))
        for combo, n in self._archived_counts().items():
            counts[combo] = counts.get(combo, 0) + n
        return counts

    def _archived_counts(self) -> dict[tuple[str, str, str], int]:
        """The archive's jobs by (status, kind, connection): the counts span both (the hash
        counts the jobs in Redis only; the archive's are a few seconds stale at most)."""
        return self.archive.counts() if self.archive is not None else {}

    def _rebuild_counts(self) -> bool:
        return self._scripts.rebuild_counts([s.value for s in JobStatus])
