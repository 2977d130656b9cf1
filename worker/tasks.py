"""One Celery task per declared step name (``ferry.step.<name>``), all running ``run_step``.

The message carries only the job id; the step is the task's name. Before running, a step checks
the store (a redelivered message for a step that already succeeded does nothing and lets the chain
go on) and takes the job's lease (a second copy of the message waits instead of running the step
twice at once). Outcomes: the step's output is recorded and the chain continues; a retryable error
is retried after the server's delay or a backoff, until the attempt budget is spent; anything else
fails the job at this step, with the destination's message, and stops the chain.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import redis
from celery import Celery, Task
from celery.exceptions import Ignore

from producers import keys
from producers.kinds import KINDS, all_step_names
from producers.queue import TASK_PREFIX, task_name
from producers.records import JobRecord, StepError, StepStatus
from worker import controls
from worker.errors import DestinationError, PermanentError, RetryableError, Throttled
from worker.log import get_logger, redact_text
from worker.recovery import lease_seconds
from worker.retry import backoff_delay
from worker.runtime import Runtime, runtime
from worker.steps import STEPS, StepContext

LEASE_BUSY_RETRY = 15


def register_tasks(app: Celery) -> None:
    missing = all_step_names() - set(STEPS)
    if missing:
        raise RuntimeError(f"declared steps without an implementation: {sorted(missing)}")
    for name in sorted(all_step_names()):
        # max_retries=None: no limit of Celery's own. Its default (3) would end a step at its
        # fourth attempt whatever max_attempts says (``retry(max_retries=None)`` means "the
        # task's default", not "unlimited"); _retry_or_fail enforces max_attempts, and a
        # lease-busy wait ends when the lease's holder finishes or its lease lapses.
        app.task(name=task_name(name), bind=True, acks_late=True, reject_on_worker_lost=True,
                 ignore_result=True, max_retries=None, throws=(controls.StepFailed,))(run_step)


def run_step(task: Task, job_id: str) -> None:
    step = task.name.removeprefix(TASK_PREFIX)
    rt = runtime()
    job = rt.store.find(job_id)
    if job is None:
        get_logger(job_id=job_id, step=step).warning("job not found (purged or expired); skipping")
        raise Ignore()
    if job.step(step).status in (StepStatus.SUCCEEDED, StepStatus.REUSED):
        return  # a redelivered message: this step's work is done, let the chain go on
    if job.done:
        raise Ignore()
    controls.gate(rt, job, step)  # cancelled: stop; connection paused: park the step
    with lease(rt.redis, job_id) as held:
        if not held:
            raise task.retry(countdown=LEASE_BUSY_RETRY)
        _attempt(task, rt, job, step)


def _attempt(task: Task, rt: Runtime, job: JobRecord, step: str) -> None:
    record = rt.store.start_step(job.id, step)
    log = get_logger(job_id=job.id, kind=job.kind, step=step, connection=job.connection,
                     attempt=record.attempts)
    outputs = {s.name: dict(s.result or {}) for s in job.steps
               if s.status in (StepStatus.SUCCEEDED, StepStatus.REUSED)}
    log.info("step started")
    started = time.monotonic()
    try:
        ctx = StepContext(job=job, step=step, attempt=record.attempts, outputs=outputs,
                          store=rt.store, clients=rt.clients(job.connection))
        result = _run(ctx, log)
    except RetryableError as exc:
        _retry_or_fail(task, rt, job, step, record.attempts, exc, _timed(log, started))
    except DestinationError as exc:
        _fail(rt, job, step, exc, _timed(log, started))
    except Exception as exc:  # a bug or an unexpected answer: keep the job, failed, for replay
        log = _timed(log, started)
        log.exception("step crashed")
        _fail(rt, job, step, PermanentError(f"internal error: {type(exc).__name__}: {exc}", step=step), log)
    log = _timed(log, started)
    rt.store.finish_step(job.id, step, result)
    log.info("step succeeded")
    kind = KINDS[job.kind]
    if step == kind.step_names[-1]:
        rt.store.mark_succeeded(job.id, kind.result_of({**outputs, step: result}))
        log.info("job succeeded")


def _timed(log: Any, started: float) -> Any:
    """``log`` with how long the attempt took: every event that ends an attempt carries it."""
    return log.bind(duration_ms=round((time.monotonic() - started) * 1000, 1))


def _run(ctx: StepContext, log: Any) -> dict[str, Any]:
    """Run the step. A 404 in a step that used a cached Assets workspace id may only mean the id
    went stale (workspace recreated, site moved, a new sandbox behind the same URL): discover it
    again once and, if the site now names another workspace, run the step once more."""
    try:
        return STEPS[ctx.step](ctx)
    except PermanentError as exc:
        stale = ctx.cached_workspace
        if exc.status != 404 or not ctx.rediscover_workspace():
            raise
        log.warning("cached workspace id is stale; running the step again", stale_workspace=stale)
    return STEPS[ctx.step](ctx)


def _retry_or_fail(task: Task, rt: Runtime, job: JobRecord, step: str, attempts: int,
                   exc: RetryableError, log: Any) -> NoReturn:
    if attempts >= rt.config.max_attempts and not isinstance(exc, Throttled):
        _fail(rt, job, step, exc, log, note=f" (gave up after {attempts} attempts)")
    delay = exc.retry_after if exc.retry_after is not None else backoff_delay(
        attempts, base=rt.config.retry_backoff_seconds)
    rt.store.retry_step(job.id, step, _step_error(exc, step, retryable=True), delay)
    log.warning("step will be retried", status=exc.status, delay=round(delay, 2),
                error=redact_text(exc.message), server_delay=exc.retry_after is not None)
    raise task.retry(countdown=delay)


def _fail(rt: Runtime, job: JobRecord, step: str, exc: DestinationError, log: Any, note: str = "") -> NoReturn:
    error = _step_error(exc, step, retryable=isinstance(exc, RetryableError))
    error.message += note
    rt.store.mark_failed(job.id, step, error)
    log.error("job failed", status=exc.status, error=error.message)
    # A task failure stops the chain, acknowledges the message and shows as FAILURE in Flower.
    raise controls.StepFailed(error.message)


def _step_error(exc: DestinationError, step: str, retryable: bool) -> StepError:
    return StepError(step=exc.step or step, status=exc.status, message=redact_text(exc.message),
                     retryable=retryable)


@contextmanager
def lease(client: redis.Redis, job_id: str) -> Iterator[bool]:
    """Hold ``ferry:lease:{job}`` while a step runs, renewed in the background, released after."""
    key, token, ttl = keys.lease(job_id), uuid.uuid4().hex, lease_seconds()
    if not client.set(key, token, nx=True, ex=ttl):
        yield False
        return
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(client, key, token, ttl, stop), daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        _release(client, key, token)


def _renew(client: redis.Redis, key: str, token: str, ttl: int, stop: threading.Event) -> None:
    while not stop.wait(ttl / 3):
        try:
            if client.get(key) == token:
                client.expire(key, ttl)
        except redis.RedisError:
            pass  # the next tick tries again; the lease lapsing is the safe failure


# Delete the lease only if it is still ours (it may have lapsed and been taken by another worker).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _release(client: redis.Redis, key: str, token: str) -> None:
    client.eval(_RELEASE, 1, key, token)
