"""Recovering steps whose worker died.

A worker killed outright (SIGKILL, lost host) leaves its message unacknowledged until the broker's
visibility timeout — hours, because it must outlast the longest upload. Ferry does not wait that
long: while a step runs, its worker holds the job's lease (renewed every few seconds); a step that
the store says is running, but whose lease has lapsed, was orphaned. One reaper at a time (a Redis
lock) re-enqueues such jobs from the orphaned step. When the old message finally comes back, the
store says the step is done and it passes the chain on without repeating any work.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

import redis
from celery import Celery

from producers import keys
from producers.kinds import KINDS
from producers.queue import enqueue
from producers.records import JobRecord, JobStatus, StepStatus
from producers.store import JobStore
from worker.log import get_logger

REAP_INTERVAL = float(os.environ.get("FERRY_REAP_INTERVAL", "30"))
# A retrying step whose next attempt is this overdue, with nobody holding the lease, lost its
# delayed message along with its worker.
RETRY_GRACE = 60.0
REVIVE_WINDOW = 600


def lease_seconds() -> int:
    return int(os.environ.get("FERRY_LEASE_SECONDS", "60"))


def _age(timestamp: str | None, now: datetime) -> float:
    if not timestamp:
        return 0.0
    return (now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds()


def orphaned_step(job: JobRecord, client: redis.Redis, now: datetime) -> str | None:
    """The step to restart ``job`` from, if its worker is gone; else None: it died mid-step
    (running, lease lapsed) or while holding a delayed retry (retrying, overdue).

    Not covered, on purpose: a worker dying in the instant between recording a step and
    publishing the next. From the store that looks like a job waiting in a backlog, and reviving
    every such job would flood a busy queue; that message returns after the visibility timeout."""
    if job.status != JobStatus.RUNNING or client.exists(keys.lease(job.id)):
        return None
    for step in job.steps:
        if step.status == StepStatus.RUNNING and _age(job.updated_at, now) > lease_seconds():
            return step.name
        if step.status == StepStatus.RETRYING and _age(step.next_attempt_at, now) > RETRY_GRACE:
            return step.name
    return None


def reap(app: Celery, store: JobStore) -> list[str]:
    """Re-enqueue every orphaned running job once. Returns their ids."""
    if not store.redis.set(f"{keys.PREFIX}:reaper", os.getpid(), nx=True, ex=max(1, int(REAP_INTERVAL))):
        return []  # another worker's reaper has this round
    now = datetime.now(UTC)
    revived = []
    for job_id in store.iter_ids(status=JobStatus.RUNNING.value):
        job = store.find(job_id)
        step = orphaned_step(job, store.redis, now) if job else None
        if job is None or step is None:
            continue
        # Once per step per window: a revived step that is merely slow to start (a busy pool
        # holding its delayed retry) must not gain another copy every round.
        if not store.redis.set(f"{keys.PREFIX}:revived:{job.id}:{step}", 1, nx=True, ex=REVIVE_WINDOW):
            continue
        get_logger(job_id=job.id, kind=job.kind, step=step).warning("re-enqueueing orphaned step")
        enqueue(app, job.id, KINDS[job.kind], from_step=step)
        revived.append(job.id)
    return revived


def start_reaper(app: Celery, store: JobStore) -> threading.Thread:
    def loop() -> None:
        while True:
            time.sleep(REAP_INTERVAL)
            try:
                reap(app, store)
                store.sweep()  # index entries of succeeded jobs that reached their retention
            except Exception:  # never let recovery kill the worker; the next round tries again
                get_logger().exception("reaper round failed")

    thread = threading.Thread(target=loop, name="ferry-reaper", daemon=True)
    thread.start()
    return thread
