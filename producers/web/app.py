"""Ferry's HTTP API: how a system that is not written in Python (or not on this machine) submits
jobs and reads them back. ``ferry api --port 8080`` serves it; ``create_app`` builds it for tests.

Every route but ``/healthz`` and ``/readyz`` wants ``Authorization: Bearer <token>``: a token of an
``[api.tokens.<label>]`` table, which may do what its ``scopes`` say to the jobs of its
``connections`` (``producers.web.scopes`` declares each route's scope), or one of the full-access
tokens of ``[api] tokens_env``'s variable or ``ferry api --tokens-file``. The API validates exactly
as the CLI does (``Ferry.validate``), answers 422 listing every problem, and enqueues nothing
invalid. It never accepts file bytes: a job names a path under ``[files] roots`` or an https:// URL.

Endpoints are sync functions on purpose: redis-py is sync, so FastAPI runs them in its threadpool.
"""

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, cast

import redis
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from producers import errors
from producers.client import MAX_IDEMPOTENCY_KEY, Ferry, JobRequest, Outcome, request_field
from producers.config import FerryConfig
from producers.errors import ConfigError, IdempotencyConflict, SubmitError
from producers.kinds import KindName
from producers.priority import TENANT_PATTERN, Priority
from producers.records import JobRecord, JobStatus
from producers.store import Filters
from producers.web import actions, batches, dashboard, events, ops, priority, visibility
from producers.web.auth import Guard, Principal
from producers.web.deps import Bearer, FerryDep, bearer
from producers.web.grants import LEGACY_WARNING, Token, full_access, labelled, read_tokens_file, split_tokens
from producers.web.hub import EventHub
from producers.web.openapi import (
    SUBMISSION_BODY,
    SUBMISSION_REF,
    DocumentedApp,
    FieldProblem,
    answers,
    operation_id,
    problem,
    problem_handlers,
    redis_down,
)

log = logging.getLogger("ferry.api")

MAX_BATCH_ITEMS = 1000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---- response shapes (for the OpenAPI document) ------------------------------------------------
class JobPage(BaseModel):
    jobs: list[JobRecord]
    next_cursor: str | None = Field(description="?cursor= for the next page; null: the last page")


class BatchRequest(BaseModel):
    # Items are checked one by one (not by this model) so one bad item cannot sink the others.
    jobs: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_BATCH_ITEMS, json_schema_extra={"items": SUBMISSION_REF},
        description="each item is a POST /jobs body (kind, connection, file | uri, params, "
                    "idempotency_key)")
    name: str | None = Field(None, max_length=200, description="the batch's name")
    callback_url: str | None = Field(None, min_length=1, max_length=2000,
                                     description="POSTed a signed batch.completed webhook when the batch completes")
    priority: Priority | None = Field(None, description="each job's priority unless it names one (default: low)")
    tenant: str | None = Field(None, pattern=TENANT_PATTERN, description="each job's tenant unless it names one")


class BatchItemResult(BaseModel):
    index: int
    status: int = Field(description="202 created, 200 existing (idempotency key), 403 a connection "
                                    "the token may not submit to, 409 key reused for another job, "
                                    "422 refused, "
                                    "503 the job store or broker was unreachable (nothing of the job was kept)")
    job: JobRecord | None = None
    problems: list[FieldProblem] = Field(default_factory=list)


class BatchResult(BaseModel):
    batch: str = Field(description="the batch these jobs are: GET /batches/{id}")
    results: list[BatchItemResult]
    created: int
    existing: int
    refused: int


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: str = Field(description='"ok", or "redis unavailable"')


LOCATION = {"Location": {"description": "/jobs/{id} of the job", "required": True,
                         "schema": {"type": "string"}}}


