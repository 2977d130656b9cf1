"""``GET /events``: the job event stream as server-sent events, and ``POST /jobs/{id}/notify``,
which delivers an ended job's webhook again. Behind the API's bearer tokens, or a dashboard
session (the page's ``EventSource`` sends the cookie; a GET needs no CSRF token).

Each event is ``id:`` (the stream id), ``event:`` (its type) and ``data:`` (one line of JSON: job,
kind, connection, step, status, time…). A client resumes after the last id it saw with the
``Last-Event-ID`` header (browsers send it when they reconnect) or ``?last_event_id=``; without
either it gets the events from now on (``?last_event_id=0``: every event the stream still holds).
A comment line every ``HEARTBEAT_SECONDS`` of silence keeps proxies from closing an idle stream.

The stream is read with the store's (synchronous) Redis client, one short blocking ``XREAD`` at
a time on a worker thread of its own limiter, so open streams neither hold the API's threadpool
nor keep a thread after their client left for longer than one read.
"""

import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from producers import events
from producers.client import Ferry
from producers.errors import JobNotFound, NotifyRefused
from producers.records import DeliveryRecord
from producers.web.deps import Auth, FerryDep
from producers.web.openapi import answers

HEARTBEAT_SECONDS = 15.0
READ_BLOCK_MS = 1000  # how long one read waits for a new event (and a gone client holds a thread)
MAX_STREAMS = 500  # open streams reading at the same moment; more wait their turn

router = APIRouter()
_readers: anyio.CapacityLimiter | None = None


def _limiter() -> anyio.CapacityLimiter:
    global _readers
    if _readers is None:  # made in the event loop, on first use
        _readers = anyio.CapacityLimiter(MAX_STREAMS)
    return _readers


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
                       **answers(422, why={422: "last_event_id is not a stream id"})})
async def stream_events(
    who: Auth,
    ferry: FerryDep,
    job: Annotated[str | None, Query(description="only this job's events")] = None,
    kind: Annotated[str | None, Query(description="only jobs of this kind")] = None,
    connection: Annotated[str | None, Query(description="only jobs of this connection")] = None,
    last_event_id: Annotated[str | None, Query(description="resume after this event id")] = None,
    last_event_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every job state change as it happens: queued, step.started, step.succeeded, step.retrying
    (with its delay), job.succeeded, job.failed, job.cancelled, job.replayed."""
    resume = last_event_header or last_event_id
    try:
        start = events.check_id(resume) if resume else await anyio.to_thread.run_sync(events.latest_id, ferry.redis)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    filters = events.EventFilters(job=job, kind=kind, connection=connection)
    return StreamingResponse(_frames(ferry, start, filters), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _frames(ferry: Ferry, position: str, filters: events.EventFilters) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"  # how soon a browser reconnects (with Last-Event-ID)
    quiet_since = time.monotonic()
    while True:
        batch = await anyio.to_thread.run_sync(
            partial(events.read, ferry.redis, position, filters, block_ms=READ_BLOCK_MS), limiter=_limiter())
        position = batch.position
        for event in batch.events:
            yield event.sse()
        if batch.events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            yield ": heartbeat\n\n"
            quiet_since = time.monotonic()


@router.post("/jobs/{job_id}/notify", status_code=202, response_model=DeliveryRecord,
             responses=answers(404, 409, why={404: "no such job",
                                              409: "no callback_url, or the job has not ended"}))
def redeliver(job_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Deliver the ended job's webhook again: a new delivery (new id), due now."""
    try:
        delivery = ferry.notify(job_id)
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except NotifyRefused as exc:
        raise HTTPException(409, str(exc)) from None
    return JSONResponse(delivery.model_dump(mode="json"), status_code=202)
