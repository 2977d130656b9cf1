"""The Python API other systems use to hand Ferry jobs::

    from producers import Ferry
    ferry = Ferry()                      # REDIS_URL / ferry.toml / the embedded Redis
    job = ferry.submit("assets-attachment", connection="acme", file="/data/x.pdf",
                       params={"object": "88", "comment": "scan"}, idempotency_key="scan-88-x")
    ferry.wait(job.id, timeout=60)

No destination credentials are needed or read here: a job names its connection, and the worker
holds the secret.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers import events, queue
from producers.audit import audit
from producers.config import ConnectionConfig, FerryConfig, load_config
from producers.embedded import RedisLocation, resolve_redis
from producers.errors import ConfigError, JobNotFound, Problem, SubmitError
from producers.files import FileRule, inspect_path, inspect_uri
from producers.kinds import KINDS, Kind, get_kind
from producers.notifications import CallbackRefused, check_url
from producers.params import Params
from producers.records import DeliveryRecord, FileInfo, JobRecord, StepError
from producers.store import FINISHED_ALREADY, CancelOutcome, ConnectionState, Created, Filters, JobStore, NewJob, Page

# A batch inspects its first FILE_THREADS_FROM file paths inline, and the rest on FILE_THREADS
# threads (this many per task) only if those waited for the disk SLOW_FILE_WAIT seconds or more
# each: on a local disk a check is ~100 µs of CPU and threads only add GIL hand-offs (measured
# slower), on a network disk a stat and a read wait far longer than they compute.
FILE_THREADS_FROM = 64
FILE_THREADS = 8
SLOW_FILE_WAIT = 0.0005

# Files a batch has inspected: (path, the kind's file rule) -> what ``_check_file`` found.
Inspected = dict[tuple[str, FileRule], tuple[FileInfo | None, list[Problem]]]

# What submitting one job came to: (record, created), SubmitError (refused), or the error that
# kept it from being stored.
Outcome = Created | Exception

READY_SECONDS = 30.0  # a worker whose last heartbeat is older is not counted as alive
# Parameters nest a few levels at most (Assets attributes: 5). Deeper is hostile input, and past
# pydantic's serialization depth it would fail only when the job is stored.
MAX_PARAMS_DEPTH = 16

NO_ROOTS_MESSAGE = (
    "this server has no [files] roots configured, so it accepts no file paths: set "
    "[files] roots = [...] in ferry.toml, or give an https:// uri"
)


class JobRequest(BaseModel):
    """One job as another system hands it over: the body of ``POST /jobs`` and one line of a
    batch manifest. ``params`` uses the CLI option names in snake_case."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="job kind, e.g. assets-attachment")
    connection: str = Field(description="connection name from ferry.toml")
    file: str | None = Field(default=None, description="a path under one of the configured roots")
    uri: str | None = Field(default=None, description="an https:// URL the worker streams from")
    params: dict[str, Any] = Field(
        default_factory=dict, description="the kind's parameters (CLI option names, snake_case)")
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="the same key returns the existing job instead of creating another")
    callback_url: str | None = Field(
        default=None, min_length=1, max_length=2000,
        description="POSTed a signed JSON webhook each time a run of the job ends "
                    "(https://, a public host; see [notifications])")


def request_field(field: str) -> str:
    """Name a problem's field as a JobRequest spells it: ``params.object``, not ``object``."""
    if not field:
        return "params"
    return field if field.split(".")[0] in JobRequest.model_fields else f"params.{field}"