# ---- body size -----------------------------------------------------------------------------------
class BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413: by the declared Content-Length before reading,
    and by counting the bytes actually received (a chunked body declares no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problem(413, self._message())(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises an HTTPException met while reading the body.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body over {self.max_bytes} bytes ([api] max_body_bytes)"


# ---- helpers -------------------------------------------------------------------------------------
def api_tokens(config: FerryConfig) -> list[Token]:
    """The ``[api.tokens.<label>]`` tokens, and the old ``[api] tokens_env`` ones (full access,
    with one warning line saying so)."""
    legacy = split_tokens(os.environ.get(config.api.tokens_env, ""))
    if legacy:
        log.warning(LEGACY_WARNING.format(env=config.api.tokens_env))
    return labelled(config.api) + full_access(legacy)


def _problems(problems: list[errors.Problem]) -> list[FieldProblem]:
    return [FieldProblem(field=request_field(p.field), message=p.message) for p in problems]


def _validation_problems(found: list[Any], *, strip: int) -> list[FieldProblem]:
    out = []
    for e in found:
        loc = [str(x) for x in e["loc"][strip:]]
        out.append(FieldProblem(field=".".join(loc) or "body", message=str(e["msg"])))
    return out


def _refused(problems: list[FieldProblem]) -> JSONResponse:
    return problem(422, "invalid request; nothing was enqueued", problems)


def _record(record: JobRecord, status: int) -> JSONResponse:
    # model_dump(mode="json"): the same JSON as `ferry status --json`.
    return JSONResponse(record.model_dump(mode="json"), status_code=status,
                        headers={"Location": f"/jobs/{record.id}"})


# ---- the routes ----------------------------------------------------------------------------------
router = APIRouter(tags=["jobs"])
# The caller's W3C trace context: the job's trace continues it (an invalid one is ignored).
TraceParent = Annotated[str | None, Header(max_length=128, description="W3C trace context: the job's trace "
                                                                       "continues it (ignored if invalid)")]
BEARER = [Depends(bearer)]


def submit_one(ferry: Ferry, request: JobRequest,
               traceparent: str | None = None) -> tuple[int, JobRecord | None, list[FieldProblem]]:
    """One job of ``POST /jobs``: (HTTP status, record, problems)."""
    try:
        outcome: Outcome = ferry.submit_request(request, require_file_roots=True, traceparent=traceparent)
    except Exception as exc:
        outcome = exc
    return _outcome(request, outcome)


def _outcome(request: JobRequest, outcome: Outcome) -> tuple[int, JobRecord | None, list[FieldProblem]]:
    """An item's HTTP status, record and problems."""
    if isinstance(outcome, IdempotencyConflict):
        return 409, None, _problems(outcome.problems)
    if isinstance(outcome, SubmitError):
        return 422, None, _problems(outcome.problems)
    if isinstance(outcome, Exception):  # store or broker down: nothing of the job was stored
        log.error("submitting a %s job failed", request.kind, exc_info=outcome)
        return 503, None, [FieldProblem(field="", message=f"could not store or enqueue: {outcome}")]
    record, created = outcome
    return (202 if created else 200), record, []


def unreachable(who: Principal, request: JobRequest) -> list[FieldProblem]:
    """Why the token may not submit this job (empty: it may): a connection or tenant outside its grant."""
    found = []
    if not who.grant.sees_connection(request.connection):
        found.append(FieldProblem(field="connection", message=f"the token {who.label!r} may not use "
                                                              f"connection {request.connection!r}"))
    tenant = request.tenant
    if not who.grant.sees_tenant(tenant):
        found.append(FieldProblem(field="tenant", message=f"the token {who.label!r} may not use "
                                                          f"tenant {tenant!r}"))
    return found


@router.post("/jobs", status_code=202, response_model=JobRecord,
             response_description="created and enqueued", openapi_extra=SUBMISSION_BODY,
             responses={202: {"headers": LOCATION},
                        200: {"model": JobRecord, "headers": LOCATION,
                              "description": "an existing job (its idempotency key was seen)"},
                        **answers(409, why={409: "the idempotency key was used for another job"})})
def post_job(
    job: Annotated[JobRequest, Body()],
    who: Bearer,
    ferry: FerryDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                                  max_length=MAX_IDEMPOTENCY_KEY)] = None,
    traceparent: TraceParent = None,
) -> JSONResponse:
    """Validate and enqueue one job: 202 with its record, or 200 with the existing one when
    the idempotency key (header or field) was seen within the retention window."""
    if idempotency_key and job.idempotency_key and idempotency_key != job.idempotency_key:
        return _refused([FieldProblem(field="idempotency_key",
                                    message="the Idempotency-Key header and the "
                                            "idempotency_key field differ")])
    if idempotency_key:
        job = job.model_copy(update={"idempotency_key": idempotency_key})
    if refused := unreachable(who, job):
        return problem(403, refused[0].message, refused)
    status, record, problems = submit_one(ferry, job, traceparent)
    if record is not None and status in (200, 202):
        return _record(record, status)
    return problem(status, "the job was refused; nothing was enqueued" if status in (409, 422)
                   else "the job store or the broker is unavailable", problems)


