"""Submitting jobs through the Python API: validate each request (kind, connection,
parameters, file, callback URL), then store the valid ones and publish their first step."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

import redis
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers import queue, tracecontext
from producers.client_core import ClientCore
from producers.config import FerryConfig
from producers.errors import BatchClosed, ConfigError, Problem, SubmitError
from producers.files import FileRule, inspect_path, inspect_uri
from producers.kinds import KINDS, Kind, get_kind
from producers.notifications import CallbackRefused, check_url
from producers.params import Params
from producers.priority import TENANT_PATTERN, Priority, chosen
from producers.records import FileInfo, JobRecord, JobStatus, StepError, still_to_come
from producers.store import MAX_CHUNK, Created, NewJob

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

# Parameters nest a few levels at most (Assets attributes: 5). Deeper is hostile input, and past
# pydantic's serialization depth it would fail only when the job is stored.
MAX_PARAMS_DEPTH = 16

MAX_IDEMPOTENCY_KEY = 200  # characters: the field, and POST /jobs's Idempotency-Key header

NO_ROOTS_MESSAGE = (
    "this server has no [files] roots configured, so it accepts no file paths: set "
    "[files] roots = [...] in ferry.toml, or give an https:// uri"
)


class BatchSubmitted(list[Outcome]):
    """``submit_many``'s outcomes, one per request in order, and the batch they were submitted in."""

    batch: str = ""


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
        default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY,
        description="the same key returns the existing job instead of creating another")
    callback_url: str | None = Field(
        default=None, min_length=1, max_length=2000,
        description="POSTed a signed JSON webhook each time a run of the job ends "
                    "(https://, a public host; see [notifications])")
    batch: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="an open batch (POST /batches) the job joins; a bulk submission is a batch of its own")
    not_before: datetime | None = Field(
        default=None,
        description="ISO 8601 time (UTC without an offset): the job is scheduled and starts no earlier")
    priority: Priority | None = Field(
        default=None, description="high, normal or low: what runs next on its connection "
                                  "(default: normal; low for a batch's jobs)")
    tenant: str | None = Field(
        default=None, pattern=TENANT_PATTERN,
        description="whose job it is: within one priority, tenants take turns on a connection")


def checked_request(fields: dict[str, Any]) -> JobRequest:
    """A :class:`JobRequest` from the Python API's arguments; SubmitError naming each bad one."""
    try:
        return JobRequest.model_validate(fields)
    except ValidationError as exc:
        raise SubmitError([Problem(".".join(map(str, e["loc"])) or "request", e["msg"])
                           for e in exc.errors()]) from None


def with_defaults(requests: Sequence[JobRequest], priority: Priority | None,
                  tenant: str | None) -> Sequence[JobRequest]:
    """A batch's ``priority`` and ``tenant`` for each request that names none (a batch's jobs
    default to ``low``: ``placement``)."""
    if priority is None and tenant is None:
        return requests
    return [r.model_copy(update={"priority": r.priority or priority, "tenant": r.tenant or tenant}) for r in requests]


def placement(config: FerryConfig, request: JobRequest, in_batch: bool,
              not_before: float | None) -> dict[str, Any]:
    """A new job's priority (its default: normal, low in a batch), tenant and window (none for
    a scheduled job: its release decides, ``producers.store.ready``)."""
    return {"priority": chosen(request.priority, in_batch=in_batch), "tenant": request.tenant,
            "window": None if not_before is not None else config.window_of(request.connection)}


def waits(record: JobRecord, held: set[str]) -> bool:
    """A stored job that gets no message now: scheduled, or held in the ready sets."""
    return record.status == JobStatus.SCHEDULED or record.id in held


def request_field(field: str) -> str:
    """Name a problem's field as a JobRequest spells it: ``params.object``, not ``object``."""
    if not field:
        return "params"
    return field if field.split(".")[0] in JobRequest.model_fields else f"params.{field}"