class Ferry:
    def __init__(
        self,
        redis_url: str | None = None,
        *,
        config: FerryConfig | None = None,
        config_path: str | None = None,
        redis_client: redis.Redis | None = None,
    ) -> None:
        """``redis_client``: the job store's connection, when the caller has one (a test's
        fakeredis); jobs are then still published to ``redis_url`` / ferry.toml / the embedded
        Redis, which is only looked up when the first job is published."""
        self.config = config if config is not None else load_config(config_path)
        self._redis_url = redis_url
        self._location: RedisLocation | None = None
        self.redis = redis_client if redis_client is not None else redis.Redis.from_url(
            self.location.url, decode_responses=True)
        self.store = JobStore(
            self.redis,
            retention_seconds=self.config.retention_seconds,
            idempotency_seconds=self.config.idempotency_seconds,
            events_max_length=self.config.events.max_length,
        )
        self._celery: Celery | None = None
        self._chain_messages: queue.ChainMessages | None = None

    @property
    def location(self) -> RedisLocation:
        """Where the broker (and, without a ``redis_client``, the store) is."""
        if self._location is None:
            self._location = (RedisLocation.from_url(self._redis_url) if self._redis_url
                              else resolve_redis(self.config.redis_url))
        return self._location

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = queue.make_celery(self.location, self.config, name="ferry-producer")
        return self._celery

    # ---- validation ----------------------------------------------------------------------
    def validate(
        self,
        kind: str,
        *,
        connection: str,
        file: str | None = None,
        uri: str | None = None,
        params: dict[str, Any] | None = None,
        require_file_roots: bool = False,
        callback_url: str | None = None,
    ) -> tuple[Kind, Params, FileInfo | None]:
        """Check everything a job needs before it is stored; raise SubmitError listing every
        problem.

        ``require_file_roots``: refuse every path when ferry.toml names no roots (the HTTP API
        must not read arbitrary server paths; a local CLI user may).
        """
        return self._validate(kind, connection=connection, file=file, uri=uri, params=params,
                              require_file_roots=require_file_roots, callback_url=callback_url)

    def _validate(self, kind: str, *, connection: str, file: str | None, uri: str | None,
                  params: dict[str, Any] | None, require_file_roots: bool, callback_url: str | None,
                  inspected: Inspected | None = None) -> tuple[Kind, Params, FileInfo | None]:
        """``validate``; ``inspected``: files already inspected (by ``_inspect_all``)."""
        spec = get_kind(kind)
        problems = self._check_connection(spec, connection)
        if _nests_deeper(params or {}, MAX_PARAMS_DEPTH):
            parsed, param_problems = None, [Problem("params", f"nested more than {MAX_PARAMS_DEPTH} levels deep")]
        else:
            parsed, param_problems = _parse_params(spec, params or {})
        problems += param_problems
        if file and require_file_roots and not self.config.file_roots:
            info, file_problems = None, [Problem("file", NO_ROOTS_MESSAGE)]
        else:
            found = (inspected.get((file, spec.file)) if inspected is not None and file and not uri
                     and spec.file is not None else None)
            if found is not None:
                # The same file in the same batch: inspected once; each job its own FileInfo.
                info, file_problems = (found[0].model_copy() if found[0] else None), list(found[1])
            else:
                info, file_problems = self._check_file(spec, file, uri)
        problems += file_problems
        problems += self._check_callback(callback_url)
        if not problems and spec.check is not None and parsed is not None:
            problems += spec.check(parsed, info)
        if problems or parsed is None:
            raise SubmitError(problems)
        return spec, parsed, info

    def _check_connection(self, spec: Kind, connection: str) -> list[Problem]:
        try:
            conn = self.config.connection(connection)
        except ConfigError as exc:
            return [Problem("connection", str(exc))]
        if conn.service != spec.service:
            return [Problem("connection", f"{connection!r} is a {conn.service} connection; "
                                          f"{spec.name} needs {spec.service}")]
        return []

    def _check_callback(self, url: str | None) -> list[Problem]:
        if url is None:
            return []
        try:
            check_url(url, self.config.notifications)
        except CallbackRefused as exc:
            return [Problem("callback_url", str(exc))]
        return []

    def _check_file(self, spec: Kind, file: str | None, uri: str | None) -> tuple[FileInfo | None, list[Problem]]:
        rule = spec.file
        if rule is None:
            if file or uri:
                return None, [Problem("file", f"{spec.name} takes no file")]
            return None, []
        if file and uri:
            return None, [Problem("file", "give a file or a uri, not both")]
        try:
            if uri:
                return inspect_uri(uri, rule, self.config)
            if file:
                return inspect_path(file, rule, self.config.file_roots)
        except (OSError, ValueError, RuntimeError) as exc:
            # The OS or the URL parser refused the text itself: a NUL byte, a name too long,
            # ~nobody's home, [not-an-ip]. Bad input like any other, not a server error.
            field, what = ("uri", "URL") if uri else ("file", "path")
            return None, [Problem(field, f"not a usable {what}: {exc}")]
        if rule.required:
            return None, [Problem("file", "a file is required" + (" (or uri)" if rule.uri_allowed else ""))]
        return None, []

    # ---- submission ----------------------------------------------------------------------
    def submit(self, kind: str, *, connection: str, file: str | None = None, uri: str | None = None,
               params: dict[str, Any] | None = None, idempotency_key: str | None = None,
               callback_url: str | None = None) -> JobRecord:
        record, _ = self.submit_checked(kind, connection=connection, file=file, uri=uri,
                                        params=params, idempotency_key=idempotency_key,
                                        callback_url=callback_url)
        return record

    def submit_checked(self, kind: str, *, connection: str, file: str | None = None,
                       uri: str | None = None, params: dict[str, Any] | None = None,
                       idempotency_key: str | None = None,
                       require_file_roots: bool = False,
                       callback_url: str | None = None) -> tuple[JobRecord, bool]:
        """Validate, store, enqueue. Returns (record, created); created is False when the
        idempotency key named an existing job, which is then returned untouched."""
        request = JobRequest(kind=kind, connection=connection, file=file, uri=uri, params=params or {},
                             idempotency_key=idempotency_key, callback_url=callback_url)
        [outcome] = self.submit_many([request], require_file_roots=require_file_roots)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def submit_request(self, request: JobRequest, *,
                       require_file_roots: bool = False) -> tuple[JobRecord, bool]:
        """``submit_checked`` for a :class:`JobRequest` (an HTTP body or a manifest line)."""
        [outcome] = self.submit_many([request], require_file_roots=require_file_roots)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def submit_many(self, requests: Sequence[JobRequest], *, require_file_roots: bool = False,
                    chunk_size: int = 500) -> list[Outcome]:
        """Validate every request, then store and enqueue the valid ones ``chunk_size`` per Redis
        MULTI: each job's record, index entries, idempotency key and Celery message are written
        together or not at all, in one round trip per chunk.

        One outcome per request, in order: ``(record, created)`` (created is False when the
        idempotency key named an existing job, returned untouched), a :class:`SubmitError` (invalid;
        an :class:`IdempotencyConflict` when the key was used for a different job), or the error
        that kept a valid job's chunk from being stored (Redis unreachable), in which case none of
        that chunk's jobs exists."""
        checked = self._validate_many(requests, require_file_roots)
        valid = [(i, job) for i, job in enumerate(checked) if isinstance(job, NewJob)]
        stored: dict[int, Outcome] = {}
        # On the store's own Redis a job's message goes in the MULTI that stores the job; with
        # another broker the jobs are stored, then published through it one by one.
        in_store = queue.broker_is_store(self.config, self.location)
        for start in range(0, len(valid), chunk_size):
            part = valid[start:start + chunk_size]
            try:
                outcomes: list[Outcome] = list(self.store.create_many(
                    [job for _, job in part], message=self._message if in_store else None,
                    chunk_size=chunk_size))
            except (redis.RedisError, OperationalError, OSError) as exc:
                # kombu (building the first message's template) wraps the Redis error it met.
                cause = exc.__cause__ if isinstance(exc, OperationalError) else None
                outcomes = [cause if isinstance(cause, redis.RedisError) else exc] * len(part)
            if not in_store:
                outcomes = [self._publish_alone(o) for o in outcomes]
            stored.update((i, outcome) for (i, _), outcome in zip(part, outcomes, strict=True))
        return [stored[i] if isinstance(c, NewJob) else c for i, c in enumerate(checked)]

    def _validate_many(self, requests: Sequence[JobRequest], require_file_roots: bool) -> list[NewJob | SubmitError]:
        """``validate`` each request, each distinct file inspected once (``_inspect_all``)."""
        inspected = self._inspect_all(requests, require_file_roots)

        def check(request: JobRequest) -> NewJob | SubmitError:
            try:
                spec, parsed, info = self._validate(
                    request.kind, connection=request.connection, file=request.file, uri=request.uri,
                    params=request.params, require_file_roots=require_file_roots,
                    callback_url=request.callback_url, inspected=inspected)
            except SubmitError as exc:
                return exc
            return NewJob(kind=spec.name, connection=request.connection, steps=spec.step_names,
                          params=parsed.model_dump(mode="json", exclude_none=True), file=info,
                          idempotency_key=request.idempotency_key, callback_url=request.callback_url)

        return [check(r) for r in requests]

    def _inspect_all(self, requests: Sequence[JobRequest], require_file_roots: bool) -> Inspected:
        """Inspect each distinct file path of a batch once, on a few threads when there are many
        (a stat and an 8 KiB read each, which on a network disk wait far longer than they
        compute). The rest of validation runs on the calling thread."""
        if require_file_roots and not self.config.file_roots:
            return {}  # every path is refused without a look
        wanted: dict[tuple[str, FileRule], Kind] = {}
        for r in requests:
            spec = KINDS.get(r.kind)
            if r.file and not r.uri and spec is not None and spec.file is not None:
                wanted.setdefault((r.file, spec.file), spec)

        def inspect(item: tuple[tuple[str, FileRule], Kind]) -> tuple[FileInfo | None, list[Problem]]:
            (path, _), spec = item
            return self._check_file(spec, path, None)

        items = list(wanted.items())
        probe, rest = items[:FILE_THREADS_FROM], items[FILE_THREADS_FROM:]
        started, cpu = time.perf_counter(), time.thread_time()
        found = {key: inspect((key, spec)) for key, spec in probe}
        waited = (time.perf_counter() - started) - (time.thread_time() - cpu)  # off CPU: the disk
        if not rest or waited < SLOW_FILE_WAIT * len(probe):
            found.update((key, inspect((key, spec))) for key, spec in rest)
            return found
        with ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="ferry-inspect") as pool:
            found.update(zip((key for key, _ in rest), pool.map(inspect, rest, chunksize=FILE_THREADS_FROM),
                             strict=True))
        return found

    def _message(self, job_id: str, job: NewJob) -> tuple[str, str]:
        """A new job's Celery message, written by the script that stores the job."""
        target = queue.queue_of(self.config.connection(job.connection))
        return self._messages.first(job_id, get_kind(job.kind), target)

    def _publish_alone(self, outcome: Outcome) -> Outcome:
        """A stored job's chain, published through another broker (RabbitMQ, another Redis). A
        job the broker refuses stays stored, failed and replayable (``enqueue``): its record says so."""
        if not isinstance(outcome, tuple) or not outcome[1]:
            return outcome
        record = outcome[0]
        try:
            self.enqueue(record.id, get_kind(record.kind))
        except Exception:
            return self.store.get(record.id), True
        return outcome

    @property
    def _messages(self) -> queue.ChainMessages:
        if self._chain_messages is None:
            self._chain_messages = queue.ChainMessages(self.celery)
        return self._chain_messages

    def enqueue(self, job_id: str, spec: Kind, from_step: str | None = None) -> None:
        """Publish the job's chain (from ``from_step``). If the broker cannot take it, the job is
        marked failed at that step, ready for replay, and the error is raised."""
        try:
            queue.enqueue(self.celery, job_id, spec, from_step)
        except Exception as exc:  # broker unreachable: keep the job, failed and ready for replay
            step = from_step or spec.step_names[0]
            self.store.mark_failed(job_id, step, StepError(
                step=step, message=f"could not enqueue: {exc}", retryable=True))
            raise

    # ---- reads ---------------------------------------------------------------------------
    def status(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.1) -> JobRecord:
        """Block until the job ends (succeeded or failed). Polls the store; never a Celery result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.store.get(job_id)
            if record.done:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {record.status} after {timeout}s")
            time.sleep(poll)

    def jobs(self, *, status: str | None = None, kind: str | None = None,
             connection: str | None = None, limit: int = 50, cursor: str | None = None) -> Page:
        return self.store.list(status=status, kind=kind, connection=connection, limit=limit, cursor=cursor)

    def notify(self, job_id: str) -> DeliveryRecord:
        """Deliver an ended job's webhook again (a new delivery, due now; a worker sends it)."""
        return self.store.redeliver(job_id)

    def events(self, after_id: str = events.START, *, job: str | None = None, kind: str | None = None,
               connection: str | None = None, follow: bool = False) -> Iterator[events.Event]:
        """The job events after ``after_id`` (default: the oldest kept), filtered; with
        ``follow``, then each new one as it happens, without end."""
        filters = events.EventFilters(job=job, kind=kind, connection=connection)
        if follow:
            yield from events.follow(self.redis, after_id, filters)
            return
        position = after_id
        while True:
            batch = events.read(self.redis, position, filters)
            yield from batch.events
            if batch.position == position:
                return
            position = batch.position

    # ---- operator controls -----------------------------------------------------------------
    def cancel(self, job_id: str, *, by: str = "python") -> CancelOutcome:
        """Stop one job (``JobStore.cancel``): cancelled now, after the step running now
        (``cancelling``), or ``finished`` already. Raises JobNotFound. Logs an audit line."""
        outcome = self.store.cancel(job_id, by)
        audit("cancel", by, target=job_id, jobs=int(outcome.outcome != FINISHED_ALREADY),
              outcome=outcome.outcome)
        return outcome

    def cancel_many(self, filters: Filters, *, ids: Sequence[str] | None = None, by: str = "python",
                    dry_run: bool = False, limit: int | None = None) -> CancelSummary:
        """Cancel ``ids``, or every job matching ``filters`` (``dry_run``: only count them)."""
        target: dict[str, Any] = filters.as_query() if ids is None else {"ids": len(ids)}
        ids = self.store.select(filters, limit=limit).ids if ids is None else list(ids)
        summary = CancelSummary(matched=len(ids), dry_run=dry_run, filters=target)
        if dry_run:
            return summary
        for job_id in ids:
            try:
                summary.add(self.store.cancel(job_id, by).outcome)
            except JobNotFound:
                summary.add(FINISHED_ALREADY)  # purged or expired meanwhile: nothing to stop
        audit("cancel", by, target=target, jobs=summary.cancelled + summary.cancelling,
              matched=summary.matched)
        return summary

    def pause(self, connection: str, *, by: str = "python") -> bool:
        """Hold every request on ``connection`` (its steps park; no attempt is spent) until
        ``resume``; survives worker restarts. False if it was paused already."""
        self.config.connection(connection)  # ConfigError for a name ferry.toml does not know
        changed = self.store.pause_connection(connection, by)
        audit("pause", by, target=connection, jobs=0, changed=changed)
        return changed

    def resume(self, connection: str, *, by: str = "python") -> ResumeOutcome:
        """Lift the pause and re-publish the steps parked meanwhile, each from where it stopped."""
        self.config.connection(connection)
        was_paused, parked = self.store.resume_connection(connection)
        republished = 0
        for i, (job_id, step) in enumerate(parked):
            record = self.store.find(job_id)
            if record is None or record.done:
                continue  # purged, or cancelled while it waited
            try:
                queue.enqueue(self.celery, job_id, get_kind(record.kind), step)
            except Exception:
                self.store.park_again(connection, parked[i:])  # the next resume tries again
                raise
            republished += 1
        audit("resume", by, target=connection, jobs=republished, changed=was_paused)
        return ResumeOutcome(connection, was_paused, republished)

    def connections(self) -> list[dict[str, Any]]:
        """Each configured connection: service, queue, limits, pause, 429 pause, parked steps and
        jobs queued / running / failed."""
        names = sorted(self.config.connections)
        states = self.store.connection_states(names)
        return [_connection_view(self.config.connection(n), states[n]) for n in names]

    def workers(self) -> list[dict[str, Any]]:
        """The live workers (fresh heartbeats), with the steps they run now."""
        return self.store.workers()

    def readiness(self, fresh_seconds: float = READY_SECONDS) -> tuple[bool, str]:
        """Whether some worker beat within ``fresh_seconds``, and why not."""
        workers = [w for w in self.store.workers() if not w.get("parent")]
        if not workers:
            return False, "no worker has sent a heartbeat: start one (ferry worker)"
        newest = min(_age(w.get("last_heartbeat")) for w in workers)
        if newest > fresh_seconds:
            return False, f"no fresh worker heartbeat: the newest is {newest:.0f} s old"
        return True, f"{len(workers)} worker(s) alive"

    def close(self) -> None:
        if self._chain_messages is not None:
            self._chain_messages.close()
        self.redis.close()


