"""What the job store reads of the archive of ended jobs, as a protocol: ``producers.archive``
implements it with SQL; this package never imports SQL."""

from __future__ import annotations

from typing import Any, Protocol

from producers.records import JobRecord
from producers.store.selection import Filters


class HistoryArchive(Protocol):
    """What the job store reads of the archive of ended jobs (``producers.archive.ArchiveStore``),
    so every read spans Redis and the archive without this package importing SQL."""

    def get_many(self, ids: list[str]) -> list[JobRecord]: ...

    def select(self, filters: Filters, limit: int | None,
               cursor: str | None) -> tuple[list[tuple[str, int]], bool]: ...

    def count(self, filters: Filters) -> int: ...

    def counts(self) -> dict[tuple[str, str, str], int]: ...

    def by_idempotency_key(self, key: str) -> str | None: ...

    def raw(self, job_id: str) -> dict[str, Any] | None: ...

    def delete(self, ids: list[str]) -> int: ...
