"""One Celery task per declared step name (``ferry.step.<name>``), all running ``run_step``.

The message carries only the job id; the step is the task's name. A step costs two Redis calls
of Ferry's own, each one Lua script (``producers.store``): ``begin_step`` takes the job's lease,
reads the job and marks the step running (a redelivered message for a step that already
succeeded, or a job that ended, does nothing; a second copy of the message while the lease is
held waits instead of running the step twice at once; a job whose cancel was requested is
cancelled there, and a step on a paused connection is parked, neither spending an attempt,
``worker.controls``); the step's end (``finish_step``,
``retry_step``, ``mark_failed``) records the outcome, releases the lease and writes the next
message, the next step's or the delayed retry's (``producers.queue.StepPublisher``), so a step
recorded as ended always has its next message. Outcomes: the step's output is recorded and the
next step published; a retryable error is retried after the server's delay or a backoff, until
the attempt budget is spent; anything else fails the job at this step, with the destination's
message, publishes nothing more and ends the task as a failure (``controls.StepFailed``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import redis
from celery import Celery, Task
from celery.exceptions import Ignore

from producers.errors import ConfigError
from producers.kinds import KINDS, all_step_names
from producers.queue import TASK_PREFIX, StepPublisher, queue_for_connection, task_name
from producers.records import JobRecord, Progress, StepError, StepStatus
from producers.store import JobState, JobStore, Lease, Outgoing
from worker import controls, dispatch, metrics, progress, telemetry
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
    # A message published before steps published their successors carries the rest of the chain;
    # Celery would publish that after this task too, next to the store's own publish.
    task.request.chain = None
    rt = runtime()
    lease = Lease.new(lease_seconds())
    begun = rt.store.begin_step(job_id, step, lease)
    if begun.outcome == "missing":
        get_logger(job_id=job_id, step=step).warning("job not found (purged or expired); skipping")
        raise Ignore()
    if begun.outcome == "busy":
        assert begun.job is not None
        raise task.retry(countdown=LEASE_BUSY_RETRY, queue=queue_for_connection(rt.config, begun.job.connection))
    if begun.outcome in ("cancel", "parked"):
        assert begun.job is not None
        controls.stopped(rt, begun.job, step, begun.outcome)
    if begun.state is None or begun.job is None:
        return  # done (a redelivered message: the next one was written with this step's end) or ended
    metrics.begin_step(begun.job.kind, step, begun.job.connection)
    metrics.first_start(begun.job, step, begun.state.step.attempts)
    with telemetry.step_span(rt.config, begun.job, step, begun.state.step.attempts), \
            LEASES.held(rt.store, job_id, lease):
        Attempt(task, rt, begun.job, begun.state, lease, paused_until=begun.paused_until).run()


class Attempt:
    """One attempt at one step of one job, from the moment its start is recorded."""

    def __init__(self, task: Task, rt: Runtime, job: JobRecord, state: JobState, lease: Lease, *,
                 paused_until: str | None = None) -> None:
        self.task, self.rt, self.job, self.state, self.lease = task, rt, job, state, lease
        self.paused_until = paused_until  # the connection's 429 pause, as the step's start read it
        self.step = state.step.name
        self.attempts = state.step.attempts
        self.log = get_logger(job_id=job.id, kind=job.kind, step=self.step, connection=job.connection,
                              attempt=self.attempts)
        self.started = time.monotonic()

    @property
    def store(self) -> JobStore:
        return self.rt.store

    @property
    def publisher(self) -> StepPublisher:
        return self.rt.publisher(self.task.app)

    def run(self) -> None:
        outputs = {s.name: dict(s.result or {}) for s in self.job.steps
                   if s.status in (StepStatus.SUCCEEDED, StepStatus.REUSED)}
        self.log.info("step started")
        _, problems = KINDS[self.job.kind].parse_params(self.job.params)
        if problems:  # the record skipped submit's validation (written by hand, an older Ferry)
            self._fail(PermanentError("parameters refused by the worker, nothing was sent: "
                                      + "; ".join(map(str, problems)), step=self.step))
        try:
            self.rt.note_pause(self.job.connection, self.paused_until)
            ctx = StepContext(job=self.job, step=self.step, attempt=self.attempts, outputs=outputs,
                              store=self.store, clients=self.rt.clients(self.job.connection))
            with progress.tracking(self._write_progress):
                result = _run(ctx, self.log)
        except RetryableError as exc:
            self._retry_or_fail(exc)
        except DestinationError as exc:
            self._fail(exc)
        except ConfigError as exc:
            # The job names a connection this worker's ferry.toml lacks: the file changed after
            # the worker read it. Retrying cannot help; the record says what will.
            self._fail(PermanentError(
                f"{exc} in the ferry.toml this worker read at start ({self.rt.config.path or 'none'}): "
                "restart the workers (ferry.toml changed)", step=self.step))
        except redis.RedisError:
            # The store is unreachable past the client's retries: nothing can be recorded, so the
            # job is not failed for it. It stays running; the reaper re-runs the step once its
            # lease lapses.
            self._timed().exception("job store unreachable; the step will be run again")
            raise
        except Exception as exc:  # a bug or an unexpected answer: keep the job, failed, for replay
            self._timed().exception("step crashed")
            self._fail(PermanentError(f"internal error: {type(exc).__name__}: {exc}", step=self.step))
        self._succeed(outputs, result)

    def _write_progress(self, figures: Progress, final: bool) -> None:
        """Best effort: an upload never fails for its progress figures (Redis busy or gone)."""
        try:
            self.store.record_progress(self.job, self.step, figures, self.lease)
        except redis.RedisError:
            self.log.warning("upload progress not recorded", final=final)

    def _succeed(self, outputs: dict[str, dict[str, Any]], result: dict[str, Any]) -> None:
        kind = KINDS[self.job.kind]
        names = kind.step_names
        last = self.step == names[-1]
        then = Outgoing() if last else self._next(names[names.index(self.step) + 1])
        job_result = kind.result_of({**outputs, self.step: result}) if last else None
        log = self._timed()
        if not self.store.finish_step(self.job.id, self.step, result, state=self.state, lease=self.lease,
                                      job_result=job_result, then=then):
            log.warning("lease lost while the step ran; another worker has the step")
            return
        self.publisher.deliver(then, self.store)
        log.info("step succeeded")
        if last:
            log.info("job succeeded")
            dispatch.after_end(self.store, self.publisher, self.rt.config, self.job.connection)

    def _retry_or_fail(self, exc: RetryableError) -> NoReturn:
        if self.attempts >= self.rt.config.max_attempts and not isinstance(exc, Throttled):
            self._fail(exc, note=f" (gave up after {self.attempts} attempts)")
        delay = exc.retry_after if exc.retry_after is not None else backoff_delay(
            self.attempts, base=self.rt.config.retry_backoff_seconds)
        then = self.publisher.outgoing(self.job.id, self.job.connection, self.step, countdown=delay,
                                       retries=(self.task.request.retries or 0) + 1)
        if self.store.retry_step(self.job.id, self.step, _step_error(exc, self.step, retryable=True), delay,
                                 state=self.state, lease=self.lease, then=then):
            self.publisher.deliver(then, self.store)
        metrics.retried()
        self._timed().warning("step will be retried", status=exc.status, delay=round(delay, 2),
                              error=redact_text(exc.message), server_delay=exc.retry_after is not None)
        raise Ignore()  # this message is done: the retry is its own message, delayed

    def _fail(self, exc: DestinationError, note: str = "") -> NoReturn:
        error = _step_error(exc, self.step, retryable=isinstance(exc, RetryableError))
        error.message += note
        self.store.mark_failed(self.job.id, self.step, error, state=self.state, lease=self.lease)
        self._timed().error("job failed", status=exc.status, error=error.message)
        dispatch.after_end(self.store, self.publisher, self.rt.config, self.job.connection)
        # A task failure acknowledges the message and shows as FAILURE in Flower; no next step
        # was published, so the job stops here (the record keeps the failure).
        raise controls.StepFailed(error.message)

    def _next(self, step: str) -> Outgoing:
        return self.publisher.outgoing(self.job.id, self.job.connection, step)

    def _timed(self) -> Any:
        """The log with how long the attempt took: every event that ends an attempt carries it."""
        return self.log.bind(duration_ms=round((time.monotonic() - self.started) * 1000, 1))


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


def _step_error(exc: DestinationError, step: str, retryable: bool) -> StepError:
    return StepError(step=exc.step or step, status=exc.status, message=redact_text(exc.message),
                     retryable=retryable)


class LeaseKeeper:
    """Renews the leases this process holds, every third of their length, on one thread for all
    of them (not a thread per step: starting and joining one cost more than the step's Redis)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[JobStore, str, Lease]] = {}  # by token
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def held(self, store: JobStore, job_id: str, lease: Lease) -> Iterator[None]:
        with self._lock:
            self._held[lease.token] = (store, job_id, lease)
            if self._thread is None or not self._thread.is_alive():  # first use in this process
                self._thread = threading.Thread(target=self._renew, args=(lease.seconds / 3,),
                                                name="ferry-leases", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                del self._held[lease.token]

    def _renew(self, every: float) -> None:
        while True:
            time.sleep(every)
            with self._lock:
                held = list(self._held.values())
            for store, job_id, lease in held:
                # A failed round is tried again next time; the lease lapsing is the safe failure.
                with contextlib.suppress(redis.RedisError):
                    store.renew_lease(job_id, lease)


LEASES = LeaseKeeper()