@dataclass
class CancelSummary:
    matched: int
    dry_run: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    cancelled: int = 0
    cancelling: int = 0  # a step ran: cancelled once it ends
    finished: int = 0  # had ended already

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResumeOutcome:
    connection: str
    was_paused: bool
    republished: int  # parked steps sent on their way again

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _connection_view(conn: ConnectionConfig, state: ConnectionState) -> dict[str, Any]:
    return {"name": state.name, "service": conn.service, "queue": queue.queue_of(conn),
            "paused": state.paused is not None,
            "paused_by": (state.paused or {}).get("by"), "paused_at": (state.paused or {}).get("at"),
            "rate_limit": conn.rate_limit, "max_in_flight": conn.max_in_flight,
            "throttled_until": state.throttled_until, "parked": state.parked, "jobs": state.jobs}


def _age(at: str | None) -> float:
    if not at:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(at.replace("Z", "+00:00"))).total_seconds()
def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether lists and dicts in ``value`` nest more than ``limit`` levels (no recursion: the
    input may be deeper than Python's stack)."""
    if isinstance(value, dict) and not any(isinstance(v, dict | list | tuple) for v in value.values()):
        return bool(value) and limit < 1  # flat parameters, the common case: one level
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list | tuple) else ()
        if children and depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _parse_params(spec: Kind, params: dict[str, Any]) -> tuple[Params | None, list[Problem]]:
    try:
        return spec.params.model_validate(params), []
    except ValidationError as exc:
        return None, [
            Problem(".".join(str(x) for x in e["loc"]) or "params", _message(e))
            for e in exc.errors()
        ]


def _message(error: Any) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")
