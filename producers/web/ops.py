"""The operator's routes: cancel (``POST /jobs/{id}/cancel``, ``POST /jobs:cancel``), pause and
resume (``POST /connections/{name}/pause|resume``), ``GET /connections``, ``GET /workers``,
``GET /readyz`` and ``GET /metrics``.

Changes want a bearer token or a dashboard session with its CSRF token, like replay; each logs an
audit line naming the token. ``/readyz`` wants nothing (load balancers, orchestrators);
``/metrics`` wants the token in ``[api] metrics_token_env``'s variable when that is set.
Refusals answer the API's problem shape (``detail`` and ``problems``).
"""

import hmac
import os
from typing import Literal

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from producers.errors import ConfigError, JobNotFound
from producers.records import JobStatus
from producers.store import FINISHED_ALREADY, Filters
from producers.web import metrics, visibility
from producers.web.actions import MAX_IDS, JobFilters
from producers.web.auth import Principal
from producers.web.deps import Auth, FerryDep
from producers.web.openapi import FieldProblem, answers, problem, redis_down

jobs_router = APIRouter(tags=["operate"])  # may answer 404 and 409
connections_router = APIRouter(tags=["operate"])  # may answer 404
router = APIRouter(tags=["operate"])


def field_problem(status: int, field: str, message: str) -> JSONResponse:
    return problem(status, message, [FieldProblem(field=field, message=message)])


def out_of_reach(who: Principal, connection: str) -> JSONResponse | None:
    """403 when the token's grant does not reach ``connection``, else None."""
    if who.grant.sees_connection(connection):
        return None
    return field_problem(403, "name", f"the token {who.label!r} may not use connection {connection!r}")


class CancelRequest(JobFilters):
    """Which jobs to cancel: ``ids``, or every job matching the filters (status: queued unless given)."""

    ids: list[str] | None = Field(None, max_length=MAX_IDS, description="exactly these jobs")
    dry_run: bool = Field(False, description="only count the matching jobs")
    limit: int | None = Field(None, ge=1, description="at most this many (newest first)")

    def chosen(self) -> Filters:
        if self.status is None:
            return self.model_copy(update={"status": JobStatus.QUEUED}).parsed()
        return self.parsed()


@jobs_router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Cancel one job: 200 ``cancelled`` (queued or between steps), or ``cancelling`` (a step
    runs now; the job is cancelled when it ends); 409 when it had ended already."""
    if not visibility.sees(ferry, who.grant, job_id):
        return field_problem(404, "job_id", f"no job {job_id}")
    try:
        outcome = ferry.cancel(job_id, by=who.label)
    except JobNotFound:
        return field_problem(404, "job_id", f"no job {job_id}")
    if outcome.outcome == FINISHED_ALREADY:
        return field_problem(409, "job_id", f"job {job_id} had ended already ({outcome.status})")
    return JSONResponse(outcome.as_json())


@router.post("/jobs:cancel")
def cancel_jobs(request: CancelRequest, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Cancel ``ids`` or every job matching the filters; ``dry_run`` only counts."""
    filters = request.chosen()
    visible = visibility.selected(ferry, who.grant, filters, request.ids, limit=request.limit)
    summary = ferry.cancel_many(filters, ids=visible if visible is not None else request.ids, by=who.label,
                                dry_run=request.dry_run, limit=request.limit)
    return JSONResponse(summary.as_json())


@router.get("/connections")
def list_connections(who: Auth, ferry: FerryDep) -> JSONResponse:
    """Every connection: service, queue, paused, rate limit, in-flight cap, the destination's 429
    pause (until when), steps waiting for a resume, and jobs queued / running / failed."""
    return JSONResponse({"connections": [c for c in ferry.connections()
                                         if who.grant.sees_connection(c.get("name"))]})


@connections_router.post("/connections/{name}/pause")
def pause_connection(name: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Hold every request on the connection until it is resumed (jobs wait, spending no attempt)."""
    if refused := out_of_reach(who, name):
        return refused
    try:
        changed = ferry.pause(name, by=who.label)
    except ConfigError as exc:
        return field_problem(404, "name", str(exc))
    return JSONResponse({"connection": name, "paused": True, "changed": changed})


@connections_router.post("/connections/{name}/resume")
def resume_connection(name: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Lift the pause; the steps that waited are sent on at once."""
    if refused := out_of_reach(who, name):
        return refused
    try:
        outcome = ferry.resume(name, by=who.label)
    except ConfigError as exc:
        return field_problem(404, "name", str(exc))
    return JSONResponse({**outcome.as_json(), "paused": False})


@router.get("/workers")
def list_workers(who: Auth, ferry: FerryDep) -> JSONResponse:
    """The live workers (heartbeat in the last 30 s): host, pid, pool, slots, steps running now."""
    return JSONResponse({"workers": visibility.workers(ferry, who.grant, ferry.workers())})


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    reason: str | None = Field(default=None, description="why no worker counts as alive")


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness,
                             "description": "no worker heartbeat is fresh (30 s), or redis unavailable"}})
def readyz(ferry: FerryDep) -> JSONResponse:
    """No auth. 200 while some worker's heartbeat is fresh, else 503 with the reason; ``/healthz``
    says only that the API and Redis answer."""
    try:
        ready, reason = ferry.readiness()
    except redis.RedisError as exc:
        ready, reason = False, redis_down("/readyz", exc)
    return JSONResponse({"status": "ready" if ready else "unavailable", "reason": reason},
                        status_code=200 if ready else 503)


@router.get("/metrics", responses={200: {"content": {"text/plain": {}}},
                                   **answers(401, 403, why={401: "[api] metrics_token_env is set: a token is required",
                                                            403: "this token is not allowed"})})
def prometheus_metrics(request: Request, ferry: FerryDep) -> Response:
    """Prometheus text exposition of what the store knows (jobs, workers, pauses). No auth
    unless ``[api] metrics_token_env`` names a variable holding the token it then wants."""
    wanted_env = ferry.config.api.metrics_token_env
    if wanted_env:
        wanted = os.environ.get(wanted_env, "")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given:
            return problem(401, "a bearer token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="ferry-metrics"'})
        if not wanted or not hmac.compare_digest(given.encode(), wanted.encode()):
            return problem(403, "this token is not allowed")
    try:
        return Response(metrics.exposition(ferry), media_type=metrics.CONTENT_TYPE)
    except redis.RedisError as exc:
        return problem(503, redis_down("/metrics", exc))
