"""HTTP replay and purge: ``POST /jobs/{id}/replay``, ``POST /jobs:replay`` (filters, dry run),
``DELETE /jobs/{id}``, ``POST /jobs:purge``. Behind the API's bearer auth, or a dashboard
session with its CSRF token.

A bulk replay answers at once (202, with the count) and replays in a background thread at the
requested rate; its progress is kept in Redis for the dashboard (``keys.bulk_replay``).
"""

import logging
import threading
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from producers import replay as ops
from producers.audit import audit
from producers.client import Ferry
from producers.errors import ActiveJob, JobNotFound, ReplayRefused
from producers.records import JobRecord, JobStatus, still_to_come, utcnow
from producers.store import Filters
from producers.web import visibility
from producers.web.auth import Principal
from producers.web.deps import Auth, FerryDep
from producers.web.openapi import answers

log = logging.getLogger("ferry.api")

BULK_SECONDS = 24 * 3600
MAX_IDS = 100_000


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    restart: bool = Field(False, description="run every step again, not just from the failed one")
    force: bool = Field(False, description="replay even a job that succeeded")
    not_before: datetime | None = Field(None, description="ISO 8601 time: the run is scheduled for then")


class JobFilters(BaseModel):
    """Which jobs. Every field given must match; times bound created_at (ISO-8601 or 2h, 7d)."""

    model_config = ConfigDict(extra="forbid")

    status: JobStatus | None = Field(None, description="default: failed")
    kind: str | None = None
    connection: str | None = None
    error_step: str | None = Field(None, description="the step the job failed at")
    http_status: int | None = Field(None, description="the HTTP status of the failure")
    since: str | None = Field(None, description="created at or after")
    until: str | None = Field(None, description="created before")

    def parsed(self) -> Filters:
        raw = self.model_dump()
        raw["status"] = (self.status or JobStatus.FAILED).value
        try:
            return Filters.parse(raw)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None


class BulkReplayRequest(JobFilters):
    ids: list[str] | None = Field(None, max_length=MAX_IDS,
                                  description="replay exactly these jobs (filters are then ignored)")
    dry_run: bool = Field(False, description="only count the matching jobs")
    restart: bool = False
    force: bool = False
    # At least one job per 100 s: a rate near zero made the estimate infinite (not JSON).
    rate: float = Field(ops.DEFAULT_RATE, ge=0.01, le=1000, description="jobs replayed per second")


class PurgeRequest(JobFilters):
    ids: list[str] | None = Field(None, max_length=MAX_IDS)
    dry_run: bool = False


class DryRun(BaseModel):
    dry_run: Literal[True]
    matched: int = Field(description="how many jobs the request would act on")
    filters: dict[str, str] = Field(description="the filters applied (empty: the ids given)")


class BulkReplay(BaseModel):
    """A bulk replay's progress (``GET /jobs:replay``; kept for a day)."""

    id: str
    by: str = Field(description="who started it: api (token #…) or dashboard (token #…)")
    matched: int
    done: int
    replayed: int
    refused: int
    rate: float = Field(description="jobs replayed per second")
    started_at: str
    finished_at: str | None
    estimated_seconds: float
    error: str | None = Field(None, description="set when it stopped early")


class Purged(BaseModel):
    matched: int
    deleted: int
    skipped: int = Field(description="queued or running: kept")


router = APIRouter(tags=["replay"])
STATE_CONFLICT = {409: "the job is queued or running, or succeeded (replay it with force)"}


@router.post("/jobs/{job_id}/replay", status_code=202, response_model=JobRecord,
             responses=answers(404, 409, why=STATE_CONFLICT))
def replay_job(job_id: str, who: Auth, ferry: FerryDep,
               options: Annotated[ReplayOptions | None, Body()] = None) -> JSONResponse:
    """Replay one job from its failed step (``restart``: from the first). 202 with the
    record, now queued; 409 when it is queued/running, or succeeded without ``force``."""
    chosen = options or ReplayOptions()
    visibility.check(ferry, who.grant, job_id)
    try:
        record = ops.replay(ferry, job_id, restart=chosen.restart, force=chosen.force,
                            trigger=who.trigger(), not_before=still_to_come(chosen.not_before))
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except ReplayRefused as exc:
        raise HTTPException(409, str(exc)) from None
    audit("replay", who.label, target=job_id, jobs=1, restart=chosen.restart, force=chosen.force)
    return JSONResponse(record.model_dump(mode="json"), status_code=202)


@router.post("/jobs:replay", response_model=DryRun, response_description="dry run: the count",
             responses={202: {"model": BulkReplay, "description": "replaying in the background"}})
