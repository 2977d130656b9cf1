"""Moving ended jobs from Redis into the archive: copy, confirm, then delete from Redis.

A batch is: read the candidates (ended, last changed more than ``hot_seconds`` ago, no webhook
delivery still open: ``JobStore.archive_candidates``), upsert them by job id, read back which
versions the archive now holds, and take exactly those out of Redis, each only if it is still the
version copied (``lua/archive_drop.lua``, which moves its count out in the same call). A crash
after the copy leaves the job in both (reads show it once, from Redis; the next round copies it
again onto the same row and drops it); a crash after the drop leaves it in the archive only. So a
crash at any point loses and duplicates nothing, and two movers at once (a round that outlived
its lock) only repeat each other's upserts.

``FERRY_ARCHIVE_CRASH_AT`` (tests only) kills the process at one of ``CRASH_POINTS``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from producers.archive.store import ArchiveStore, row_of
from producers.config import ArchiveConfig
from producers.records import utc_in
from producers.store import ArchiveCandidate, JobStore

CRASH_ENV = "FERRY_ARCHIVE_CRASH_AT"
CRASH_POINTS = ("copied", "confirmed", "dropped")
MAX_BATCHES = 200  # per round; the rest wait for the next round
EXPIRE_EVERY_SECONDS = 3600.0


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Mover:
    store: JobStore
    archive: ArchiveStore
    settings: ArchiveConfig
    _expired_at: float = 0.0

    def move_batch(self) -> tuple[int, int]:
        """One copy-confirm-delete: (jobs found, jobs that left Redis)."""
        found = self.store.archive_candidates(utc_in(-self.settings.hot_seconds), self.settings.batch)
        return len(found), self.move(found)

    def move(self, found: Sequence[ArchiveCandidate]) -> int:
        """Copy, confirm, delete ``found``: how many left Redis."""
        if not found:
            return 0
        self.archive.upsert([row_of(c.record, c.score) for c in found])
        _crash_point("copied")
        held = self.archive.versions([c.id for c in found])
        confirmed = [c for c in found if held.get(c.id) == c.record["updated_at"]]
        _crash_point("confirmed")
        dropped = self.store.drop_archived(confirmed)
        _crash_point("dropped")
        return dropped

    def run_round(self) -> int:
        """Batches until none is full (at most ``MAX_BATCHES``), and the archive's retention
        once an hour; how many jobs left Redis. The next batch is read from Redis while the one
        before is written to the database (a thread of its own: the database works meanwhile),
        never holding a job of it."""
        moved = 0
        cutoff = utc_in(-self.settings.hot_seconds)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-archive") as pool:
            running: Future[int] | None = None
            moving: set[str] = set()
            for _ in range(MAX_BATCHES):
                found = self.store.archive_candidates(cutoff, self.settings.batch, skip=moving)
                if running is not None:
                    moved += running.result()
                moving = {c.id for c in found}
                running = pool.submit(self.move, found) if found else None
                if len(found) < self.settings.batch:
                    break
            if running is not None:
                moved += running.result()
        if time.monotonic() - self._expired_at >= EXPIRE_EVERY_SECONDS:
            self.archive.expire(self.settings.succeeded_days, self.settings.failed_days)
            self._expired_at = time.monotonic()
        if moved:
            self.archive.forget_counts()
        return moved

    def round_if_leader(self, owner: str) -> int:
        """A round, when this process has it (one for the fleet per ``interval_seconds``)."""
        if not self.store.claim_archive_round(owner, self.settings.interval_seconds):
            return 0
        return self.run_round()
