"""Changing what runs next over HTTP: ``POST /jobs/{id}/priority`` and
``POST /batches/{id}/priority`` (body ``{"priority": "high"}``). Operator's scope, an audit line
naming the token, like cancel."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from producers.errors import BatchNotFound, JobNotFound
from producers.priority import Priority
from producers.web import visibility
from producers.web.deps import Auth, FerryDep
from producers.web.openapi import answers
from producers.web.ops import field_problem

router = APIRouter(tags=["operate"])


class PriorityChange(BaseModel):
    priority: Priority = Field(description="high, normal or low")


class PriorityChanged(BaseModel):
    priority: Priority
    job: str | None = None
    batch: str | None = None
    changed: int = Field(description="waiting jobs that have this priority now")


@router.post("/jobs/{job_id}/priority", response_model=PriorityChanged, responses=answers(404, 409))
def job_priority(job_id: str, change: PriorityChange, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Give a waiting (queued or scheduled) job another priority; 409 when it no longer waits."""
    if not visibility.sees(ferry, who.grant, job_id):
        return field_problem(404, "job_id", f"no job {job_id}")
    try:
        changed = ferry.set_priority(job_id, change.priority, by=who.label)
    except JobNotFound:
        return field_problem(404, "job_id", f"no job {job_id}")
    if not changed:
        return field_problem(409, "job_id", f"job {job_id} no longer waits; its priority stays")
    return JSONResponse(PriorityChanged(priority=change.priority, job=job_id, changed=1).model_dump())


@router.post("/batches/{batch_id}/priority", response_model=PriorityChanged, responses=answers(404))
def batch_priority(batch_id: str, change: PriorityChange, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Give every waiting job of the batch another priority (running or ended ones keep theirs)."""
    missing = HTTPException(404, f"no batch {batch_id}")
    if who.grant.limited:  # a batch may hold jobs of any connection (as in producers.web.batches)
        raise missing
    try:
        changed = ferry.set_batch_priority(batch_id, change.priority, by=who.label)
    except BatchNotFound:
        raise missing from None
    return JSONResponse(PriorityChanged(priority=change.priority, batch=batch_id, changed=changed).model_dump())