@router.post("/jobs:batch", response_model=BatchResult)
def post_batch(batch: BatchRequest, who: Bearer, ferry: FerryDep,
               traceparent: TraceParent = None) -> BatchResult | JSONResponse:
    """Submit many jobs as one batch (``name``; ``callback_url`` is told once it completes);
    each item succeeds or fails on its own (partial success). The answer is 200 with the batch
    and one result per item, in order. Valid items are stored and enqueued together
    (``Ferry.submit_many``: one Redis round trip per 500)."""
    results: list[BatchItemResult | None] = []
    requests: dict[int, JobRequest] = {}
    for index, item in enumerate(batch.jobs):
        try:
            request = JobRequest.model_validate(item)
            request = request.model_copy(update={"priority": request.priority or batch.priority,
                                                 "tenant": request.tenant or batch.tenant})
        except ValidationError as exc:
            problems = _validation_problems(list(exc.errors()), strip=0)
            results.append(BatchItemResult(index=index, status=422, problems=problems))
            continue
        if refused := unreachable(who, request):
            results.append(BatchItemResult(index=index, status=403, problems=refused))
            continue
        requests[index] = request
        results.append(None)
    try:
        outcomes = ferry.submit_many(list(requests.values()), require_file_roots=True, name=batch.name,
                                     callback_url=batch.callback_url, traceparent=traceparent)
    except SubmitError as exc:  # the batch's own callback URL
        return _refused(_problems(exc.problems))
    for (index, request), outcome in zip(requests.items(), outcomes, strict=True):
        status, record, problems = _outcome(request, outcome)
        results[index] = BatchItemResult(index=index, status=status, job=record, problems=problems)
    done = [r for r in results if r is not None]
    return BatchResult(batch=outcomes.batch, results=done,
                       created=sum(r.status == 202 for r in done),
                       existing=sum(r.status == 200 for r in done),
                       refused=sum(r.status not in (200, 202) for r in done))


@router.get("/jobs/{job_id}", response_model=JobRecord, responses=answers(404))
def get_job(job_id: str, who: Bearer, ferry: FerryDep) -> JSONResponse:
    """One job: status, each step with attempts, what landed or why it failed."""
    return JSONResponse(visibility.job(ferry, who.grant, job_id).model_dump(mode="json"))


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    who: Bearer,
    ferry: FerryDep,
    status: JobStatus | None = None,
    kind: KindName | None = None,
    connection: str | None = None,
    cursor: Annotated[str | None, Query(pattern=r"^\d+$",
                                        description="next_cursor of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    batch: Annotated[str | None, Query(max_length=64, description="only the jobs of this batch")] = None,
    error_step: Annotated[str | None, Query(max_length=64, description="the step the job failed at")] = None,
    http_status: Annotated[int | None, Query(ge=100, le=599, description="the HTTP status of the failure")] = None,
    since: Annotated[str | None, Query(max_length=40, description="created at or after (ISO-8601, or 2h, 7d)")] = None,
    until: Annotated[str | None, Query(max_length=40, description="created before (ISO-8601, or 2h, 7d)")] = None,
    file_name: Annotated[str | None, Query(max_length=200, description="part of the file's name, any case")] = None,
    error: Annotated[str | None, Query(max_length=200, description="part of the error's message, any case")] = None,
    priority: Priority | None = None,
    tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN, description="only this tenant's jobs")] = None,
) -> JSONResponse:
    """Jobs newest first, filtered, in Redis and the archive; page with ``cursor``. Same JSON as
    ``ferry jobs --json``."""
    possible, connection = visibility.connection_filter(who.grant, connection)
    if not possible:
        return JSONResponse({"jobs": [], "next_cursor": None})
    try:
        filters = Filters.parse({
            "status": status.value if status else None, "kind": kind, "connection": connection, "batch": batch,
            "error_step": error_step, "http_status": http_status, "since": since, "until": until,
            "file_name": file_name, "error": error, "priority": priority,
            "tenant": tenant})
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    page = ferry.search(filters, limit=limit, cursor=cursor)
    return JSONResponse({"jobs": [j.model_dump(mode="json") for j in page.jobs if who.grant.sees(j)],
                         "next_cursor": page.next_cursor})