def replay_jobs(request: BulkReplayRequest, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Replay many jobs: ``ids``, or every job matching the filters (status defaults to
    failed). ``dry_run`` only counts. Otherwise 202 at once; the replays go out at ``rate``
    per second in the background (progress: ``GET /jobs:replay``)."""
    filters = request.parsed()
    visible = visibility.selected(ferry, who.grant, filters, request.ids)
    if request.dry_run and request.ids is None and visible is None:
        return JSONResponse({"dry_run": True, "matched": ops.count(ferry, filters),
                             "filters": filters.as_query()})
    ids = visible if visible is not None else request.ids if request.ids is not None \
        else ops.select(ferry, filters)
    if request.dry_run:
        return JSONResponse({"dry_run": True, "matched": len(ids),
                             "filters": {} if request.ids is not None else filters.as_query()})
    bulk = _start_bulk(ferry, ids, request, who)
    audit("replay", who.label, target=filters.as_query() if request.ids is None else {"ids": len(ids)},
          jobs=len(ids), rate=request.rate)
    return JSONResponse(bulk, status_code=202)


@router.get("/jobs:replay", response_model=BulkReplay | None)
def last_bulk(who: Auth, ferry: FerryDep) -> JSONResponse:
    """The latest bulk replay's progress (null when none in the last day, or, for a token limited
    to some connections or tenants, when another token started it)."""
    bulk = ferry.store.last_bulk_replay()
    if bulk and who.grant.limited and bulk.get("by") not in {Principal(via, who.grant).trigger()
                                                             for via in ("bearer", "session")}:
        bulk = None
    return JSONResponse(bulk)


@router.delete("/jobs/{job_id}", status_code=204,
               responses=answers(404, 409, why={409: "the job is queued or running"}))
def delete_job(job_id: str, who: Auth, ferry: FerryDep) -> Response:
    """Forget one job that has ended (409 while it is queued or running)."""
    visibility.check(ferry, who.grant, job_id)
    try:
        ops.delete(ferry, job_id)
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except ActiveJob as exc:
        raise HTTPException(409, str(exc)) from None
    audit("delete", who.label, target=job_id, jobs=1)
    return Response(status_code=204)


@router.post("/jobs:purge", response_model=Purged | DryRun)
def purge_jobs(request: PurgeRequest, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Delete the ended jobs among ``ids`` or matching the filters (status defaults to
    failed); queued and running jobs are kept. ``dry_run`` only counts."""
    filters = request.parsed()
    visible = visibility.selected(ferry, who.grant, filters, request.ids)
    ids = visible if visible is not None else request.ids
    if request.dry_run:
        matched = len(ids) if ids is not None else ops.count(ferry, filters)
        return JSONResponse({"dry_run": True, "matched": matched,
                             "filters": filters.as_query()})
    outcome = ops.purge(ferry, filters, ids=ids)
    audit("purge", who.label, target=filters.as_query() if request.ids is None else {"ids": len(request.ids)},
          jobs=outcome.deleted, matched=outcome.matched)
    return JSONResponse(outcome.as_json())


def _start_bulk(ferry: Ferry, ids: list[str], request: BulkReplayRequest,
                who: Principal) -> dict[str, Any]:
    state: dict[str, Any] = {
        "id": uuid.uuid4().hex, "by": who.trigger(), "matched": len(ids), "done": 0,
        "replayed": 0, "refused": 0, "rate": request.rate, "started_at": utcnow(),
        "finished_at": None, "estimated_seconds": round(len(ids) / request.rate, 1),
    }
    ferry.store.save_bulk_replay(state, BULK_SECONDS)

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            state["done"] = done
            ferry.store.save_bulk_replay(state, BULK_SECONDS)

    def run() -> None:
        try:
            outcome = ops.replay_many(ferry, ids, restart=request.restart, force=request.force,
                                      trigger=who.trigger() + " bulk", rate=request.rate,
                                      progress=progress)
            state.update(replayed=outcome.replayed, refused=len(outcome.refused))
        except Exception:  # the thread must not die silently: the dashboard shows it ended
            log.exception("bulk replay %s stopped", state["id"])
            state["error"] = "stopped by an internal error; see the API log"
        state["finished_at"] = utcnow()
        ferry.store.save_bulk_replay(state, BULK_SECONDS)

    snapshot = dict(state)  # the thread mutates ``state`` from now on
    threading.Thread(target=run, name=f"bulk-replay-{state['id'][:8]}", daemon=True).start()
    return snapshot
