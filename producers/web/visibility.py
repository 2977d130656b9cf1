"""What a token sees: a job outside its grant's connections or tenants does not exist for it. Reads
answer 404 for such a job, lists and counts leave it out, ``/events`` never sends its events, and
actions on many jobs act only on the visible ones.

A list is narrowed in the store when the grant has one connection (exact pages); otherwise each
page is filtered after the read, so a page may hold fewer jobs than asked (its cursor still goes on).
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from starlette.exceptions import HTTPException

from producers import events
from producers.client import Ferry
from producers.errors import JobNotFound
from producers.kinds import KINDS
from producers.records import JobRecord, JobStatus
from producers.store import Filters
from producers.web.grants import Grant


def job(ferry: Ferry, grant: Grant, job_id: str) -> JobRecord:
    """The job, or 404 when there is none or the grant does not see it (the same answer)."""
    try:
        record = ferry.store.get(job_id)
    except JobNotFound:
        record = None
    if record is None or not grant.sees(record):
        raise HTTPException(404, f"no job {job_id}")
    return record


def sees(ferry: Ferry, grant: Grant, job_id: str) -> bool:
    """False when the grant does not see the job; True when it does or there is no such job
    (the action then answers its own 404)."""
    if not grant.limited:
        return True
    found = ferry.store.rows([job_id])
    return not found or grant.sees(found[0])


def check(ferry: Ferry, grant: Grant, job_id: str) -> None:
    """404 unless the grant sees the job (before an action on it)."""
    if not sees(ferry, grant, job_id):
        raise HTTPException(404, f"no job {job_id}")


def connection_filter(grant: Grant, connection: str | None) -> tuple[bool, str | None]:
    """(whether anything can match, the connection to select by) for a list filtered by
    ``connection``: a connection the grant does not see matches nothing; none given is the
    grant's only connection, when it has one."""
    if connection is not None:
        return grant.sees_connection(connection), connection
    return True, grant.only_connection()


def narrowed(grant: Grant, filters: Filters) -> Filters | None:
    """``filters`` narrowed to the grant in the store where it can be; None: nothing can match."""
    possible, connection = connection_filter(grant, filters.connection)
    return replace(filters, connection=connection) if possible else None


def ids(ferry: Ferry, grant: Grant, chosen: Sequence[str]) -> list[str]:
    """The jobs among ``chosen`` that the grant sees (all of them for an unlimited grant)."""
    if not grant.limited:
        return list(chosen)
    return [row.id for row in ferry.store.rows(list(chosen)) if grant.sees(row)]


def selected(ferry: Ferry, grant: Grant, filters: Filters, given: Sequence[str] | None,
             limit: int | None = None) -> list[str] | None:
    """For an action on many jobs: the visible ids among ``given`` or matching ``filters``; None
    when the grant sees every job (the action may then select by itself, as before)."""
    if not grant.limited:
        return None
    if given is not None:
        return ids(ferry, grant, given)
    scoped = narrowed(grant, filters)
    found = [] if scoped is None else ids(ferry, grant, ferry.store.select(scoped).ids)
    return found[:limit] if limit is not None else found


@dataclass(frozen=True)
class Counts:
    by_status: dict[str, int]
    by_kind: dict[str, int]
    by_connection: dict[str, int]


def counts(ferry: Ferry, grant: Grant) -> Counts:
    """The jobs of the grant's connections by status, kind and connection, from the indexes
    (one round trip). The indexes do not split by tenant, so a tenants-limited grant counts none."""
    config = ferry.config
    seen = [] if grant.tenants is not None else grant.visible(sorted(config.connections))
    combos = [(status.value, kind.name, name) for name in seen
              for kind in KINDS.values() if kind.service == config.connections[name].service
              for status in JobStatus]
    found = Counts({s.value: 0 for s in JobStatus}, {k: 0 for k in KINDS}, {n: 0 for n in seen})
    for (status, kind, name), n in zip(combos, ferry.store.job_counts(combos), strict=True):
        found.by_status[status] += n
        found.by_kind[kind] += n
        found.by_connection[name] += n
    return found


@dataclass(frozen=True)
class GrantedEvents(events.EventFilters):
    """The reader's filters, and only the events of jobs its grant sees."""

    grant: Grant | None = None

    def match(self, event: events.Event) -> bool:
        return super().match(event) and (self.grant is None or self.grant.sees_event(event.data))


def workers(ferry: Ferry, grant: Grant, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live workers, each showing only the running steps of jobs the grant sees."""
    if not grant.limited:
        return found
    seen = set(ids(ferry, grant, [r["job_id"] for w in found for r in w.get("running", [])]))
    return [{**w, "running": [r for r in w.get("running", []) if r["job_id"] in seen]} for w in found]
