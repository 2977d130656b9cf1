"""``GET /events``: the job event stream as server-sent events, and ``POST /jobs/{id}/notify``,
which delivers an ended job's webhook again. Behind the API's bearer tokens, or a dashboard
session (the page's ``EventSource`` sends the cookie; a GET needs no CSRF token).

Each event is ``id:`` (the stream id), ``event:`` (its type) and ``data:`` (one line of JSON: job,
kind, connection, step, status, time…). A client resumes after the last id it saw with the
``Last-Event-ID`` header (browsers send it when they reconnect) or ``?last_event_id=``; without
either it gets the events from now on (``?last_event_id=0``: every event the stream still holds).
A comment line every ``HEARTBEAT_SECONDS`` of silence keeps proxies from closing an idle stream.

Every open stream is served by the app's one ``EventHub`` (``producers.web.hub``): one blocking
read on a Redis pool of its own, fanned out, so open streams never take the API's connections.
At most ``MAX_STREAMS`` are open at once; one more is answered 503 with ``Retry-After``.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from producers import events
from producers.errors import JobNotFound, NotifyRefused
from producers.records import DeliveryRecord
from producers.web import visibility
from producers.web.deps import Auth, FerryDep
from producers.web.hub import EventHub, Subscription, newer
from producers.web.openapi import answers

HEARTBEAT_SECONDS = 15.0
MAX_STREAMS = 500  # open streams at once (memory only: they share one reader); more get 503
RETRY_AFTER_SECONDS = 10  # what a refused stream is told

router = APIRouter()


def get_hub(request: Request) -> EventHub:
    return cast(EventHub, request.app.state.events_hub)


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
                       **answers(422, 503, why={422: "last_event_id is not a stream id",
                                                503: "too many streams open (see Retry-After)"})})
async def stream_events(
    who: Auth,
    hub: Annotated[EventHub, Depends(get_hub)],
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
        start = events.check_id(resume) if resume else await hub.run(partial(events.latest_id, hub.client))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    subscription = hub.subscribe()
    if subscription is None:
        raise HTTPException(503, f"{hub.max_streams} event streams are open; try again later",
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    filters = visibility.GrantedEvents(job=job, kind=kind, connection=connection,
                                       grant=who.grant if who.grant.limited else None)
    return StreamingResponse(_frames(hub, subscription, start, filters), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _frames(hub: EventHub, subscription: Subscription, position: str,
                  filters: events.EventFilters) -> AsyncIterator[str]:
    try:
        yield "retry: 2000\n\n"  # how soon a browser reconnects (with Last-Event-ID)
        behind, quiet_since = True, time.monotonic()  # first: what Redis holds after the start
        while True:
            if behind:  # read from Redis, a batch at a time
                async for batch in hub.catch_up(position, filters):
                    position = batch.position
                    for event in batch.events:
                        yield event.sse()
                        quiet_since = time.monotonic()
            else:
                live, position = await _live(subscription, position, filters, quiet_since)
                for frame in live if live is not None else [": heartbeat\n\n"]:
                    yield frame
                    quiet_since = time.monotonic()
            behind = subscription.take_lag()
    finally:
        hub.unsubscribe(subscription)


async def _live(subscription: Subscription, position: str, filters: events.EventFilters,
                quiet_since: float) -> tuple[list[str] | None, str]:
    """The frames of the next live batch (its events after ``position`` that match) and the new
    position; None when ``HEARTBEAT_SECONDS`` since ``quiet_since`` passed first."""
    wait = max(0.0, quiet_since + HEARTBEAT_SECONDS - time.monotonic())
    try:
        batch = await asyncio.wait_for(subscription.batches.get(), wait)
    except TimeoutError:
        return None, position
    fresh = [e for e in batch if newer(e.id, position)]
    if fresh:
        position = fresh[-1].id
    return [e.sse() for e in fresh if filters.match(e)], position


@router.post("/jobs/{job_id}/notify", status_code=202, response_model=DeliveryRecord,
             responses=answers(404, 409, why={404: "no such job",
                                              409: "no callback_url, or the job has not ended"}))
def redeliver(job_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    """Deliver the ended job's webhook again: a new delivery (new id), due now."""
    visibility.check(ferry, who.grant, job_id)
    try:
        delivery = ferry.notify(job_id)
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except NotifyRefused as exc:
        raise HTTPException(409, str(exc)) from None
    return JSONResponse(delivery.model_dump(mode="json"), status_code=202)
