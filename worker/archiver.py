"""The archiver: moves ended jobs from Redis into the SQL archive (``producers.archive.mover``).

A thread in every worker process, like the releaser (``worker/schedule.py``): it first brings the
archive's schema to its newest revision (Alembic; ``ferry archive migrate`` does the same), then
each ``[archive] interval_seconds`` one process of the fleet takes the round (a Redis key held
for the interval, ``SET NX PX``) and moves what is due in batches.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from producers.config import FerryConfig
from producers.store import JobStore
from worker.log import get_logger

if TYPE_CHECKING:  # SQLAlchemy is imported only by a worker that has an archive (~15 MiB a process)
    from producers.archive.store import ArchiveStore


def start_archiver(store: JobStore, archive: ArchiveStore | None, config: FerryConfig) -> threading.Thread | None:
    """The archiver's thread (None: no archive configured)."""
    if archive is None:
        return None
    from producers.archive.mover import Mover

    mover = Mover(store, archive, config.archive)
    owner = f"{os.uname().nodename}:{os.getpid()}"

    def loop() -> None:
        while True:
            try:
                archive.ensure()
                break
            except Exception:  # the database is down: the worker runs on, the archiver waits
                get_logger().exception("archive migration failed", archive=repr(archive))
                time.sleep(30)
        while True:
            time.sleep(config.archive.interval_seconds)
            try:
                moved = mover.round_if_leader(owner)
                if moved:
                    get_logger().info("archived", jobs=moved)
            except Exception:  # never let it kill the worker; the next round tries again
                get_logger().exception("archive round failed")

    thread = threading.Thread(target=loop, name="ferry-archiver", daemon=True)
    thread.start()
    return thread
