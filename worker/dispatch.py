"""The dispatcher: keeps each connection's run of messages topped up from Ferry's ready sets.

Every connection has a window (``FerryConfig.window_of``: from its rate limit, its
``max_in_flight``, ``[scheduling] window``, else ``OPEN_WINDOW``) and at most that many jobs in
its run: in the broker, or started and not ended. The others wait in the store's ready sets with
no message (``producers.store.ready``), and the dispatcher releases them, next by aging between
priorities and by tenant turns within one (``lua/ready_take.lua``), as room frees:

- when a job ends on a worker (its last step succeeded, or it failed), that worker tops its
  connection up at once, so a busy connection never waits for a round;
- every round (the releaser's thread, ``worker.schedule``), the one process holding the round
  tops up every connection that has jobs waiting (a cancel, a lost worker, a change of window).

Each release is an outbox entry written with the job's release, published right after (the
reaper publishes what a dead worker left), on either broker. A connection whose run is not
full costs one cached read per job end here (``Backlogs``): its jobs never wait in the ready sets.
"""

from __future__ import annotations

import os
import threading
import time

import redis
from kombu.exceptions import OperationalError

from producers.config import FerryConfig
from producers.kinds import KINDS
from producers.queue import StepPublisher, queue_for_connection
from producers.store import JobStore
from worker.log import get_logger

REFRESH_SECONDS = 0.5  # how long a process trusts what it read of a connection's ready sets


def windowed(config: FerryConfig) -> list[str]:
    """The connections whose jobs may wait in the ready sets."""
    return sorted(name for name in config.connections if config.window_of(name) is not None)


def top_up(store: JobStore, publisher: StepPublisher, config: FerryConfig, connection: str) -> int:
    """Release the connection's next waiting jobs into its run, as many as it has room for;
    how many."""
    window = config.window_of(connection)
    conn = config.connections.get(connection)
    if window is None or conn is None:
        return 0
    kinds = sorted(k.name for k in KINDS.values() if k.service == conn.service)
    entries = store.release_ready(connection, queue=queue_for_connection(config, connection), window=window,
                                  aging_seconds=config.scheduling.aging_seconds, kinds=kinds)
    for entry in entries:
        publisher.deliver_entry(entry, store)
    return len(entries)


class Backlogs:
    """What this process last read of each connection's ready sets (read again after
    ``REFRESH_SECONDS``), so a job's end tops its connection up only when jobs wait there."""

    def __init__(self) -> None:
        self._read: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def waiting(self, store: JobStore, connection: str) -> int:
        now = time.monotonic()
        with self._lock:
            at, count = self._read.get(connection, (0.0, 0))
        if now - at < REFRESH_SECONDS:
            return count
        count = store.ready_count([connection])[connection]
        with self._lock:
            self._read[connection] = (now, count)
        return count

    def note(self, counts: dict[str, int]) -> None:
        now = time.monotonic()
        with self._lock:
            self._read.update((name, (now, n)) for name, n in counts.items())


BACKLOGS = Backlogs()


def after_end(store: JobStore, publisher: StepPublisher, config: FerryConfig, connection: str) -> int:
    """A job of ``connection`` ended here: its place in the run goes to the next waiting job.
    Best effort: a failure leaves the place to the next round (the job's end is recorded)."""
    if config.window_of(connection) is None:
        return 0
    try:
        return top_up(store, publisher, config, connection) if BACKLOGS.waiting(store, connection) else 0
    except (redis.RedisError, OperationalError):
        get_logger().warning("topping the connection's run up failed; the next round will", connection=connection)
        return 0


def dispatch_round(store: JobStore, publisher: StepPublisher, config: FerryConfig, seconds: float) -> int:
    """One round: when a connection has jobs waiting and this process has the round, top every
    such connection up. Looking costs one read (the ready sets' sizes) per round."""
    names = windowed(config)
    if not names:
        return 0
    counts = store.ready_count(names)
    BACKLOGS.note(counts)
    waiting = [name for name in names if counts[name]]
    if not waiting or not store.claim_dispatch_round(f"{os.getpid()}", seconds):
        return 0
    return sum(top_up(store, publisher, config, name) for name in waiting)
