"""The job event stream: every state change of every job, appended to one capped Redis Stream
(``keys.events()``), served by ``GET /events`` (server-sent events) and ``ferry events``.

An entry has two fields: ``type`` and ``data`` (JSON: job, kind, connection, step, status, time,
plus ``delay`` for a retry and ``run`` where a run starts or ends). The store appends it in the
MULTI or Lua script of the transition it describes, so a state change and its event are written
together or not at all. Entry ids grow, and ``XREAD`` returns only entries after the id it is given: a reader that
keeps the id of the last event it handled and resumes after it sees every event exactly once, as
long as the stream still holds that id (it keeps roughly ``[events] max_length`` entries).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from producers import keys
from producers.records import utcnow

QUEUED = "job.queued"
STEP_STARTED = "step.started"
STEP_SUCCEEDED = "step.succeeded"
STEP_RETRYING = "step.retrying"
SUCCEEDED = "job.succeeded"
FAILED = "job.failed"
CANCELLED = "job.cancelled"
REPLAYED = "job.replayed"
SCHEDULED = "job.scheduled"  # stored to start at its not_before; job.queued follows at its release
STEP_PROGRESS = "step.progress"  # an upload's bytes, at most once a second per job (never a webhook)
TYPES = (QUEUED, STEP_STARTED, STEP_SUCCEEDED, STEP_RETRYING, SUCCEEDED, FAILED, CANCELLED, REPLAYED,
         STEP_PROGRESS, SCHEDULED)
ENDINGS = (SUCCEEDED, FAILED, CANCELLED)  # the events a webhook reports
BATCH_COMPLETED = "batch.completed"  # a batch's event and webhook (lua/lib/batch.lua writes it)

DEFAULT_MAX_LENGTH = 100_000
# Progress events the stream holds at most (the oldest are deleted). State changes trim it to
# their max length plus this, so a busy hour of uploads never pushes a state change out.
PROGRESS_KEPT = 10_000
START = "0-0"  # read from the oldest event the stream still holds
_ID = re.compile(r"^\d+(-\d+)?$")


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    id: str = ""  # the stream id, once appended

    def as_json(self) -> dict[str, Any]:
        """What ``ferry events --json`` prints, one object a line."""
        return {"id": self.id, "event": self.type, **self.data}

    def sse(self) -> str:
        """The event as one server-sent event (``data`` is one line of JSON)."""
        return f"id: {self.id}\nevent: {self.type}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


def new(type_: str, *, job: str, kind: str, connection: str, status: str, step: str | None = None,
        tenant: str | None = None, **extra: Any) -> Event:
    """An event about ``job``, stamped now; its ``tenant`` only when the job has one (a reader
    limited to some tenants, ``GET /events`` with such a token, sees the events of their jobs)."""
    data = {"job": job, "kind": kind, "connection": connection, "step": step, "status": status, "time": utcnow()}
    if tenant:
        data["tenant"] = tenant
    return Event(type_, {**data, **extra})


def append(pipe_or_client: Any, event: Event, max_length: int = DEFAULT_MAX_LENGTH) -> None:
    """One ``XADD … MAXLEN ~ max_length``: into the caller's MULTI when given a pipeline."""
    pipe_or_client.xadd(keys.events(), {"type": event.type, "data": json.dumps(event.data, separators=(",", ":"))},
                        maxlen=max_length, approximate=True)


@dataclass(frozen=True)
class EventFilters:
    """Which events a reader wants; every filter given must match."""

    job: str | None = None
    kind: str | None = None
    connection: str | None = None
    tenant: str | None = None

    def match(self, event: Event) -> bool:
        return all(want is None or event.data.get(name) == want
                   for name, want in (("job", self.job), ("kind", self.kind), ("connection", self.connection),
                                      ("tenant", self.tenant)))


@dataclass(frozen=True)
class Batch:
    events: list[Event] = field(default_factory=list)
    position: str = START  # resume after this id: the last entry read, matching or not


def check_id(value: str) -> str:
    """A stream id as a reader may give it (``1712345678901-0``, ``0``); ValueError otherwise."""
    if not _ID.match(value):
        raise ValueError(f"not a stream id: {value!r} (expected <milliseconds>-<sequence>)")
    return value


def latest_id(client: redis.Redis) -> str:
    """The id of the newest event, or ``START`` when there is none: where "from now on" begins.
    (``$`` cannot be used instead across several reads: events between two reads would be lost.)"""
    newest = cast(list[tuple[str, Any]], client.xrevrange(keys.events(), count=1))
    return newest[0][0] if newest else START


def read(client: redis.Redis, after_id: str = START, filters: EventFilters | None = None, *,
         count: int = 500, block_ms: int | None = None) -> Batch:
    """The events after ``after_id`` (up to ``count`` entries read), those matching ``filters``.
    ``block_ms``: wait that long for a first entry when there is none yet."""
    check_id(after_id)
    reply = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]],
                 client.xread({keys.events(): after_id}, count=count, block=block_ms))
    entries = reply[0][1] if reply else []
    wanted = filters or EventFilters()
    events = [e for e in (_event(i, f) for i, f in entries) if wanted.match(e)]
    return Batch(events, entries[-1][0] if entries else after_id)


def follow(client: redis.Redis, after_id: str = START, filters: EventFilters | None = None, *,
           block_ms: int = 1000) -> Iterator[Event]:
    """Every matching event after ``after_id``, then each new one as it comes (forever)."""
    position = after_id
    while True:
        batch = read(client, position, filters, block_ms=block_ms)
        position = batch.position
        yield from batch.events


def _event(entry_id: str, fields: dict[str, str]) -> Event:
    return Event(fields.get("type", ""), json.loads(fields.get("data") or "{}"), entry_id)
