"""Recovering steps whose worker died.

A worker killed outright (SIGKILL, lost host) leaves its message unacknowledged until the broker's
visibility timeout — hours, because it must outlast the longest upload. Ferry does not wait that
long: while a step runs, its worker holds the job's lease (renewed every few seconds); a step that
the store says is running, but whose lease has lapsed, was orphaned. One reaper at a time (a Redis
lock) re-enqueues such jobs from the orphaned step. When the old message finally comes back, the
store says the step is done and the message does nothing.

A step's end and the next message are written by one Redis call (``producers.store``): on the
store's own Redis the message itself, so there is no moment in between to die in. On another
broker (RabbitMQ) that call writes an outbox entry which the worker publishes and then deletes;
an entry still there ``OUTBOX_GRACE`` seconds later lost its worker or its broker in between,
and the reaper publishes it.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

from celery import Celery

from producers import keys
from producers.kinds import KINDS
from producers.queue import StepPublisher, enqueue, queue_for_connection
from producers.records import JobRecord, JobStatus, StepStatus
from producers.store import JobStore
from worker.log import get_logger
from worker.runtime import runtime

REAP_INTERVAL = float(os.environ.get("FERRY_REAP_INTERVAL", "30"))
# A retrying step whose next attempt is this overdue, with nobody holding the lease, lost its
# delayed message along with its worker.
RETRY_GRACE = 60.0
REVIVE_WINDOW = 600
# An outbox entry is published by its worker right after it is written; one this old lost it.
OUTBOX_GRACE = float(os.environ.get("FERRY_OUTBOX_GRACE", "5"))


def lease_seconds() -> int:
    return int(os.environ.get("FERRY_LEASE_SECONDS", "60"))


def _age(timestamp: str | None, now: datetime) -> float:
    if not timestamp:
        return 0.0
    return (now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds()


def orphaned_step(job: JobRecord, lease_until: float, now: datetime) -> str | None:
    """The step to restart ``job`` from, if its worker is gone; else None: it died mid-step
    (running, lease lapsed) or while holding a delayed retry (retrying, overdue).

    A job between two steps is not an orphan: its next message was written with the step's end
    (or sits in the outbox, see ``reap_outbox``)."""
    if job.status != JobStatus.RUNNING or lease_until > now.timestamp():
        return None
    for step in job.steps:
        if step.status == StepStatus.RUNNING and _age(job.updated_at, now) > lease_seconds():
            return step.name
        if step.status == StepStatus.RETRYING and _age(step.next_attempt_at, now) > RETRY_GRACE:
            return step.name
    return None


def reap(app: Celery, store: JobStore, publisher: StepPublisher) -> list[str]:
    """Publish stale outbox entries and re-enqueue every orphaned running job once. Returns the
    ids of the jobs revived."""
    if not store.redis.set(f"{keys.PREFIX}:reaper", os.getpid(), nx=True, ex=max(1, int(REAP_INTERVAL))):
        return []  # another worker's reaper has this round
    reap_outbox(store, publisher)
    now = datetime.now(UTC)
    revived = []
    for job_id in store.iter_ids(status=JobStatus.RUNNING.value):
        job = store.find(job_id)
        step = orphaned_step(job, store.lease_expiry(job_id), now) if job else None
        if job is None or step is None:
            continue
        # Once per step per window: a revived step that is merely slow to start (a busy pool
        # holding its delayed retry) must not gain another copy every round.
        if not store.redis.set(f"{keys.PREFIX}:revived:{job.id}:{step}", 1, nx=True, ex=REVIVE_WINDOW):
            continue
        get_logger(job_id=job.id, kind=job.kind, step=step).warning("re-enqueueing orphaned step")
        enqueue(app, job.id, KINDS[job.kind], from_step=step,
                queue=queue_for_connection(publisher.config, job.connection))
        revived.append(job.id)
    return revived


def reap_outbox(store: JobStore, publisher: StepPublisher, grace: float | None = None) -> int:
    """Publish the outbox entries older than ``grace`` seconds (their worker or broker died
    between recording a step's end and publishing the next message). Returns how many."""
    entries = store.outbox_due(OUTBOX_GRACE if grace is None else grace)
    for entry in entries:
        get_logger(job_id=entry.job_id, step=entry.step).warning("publishing a step message left in the outbox")
        publisher.deliver_entry(entry, store)
    return len(entries)


def start_reaper(app: Celery, store: JobStore) -> threading.Thread:
    publisher = runtime().publisher(app)

    def loop() -> None:
        while True:
            time.sleep(REAP_INTERVAL)
            try:
                reap(app, store, publisher)
                store.sweep()  # index entries of succeeded jobs that reached their retention
            except Exception:  # never let recovery kill the worker; the next round tries again
                get_logger().exception("reaper round failed")

    thread = threading.Thread(target=loop, name="ferry-reaper", daemon=True)
    thread.start()
    return thread
