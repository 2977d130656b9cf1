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
from typing import Any

import redis
from celery import Celery
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers import queue
from producers.config import FerryConfig, load_config
from producers.embedded import RedisLocation, resolve_redis
from producers.errors import ConfigError, Problem, SubmitError
from producers.files import inspect_path, inspect_uri
from producers.kinds import Kind, get_kind
from producers.params import Params
from producers.records import FileInfo, JobRecord, StepError
from producers.store import JobStore, Page

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
    ) -> None:
        self.config = config if config is not None else load_config(config_path)
        self.location: RedisLocation = (
            RedisLocation.from_url(redis_url) if redis_url else resolve_redis(self.config.redis_url)
        )
        self.redis = redis.Redis.from_url(self.location.url, decode_responses=True)
        self.store = JobStore(
            self.redis,
            retention_seconds=self.config.retention_seconds,
            idempotency_seconds=self.config.idempotency_seconds,
        )
        self._celery: Celery | None = None

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
    ) -> tuple[Kind, Params, FileInfo | None]:
        """Check everything a job needs before it is stored; raise SubmitError listing every
        problem.

        ``require_file_roots``: refuse every path when ferry.toml names no roots (the HTTP API
        must not read arbitrary server paths; a local CLI user may).
        """
        spec = get_kind(kind)
        problems = self._check_connection(spec, connection)
        parsed, param_problems = _parse_params(spec, params or {})
        problems += param_problems
        if file and require_file_roots and not self.config.file_roots:
            info, file_problems = None, [Problem("file", NO_ROOTS_MESSAGE)]
        else:
            info, file_problems = self._check_file(spec, file, uri)
        problems += file_problems
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

    def _check_file(self, spec: Kind, file: str | None, uri: str | None) -> tuple[FileInfo | None, list[Problem]]:
        rule = spec.file
        if rule is None:
            if file or uri:
                return None, [Problem("file", f"{spec.name} takes no file")]
            return None, []
        if file and uri:
            return None, [Problem("file", "give a file or a uri, not both")]
        if uri:
            return inspect_uri(uri, rule)
        if file:
            return inspect_path(file, rule, self.config.file_roots)
        if rule.required:
            return None, [Problem("file", "a file is required" + (" (or uri)" if rule.uri_allowed else ""))]
        return None, []

    # ---- submission ----------------------------------------------------------------------
    def submit(self, kind: str, *, connection: str, file: str | None = None, uri: str | None = None,
               params: dict[str, Any] | None = None, idempotency_key: str | None = None) -> JobRecord:
        record, _ = self.submit_checked(kind, connection=connection, file=file, uri=uri,
                                        params=params, idempotency_key=idempotency_key)
        return record

    def submit_checked(self, kind: str, *, connection: str, file: str | None = None,
                       uri: str | None = None, params: dict[str, Any] | None = None,
                       idempotency_key: str | None = None,
                       require_file_roots: bool = False) -> tuple[JobRecord, bool]:
        """Validate, store, enqueue. Returns (record, created); created is False when the
        idempotency key named an existing job, which is then returned untouched."""
        spec, parsed, info = self.validate(kind, connection=connection, file=file, uri=uri,
                                           params=params, require_file_roots=require_file_roots)
        record, created = self.store.create(
            kind=spec.name,
            connection=connection,
            steps=spec.step_names,
            params=parsed.model_dump(mode="json", exclude_none=True),
            file=info,
            idempotency_key=idempotency_key,
        )
        if created:
            self.enqueue(record.id, spec)
        return record, created

    def submit_request(self, request: JobRequest, *,
                       require_file_roots: bool = False) -> tuple[JobRecord, bool]:
        """``submit_checked`` for a :class:`JobRequest` (an HTTP body or a manifest line)."""
        return self.submit_checked(
            request.kind, connection=request.connection, file=request.file, uri=request.uri,
            params=request.params, idempotency_key=request.idempotency_key,
            require_file_roots=require_file_roots)

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

    def close(self) -> None:
        self.redis.close()


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
