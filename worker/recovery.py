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

import functools
import itertools
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from producers.kinds import KINDS
from producers.queue import StepPublisher, enqueue, queue_for_connection, queue_names
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


def stalled_step(job: JobRecord, lease_until: float, now: datetime, queue_empty: bool) -> str | None:
    """The step to restart ``job`` from if its next message was lost on its way to a worker: a
    Redis broker's consumer pops a message (BRPOP) before it records the delivery, so a Redis
    crash between the two loses it. Such a job is queued or between two steps, quiet for
    ``stall_grace()``, nobody holds its lease, and its queue is empty: the message is not
    waiting in a backlog. (A message a busy worker prefetched fits that too; its second copy
    finds the step leased or done and does nothing.)"""
    if not queue_empty or lease_until > now.timestamp() or _age(job.updated_at, now) <= stall_grace():
        return None
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return None
    for step in job.steps:
        if step.status in (StepStatus.RUNNING, StepStatus.RETRYING):
            return None
        if step.status == StepStatus.PENDING:
            return step.name
    return None


def stall_grace() -> float:
    return 2.0 * lease_seconds()


def reap(app: Celery, store: JobStore, publisher: StepPublisher) -> list[str]:
    """Publish stale outbox entries and re-enqueue every orphaned or stalled job once. Returns
    the ids of the jobs revived."""
    if not store.claim_reaper_round(str(os.getpid()), int(REAP_INTERVAL)):
        return []  # another worker's reaper has this round
    reap_outbox(store, publisher)
    now = datetime.now(UTC)
    empty = _empty_queues(store, publisher)
    candidates = store.iter_ids(status=JobStatus.RUNNING.value)
    if empty:  # a job queued while its queue is empty lost its first message (or is just in)
        candidates = itertools.chain(candidates, store.iter_ids(status=JobStatus.QUEUED.value))
    revived = []
    for job_id in candidates:
        job = store.find(job_id)
        if job is None:
            continue
        lease_until = store.lease_expiry(job_id)
        queue = queue_for_connection(publisher.config, job.connection)
        step = orphaned_step(job, lease_until, now) or stalled_step(job, lease_until, now, queue in empty)
        if step is None or parked(store, job, step):
            continue
        # Once per step per window: a revived step that is merely slow to start (a busy pool
        # holding its delayed retry) must not gain another copy every round.
        if not store.mark_revived(job.id, step, REVIVE_WINDOW):
            continue
        get_logger(job_id=job.id, kind=job.kind, step=step).warning("re-enqueueing orphaned step")
        enqueue(app, job.id, KINDS[job.kind], from_step=step, queue=queue)
        revived.append(job.id)
    return revived


def parked(store: JobStore, job: JobRecord, step: str) -> bool:
    """Whether ``step`` waits in its paused connection's parked set. Such a step looks orphaned
    (a retry overdue, nobody holding the lease) or stalled (pending, its queue empty), but it
    has no message on purpose: ``ferry resume`` publishes it."""
    return store.is_parked(job.connection, job.id, step)


def _empty_queues(store: JobStore, publisher: StepPublisher) -> set[str]:
    """The queues with no message waiting, on a Redis broker that is the store's Redis (a
    queue is a list named after it). Elsewhere none: RabbitMQ loses no delivered message."""
    if not publisher.same_redis:
        return set()
    return store.empty_lists(queue_names(publisher.config))


def reap_outbox(store: JobStore, publisher: StepPublisher, grace: float | None = None) -> int:
    """Publish the outbox entries older than ``grace`` seconds (their worker or broker died
    between recording a step's end and publishing the next message). Returns how many."""
    entries = store.outbox_due(OUTBOX_GRACE if grace is None else grace)
    for entry in entries:
        get_logger(job_id=entry.job_id, step=entry.step).warning("publishing a step message left in the outbox")
        publisher.deliver_entry(entry, store)
    return len(entries)


def survive_broker_restarts() -> None:
    """Keep the worker alive when its Redis broker dies (kombu 5.7). After the consumer loses
    its connection, the old channel still hands back its unacknowledged messages on close, and
    steps that were running when Redis died still acknowledge theirs on it when they end: both
    go through a connection that is gone, raise AttributeError (or RedisError), and Celery calls
    that an "Unrecoverable error": the worker exits instead of reconnecting. Caught here, those
    messages stay in the broker's unacked set: their steps are recorded as done, or the reaper
    revives their jobs (``orphaned_step``, ``stalled_step``), and when the broker restores them
    after the visibility timeout they find their steps done."""
    qos: Any = kombu_redis.QoS
    for name in ("ack", "reject", "restore_unacked"):
        method = getattr(qos, name)
        if not getattr(method, "ferry_guarded", False):
            setattr(qos, name, _tolerating_a_lost_broker(method))


def _tolerating_a_lost_broker(method: Any) -> Any:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (AttributeError, redis.RedisError) as exc:
            get_logger().warning("a message stays unacknowledged: its broker connection is gone",
                                 action=method.__name__, error=f"{type(exc).__name__}: {exc}")
            return None

    call.ferry_guarded = True  # type: ignore[attr-defined]
    return call


def start_reaper(app: Celery, store: JobStore) -> threading.Thread:
    survive_broker_restarts()
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