@router.get("/healthz", response_model=Health,
            responses={503: {"model": Health, "description": "Redis does not answer"}})
def healthz(ferry: FerryDep) -> JSONResponse:
    """No auth: for load balancers. 200 when Redis answers, else 503."""
    try:
        ferry.redis.ping()
    except redis.RedisError as exc:
        return JSONResponse({"status": "unavailable", "redis": redis_down("/healthz", exc)}, status_code=503)
    return JSONResponse({"status": "ok", "redis": "ok"})


@router.get("/openapi.json", dependencies=BEARER, include_in_schema=False)
def openapi_document(request: Request) -> dict[str, Any]:
    return cast(dict[str, Any], request.app.openapi())


def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _refused(_validation_problems(list(exc.errors()), strip=1))


# ---- the app -------------------------------------------------------------------------------------
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.events_hub.close()  # open streams end with the server; so does their reader


def create_app(ferry: Ferry | None = None, config: FerryConfig | None = None,
               tokens: list[str] | None = None) -> FastAPI:
    """Build the API over ``ferry`` (default: ``Ferry(config=config)``, i.e. ferry.toml and
    REDIS_URL). ``tokens`` (full access, like ``--tokens-file``) replace the configured ones;
    none at all is an error. The routes find ``ferry``, the token ``guard`` and the
    ``events_hub`` in ``app.state``."""
    ferry = ferry if ferry is not None else Ferry(config=config)
    allowed = full_access(tokens) if tokens is not None else api_tokens(ferry.config)
    if not allowed:
        raise ConfigError(
            "no API tokens: add an [api.tokens.<label>] table to ferry.toml (token_env or "
            f"token_file, scopes), or set {ferry.config.api.tokens_env} to full-access tokens")
    _ = ferry.celery  # built once here, not raced by the first concurrent requests

    app = DocumentedApp(title="Ferry", version="1", openapi_url=None, docs_url=None, redoc_url=None,
                        description=__doc__, generate_unique_id_function=operation_id, lifespan=lifespan)
    app.state.ferry = ferry
    app.state.guard = Guard(ferry.redis, allowed)
    app.state.events_hub = EventHub(ferry.redis, events.MAX_STREAMS)  # GET /events: one reader for all
    app.add_middleware(BodyLimit, max_bytes=ferry.config.api.max_body_bytes)
    problem_handlers(app)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(router)
    # Replay/purge and the dashboard at `/`: the same tokens, or a browser session opened with one.
    app.include_router(actions.router)
    app.include_router(events.router)  # GET /events (server-sent events), POST /jobs/{id}/notify
    # Cancel, pause/resume, connections, workers, /readyz, /metrics (the operator's controls).
    app.include_router(ops.router)
    app.include_router(ops.jobs_router, responses=answers(404, 409))
    app.include_router(ops.connections_router, responses=answers(404))
    app.include_router(batches.router)  # GET/POST /batches, /batches/{id}[/seal|replay|cancel]
    app.include_router(priority.router)  # POST /jobs/{id}/priority, /batches/{id}/priority
    app.include_router(dashboard.router)
    return app


def serve(host: str = "127.0.0.1", port: int = 8080, config_path: str | None = None,
          tokens_file: str | None = None) -> None:
    """Serve the API; ``tokens_file`` (one full-access token per line) replaces the configured tokens."""
    import uvicorn  # the api extra; imported here so building the app does not need it

    tokens = read_tokens_file(tokens_file) if tokens_file else None  # refuse before touching Redis
    ferry = Ferry(config_path=config_path)
    app = create_app(ferry, tokens=tokens)
    proxies = ferry.config.api.forwarded_allow_ips
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True,
                forwarded_allow_ips=list(proxies) if proxies is not None else None)
