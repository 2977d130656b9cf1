"""Batches over HTTP: ``GET /batches``, ``POST /batches`` (open one), ``GET /batches/{id}``,
``POST /batches/{id}/seal|replay|cancel|notify``. A job joins an open batch with ``"batch": id`` in its
``POST /jobs`` body; ``POST /jobs:batch`` is a batch of its own; ``GET /jobs?batch=ID`` lists one's
jobs. Behind the API's bearer auth, or a dashboard session with its CSRF token.

A replay answers at once (202, with the count) and replays in a background thread at the
requested rate, like a bulk replay; the batch completes (and is told) again once they end.
"""

import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from producers import replay as ops
from producers.audit import audit
from producers.errors import BatchNotFound, JobNotFound, NotifyRefused, SubmitError
from producers.records import BatchRecord, DeliveryRecord, JobStatus
from producers.store import Filters
from producers.web.auth import Principal
from producers.web.deps import Auth, FerryDep
from producers.web.openapi import FieldProblem, answers, problem

log = logging.getLogger("ferry.api")

router = APIRouter(tags=["batches"])


class BatchOpening(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="a name to know it by")
    callback_url: str | None = Field(None, min_length=1, max_length=2000,
                                     description="POSTed a signed batch.completed webhook each time it completes")


class BatchReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(None, max_length=100_000,
                                  description="only these of its failed jobs (default: every one)")


class BatchList(BaseModel):
    batches: list[BatchRecord]


class BatchReplay(BaseModel):
    batch: str
    matched: int = Field(description="failed jobs being replayed")
    rate: float


class BatchCancel(BaseModel):
    matched: int
    cancelled: int
    cancelling: int = Field(description="a step ran: cancelled once it ends")
    finished: int


def _record(record: BatchRecord, status: int = 200) -> JSONResponse:
    return JSONResponse(record.model_dump(mode="json"), status_code=status,
                        headers={"Location": f"/batches/{record.id}"})


def _missing(batch_id: str) -> HTTPException:
    return HTTPException(404, f"no batch {batch_id}")


def _visible(who: Principal, batch_id: str) -> None:
    """A batch may hold jobs of any connection: a token limited to some connections sees none."""
    if who.grant.limited:
        raise _missing(batch_id)


@router.get("/batches", response_model=BatchList)
def list_batches(who: Auth, ferry: FerryDep) -> JSONResponse:
    """The newest batches (50), those still running first (none for a token limited to some
    connections: a batch may hold jobs of any)."""
    found = [] if who.grant.limited else ferry.batches()
    return JSONResponse({"batches": [b.model_dump(mode="json") for b in found]})


@router.post("/batches", status_code=201, response_model=BatchRecord)
def open_batch(who: Auth, ferry: FerryDep, opening: Annotated[BatchOpening | None, Body()] = None) -> JSONResponse:
    """Open a batch for jobs submitted one by one (``"batch": id`` in each ``POST /jobs``); seal
    it with ``POST /batches/{id}/seal``."""
    chosen = opening or BatchOpening()
    if who.grant.limited:
        raise HTTPException(403, "a token limited to some connections cannot open a batch (it may hold any)")
    try:
        opened = ferry.open_batch(chosen.name, chosen.callback_url)
    except SubmitError as exc:
        return problem(422, "the batch was refused", [FieldProblem(field=p.field, message=p.message)
                                                      for p in exc.problems])
    return _record(ferry.batch(opened.id), 201)


@router.get("/batches/{batch_id}", response_model=BatchRecord, responses=answers(404))
def get_batch(batch_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """A batch's status record: counts by status, bytes, ETA, sealed and finished times."""
    _visible(who, batch_id)
    try:
        return _record(ferry.batch(batch_id))
    except BatchNotFound:
        raise _missing(batch_id) from None


@router.post("/batches/{batch_id}/seal", response_model=BatchRecord, responses=answers(404))
def seal_batch(batch_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """No more jobs join it; it completes once none of its jobs is left to run."""
    _visible(who, batch_id)
    try:
        ferry.seal_batch(batch_id)
        return _record(ferry.batch(batch_id))
    except BatchNotFound:
        raise _missing(batch_id) from None


@router.post("/batches/{batch_id}/replay", status_code=202, response_model=BatchReplay, responses=answers(404))
def replay_batch(batch_id: str, who: Auth, ferry: FerryDep,
                 chosen: Annotated[BatchReplayRequest | None, Body()] = None) -> JSONResponse:
    """Replay the batch's failed jobs (``ids``: those of them) from their failed steps, in the
    background at the bulk replay rate; it completes (and is told) again after the last of them."""
    _visible(who, batch_id)
    try:
        ferry.batch(batch_id)
    except BatchNotFound:
        raise _missing(batch_id) from None
    only = chosen.ids if chosen is not None else None
    failed = ferry.store.select(Filters(batch=batch_id, status=JobStatus.FAILED.value)).ids
    matched = len(failed) if only is None else len(set(only) & set(failed))

    def run() -> None:
        try:
            ops.replay_batch(ferry, batch_id, trigger=who.trigger() + " batch", only=only)
        except Exception:  # the thread must not die silently
            log.exception("replay of batch %s stopped", batch_id)

    if matched:
        threading.Thread(target=run, name=f"batch-replay-{batch_id[:8]}", daemon=True).start()
    audit("replay", who.label, target={"batch": batch_id}, jobs=matched)
    return JSONResponse({"batch": batch_id, "matched": matched, "rate": ops.DEFAULT_RATE}, status_code=202)


@router.post("/batches/{batch_id}/cancel", response_model=BatchCancel, responses=answers(404))
def cancel_batch(batch_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Seal the batch and cancel its scheduled, queued and running jobs."""
    _visible(who, batch_id)
    try:
        return JSONResponse(ferry.cancel_batch(batch_id, by=who.label))
    except (BatchNotFound, JobNotFound):
        raise _missing(batch_id) from None


@router.post("/batches/{batch_id}/notify", status_code=202, response_model=DeliveryRecord,
             responses=answers(404, 409, why={404: "no such batch", 409: "no callback_url, or not complete"}))
def notify_batch(batch_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Deliver the completed batch's webhook again (its last completion): a new delivery (new
    id), due now, listed with the batch's other deliveries."""
    _visible(who, batch_id)
    try:
        delivery = ferry.notify_batch(batch_id)
    except BatchNotFound:
        raise _missing(batch_id) from None
    except NotifyRefused as exc:
        raise HTTPException(409, str(exc)) from None
    audit("notify", who.label, target={"batch": batch_id}, jobs=0, delivery=delivery.id)
    return JSONResponse(delivery.model_dump(mode="json"), status_code=202)
