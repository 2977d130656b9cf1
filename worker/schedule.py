"""The releaser: queues scheduled jobs when their ``not_before`` comes (``producers.store.schedule``).

A thread in every worker process, like the reaper; one of them has each round (a Redis key held
for ``ROUND_SECONDS``), so the fleet releases each due job once and a dead releaser's round
passes to another within a round. A round releases in batches of ``RELEASE_BATCH`` (one Lua
call each, a bounded pause for Redis) until nothing due is left, so a job starts within about a
round of its time and never before it: the script compares with the time as it runs.
"""

from __future__ import annotations

import os
import threading
import time

from celery import Celery

from producers.queue import StepPublisher
from producers.store import JobStore
from producers.store.schedule import RELEASE_BATCH
from worker.dispatch import dispatch_round
from worker.log import get_logger
from worker.runtime import runtime

ROUND_SECONDS = float(os.environ.get("FERRY_RELEASE_INTERVAL", "0.5"))
MAX_BATCHES = 100  # per round: 50 000 jobs; the rest wait for the next round


def release(store: JobStore, publisher: StepPublisher, *, now: float | None = None) -> int:
    """Queue every scheduled job due by ``now`` (default: the clock at each batch); how many.
    Outbox entries (a broker other than the store's Redis) are published at once."""
    released = 0
    for _ in range(MAX_BATCHES):
        batch = store.release_due(publisher.outgoing, now=now, limit=RELEASE_BATCH,
                                  window_of=publisher.config.window_of)
        for _job_id, outgoing in batch:
            publisher.deliver(outgoing, store)
        released += len(batch)
        if len(batch) < RELEASE_BATCH:
            break
    return released


def release_round(store: JobStore, publisher: StepPublisher) -> int:
    """One round, if a job is due and this process has the round. Looking costs one read (the
    earliest time), so an idle fleet's releasers add a few Redis commands a second, not a
    claim each."""
    due = store.next_due()
    if due is None or due > time.time() or not store.claim_release_round(f"{os.getpid()}", ROUND_SECONDS):
        return 0
    return release(store, publisher)


def start_releaser(app: Celery, store: JobStore) -> threading.Thread:
    publisher = runtime().publisher(app)
    config = runtime().config

    def loop() -> None:
        while True:
            time.sleep(ROUND_SECONDS)
            try:
                release_round(store, publisher)
                dispatch_round(store, publisher, config, ROUND_SECONDS)  # the ready sets' turn
            except Exception:  # never let it kill the worker; the next round tries again
                get_logger().exception("release round failed")

    thread = threading.Thread(target=loop, name="ferry-releaser", daemon=True)
    thread.start()
    return thread