class Submission(ClientCore):
    # ---- validation ------------------------------------------------------------------------
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
            parsed, param_problems = spec.parse_params(params or {})
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
               callback_url: str | None = None, batch: str | None = None,
               not_before: datetime | str | None = None, traceparent: str | None = None,
               priority: str | None = None, tenant: str | None = None) -> JobRecord:
        """``traceparent``: the caller's W3C trace context, which the job's trace continues."""
        return self.submit_checked(kind, connection=connection, file=file, uri=uri, params=params,
                                   idempotency_key=idempotency_key, callback_url=callback_url, batch=batch,
                                   not_before=not_before, traceparent=traceparent, priority=priority,
                                   tenant=tenant)[0]

    def submit_checked(self, kind: str, *, connection: str, file: str | None = None,
                       uri: str | None = None, params: dict[str, Any] | None = None,
                       idempotency_key: str | None = None,
                       require_file_roots: bool = False,
                       callback_url: str | None = None, batch: str | None = None,
                       not_before: datetime | str | None = None, traceparent: str | None = None,
                       priority: str | None = None, tenant: str | None = None) -> tuple[JobRecord, bool]:
        """Validate, store, enqueue (into the open ``batch``, if given; with a ``not_before``
        still to come, stored scheduled). Returns (record, created); created is False when the
        idempotency key named an existing job, which is then returned untouched."""
        request = checked_request({
            "kind": kind, "connection": connection, "file": file, "uri": uri, "params": params or {},
            "idempotency_key": idempotency_key, "callback_url": callback_url, "batch": batch,
            "not_before": not_before, "priority": priority, "tenant": tenant})
        return self.submit_request(request, require_file_roots=require_file_roots, traceparent=traceparent)

    def submit_request(self, request: JobRequest, *, require_file_roots: bool = False,
                       traceparent: str | None = None) -> tuple[JobRecord, bool]:
        """``submit_checked`` for a :class:`JobRequest` (an HTTP body or a manifest line)."""
        [outcome] = self._submit_all([request], require_file_roots=require_file_roots, batch=request.batch,
                                     traceparent=traceparent)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def submit_many(self, requests: Sequence[JobRequest], *, require_file_roots: bool = False,
                    chunk_size: int = 500, name: str | None = None, callback_url: str | None = None,
                    batch: str | None = None, traceparent: str | None = None, priority: Priority | None = None,
                    tenant: str | None = None) -> BatchSubmitted:
        """Submit ``requests`` as one batch (``name``, and ``callback_url``: told once when it
        completes): opened, filled and sealed here, or, with ``batch``, into that open batch,
        left open. The answer is a list with the ``batch`` id beside it (``with_defaults``).

        Validate every request, then store and enqueue the valid ones ``chunk_size`` per Lua call:
        each job's record, index entries, idempotency key and message written together or not at all.

        One outcome per request, in order: ``(record, created)`` (created is False when the
        idempotency key named an existing job, returned untouched), a :class:`SubmitError` (invalid;
        an :class:`IdempotencyConflict` when the key was used for a different job), or the error
        that kept a valid job's chunk from being stored (Redis unreachable), in which case none of
        that chunk's jobs exists."""
        problems = self._check_callback(callback_url) if batch is None else []
        if problems:
            raise SubmitError(problems)
        try:
            opened = batch or self.store.open_batch(name, callback_url)
        except (redis.RedisError, OSError) as exc:
            return BatchSubmitted([exc] * len(requests))  # the store is unreachable: nothing is stored
        requests = with_defaults(requests, priority, tenant)
        outcomes = BatchSubmitted(self._submit_all(requests, require_file_roots=require_file_roots,
                                              chunk_size=chunk_size, batch=opened,
                                              traceparent=traceparent))
        outcomes.batch = opened
        if batch is None:
            self.store.seal_batch(opened)
        return outcomes

    def _submit_all(self, requests: Sequence[JobRequest], *, require_file_roots: bool, chunk_size: int = 500,
                    batch: str | None = None, traceparent: str | None = None) -> list[Outcome]:
        """``submit_many``'s work, every job into the open ``batch`` (None: none), in one trace
        (``producers.tracecontext``) continuing ``traceparent``."""
        with tracecontext.submitting(self.config, traceparent, {"ferry.jobs": len(requests)}) as trace:
            checked = trace.stamp(self._validate_many(requests, require_file_roots, batch))
            return trace.ended(self.submit_prepared(checked, batch=batch, chunk_size=chunk_size))

    def prepare_many(self, requests: Sequence[JobRequest]) -> list[NewJob | SubmitError]:
        """Validate each request (each distinct file inspected once): the job to store, or why
        not. A manifest is checked whole this way before anything is stored (``submit_prepared``,
        into a batch: so its jobs get a batch's default priority, ``low``)."""
        return self._validate_many(requests, False, in_batch=True)

    def submit_prepared(self, checked: Sequence[NewJob | SubmitError], *, batch: str | None,
                        chunk_size: int = 500, progress: Callable[[int], None] | None = None) -> list[Outcome]:
        """Store and enqueue the jobs ``prepare_many`` made, into the open ``batch``; a refusal
        stays the outcome of its place. ``progress``: told how many jobs each stored chunk held.
        The chunks are pipelined (``JobStore.create_chunks``): each its own outcome."""
        checked = [replace(c, batch=batch) if isinstance(c, NewJob) and c.batch != batch else c for c in checked]
        valid = [(i, job) for i, job in enumerate(checked) if isinstance(job, NewJob)]
        chunk_size = max(1, min(chunk_size, MAX_CHUNK))
        parts = [valid[start:start + chunk_size] for start in range(0, len(valid), chunk_size)]
        stored: dict[int, Outcome] = {}
        # On the store's own Redis a job's message goes in the call that stores the job; with another
        # broker the jobs are stored, then published one by one (``held`` ones: by the dispatcher).
        in_store, held = queue.broker_is_store(self.config, self.location), set[str]()
        chunks = self.store.create_chunks([[job for _, job in part] for part in parts],
                                          message=self._message if in_store else None, batch=batch, held=held)
        with contextlib.closing(chunks):
            for part, chunk in zip(parts, chunks, strict=True):
                outcomes: list[Outcome]
                if isinstance(chunk, BatchClosed):
                    outcomes = [chunk] * len(part)
                elif isinstance(chunk, redis.RedisError | OperationalError | OSError):
                    # kombu (building the first message's template) wraps the Redis error it met.
                    cause = chunk.__cause__ if isinstance(chunk, OperationalError) else None
                    outcomes = [cause if isinstance(cause, redis.RedisError) else chunk] * len(part)
                elif isinstance(chunk, Exception):
                    raise chunk
                else:
                    outcomes = list(chunk)
                if not in_store:
                    outcomes = [self._publish_alone(o, held) for o in outcomes]
                stored.update((i, outcome) for (i, _), outcome in zip(part, outcomes, strict=True))
                if progress is not None:
                    progress(len(part))
        return [stored[i] if isinstance(c, NewJob) else c for i, c in enumerate(checked)]

    def _validate_many(self, requests: Sequence[JobRequest], require_file_roots: bool,
                       batch: str | None = None, in_batch: bool = False) -> list[NewJob | SubmitError]:
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
            not_before = still_to_come(request.not_before)
            where = placement(self.config, request, in_batch or batch is not None, not_before)
            return NewJob(kind=spec.name, connection=request.connection, steps=spec.step_names,
                          params=parsed.model_dump(mode="json", exclude_none=True), file=info,
                          idempotency_key=request.idempotency_key, callback_url=request.callback_url,
                          batch=batch, not_before=not_before, **where)

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
        """A new job's Celery message, written by the script that stores the job (none for a
        scheduled job: the releaser publishes it when due)."""
        if job.not_before is not None:
            return "", ""
        target = queue.queue_of(self.config.connection(job.connection))
        return self._messages.first(job_id, get_kind(job.kind), target)

    def _publish_alone(self, outcome: Outcome, held: set[str]) -> Outcome:
        """A stored job's chain, published through another broker (RabbitMQ, another Redis), unless
        ``held`` (the dispatcher publishes it). A job the broker refuses stays failed and replayable."""
        if not isinstance(outcome, tuple) or not outcome[1] or waits(outcome[0], held):
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
