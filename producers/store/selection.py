"""Which jobs: filters over the store's indexes, and paging through them without loading all.

The store keeps one sorted set per status, kind and connection, scored by creation time, so a
time range is a score range. A page walks the smallest matching index by score and checks the
others with ZMSCORE (and, when the filter names a failed step or an HTTP status, each candidate's
``error`` field), a batch at a time: a page costs the same at 100 000 jobs as at 100.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis

from producers import keys
from producers.kinds import KINDS
from producers.priority import PRIORITIES
from producers.records import JobStatus, StepError
from producers.store import codec

BATCH = 500
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# ---- filters -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    """Which jobs: every field that is set must match. Times bound ``created_at`` (until: before)."""

    status: str | None = None
    kind: str | None = None
    connection: str | None = None
    error_step: str | None = None
    http_status: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    file_name: str | None = None  # part of the job's file name, any case
    batch: str | None = None  # the batch's id
    error: str | None = None  # part of the error's message, any case
    priority: str | None = None  # high | normal | low (read from each candidate's meta)
    tenant: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Filters:
        """From CLI options, a query string or a JSON body; blank values mean "any".
        Raises ValueError naming the bad field."""
        def text(name: str) -> str | None:
            value = raw.get(name)
            return str(value).strip() or None if value is not None else None

        status = text("status")
        if status is not None and status not in {s.value for s in JobStatus}:
            raise ValueError(f"status: unknown status {status!r}")
        kind = text("kind")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind: unknown kind {kind!r}")
        http = text("http_status")
        if http is not None and not http.isdigit():
            raise ValueError(f"http_status: not a number: {http!r}")
        priority = text("priority")
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"priority: one of {', '.join(PRIORITIES)}, not {priority!r}")
        return cls(status=status, kind=kind, connection=text("connection"),
                   error_step=text("error_step"), http_status=int(http) if http else None,
                   since=parse_time(text("since"), "since"), until=parse_time(text("until"), "until"),
                   file_name=text("file_name"), batch=text("batch"), error=text("error"),
                   priority=priority, tenant=text("tenant"))

    @property
    def reads_records(self) -> bool:
        """True when matching needs each candidate's error or file, not just the indexes."""
        return self.reads_errors or self.reads_meta

    @property
    def reads_meta(self) -> bool:
        return self.file_name is not None or self.priority is not None or self.tenant is not None

    @property
    def reads_errors(self) -> bool:
        return self.error_step is not None or self.http_status is not None or self.error is not None

    def as_query(self) -> dict[str, str]:
        """The set fields as strings (query string, JSON answer)."""
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            out[name] = _iso(value) if isinstance(value, datetime) else str(value)
        return out

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.as_query().items()) or "all jobs"


def parse_time(value: str | None, name: str = "time") -> datetime | None:
    """ISO-8601 (naive means UTC) or an age like ``90m``, ``2h``, ``7d`` (that long ago)."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip().lower())
    if relative:
        seconds = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not a time (ISO-8601 or an age like 2h): {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _score(at: datetime) -> int:
    # The store scores a job by creation time in ms x 1000 (+ a counter below 1000).
    return int(at.timestamp() * 1000) * 1000


# ---- selection ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """One page of matching ids (newest first) and where the next page starts."""

    ids: list[str]
    next_cursor: str | None
    scanned: int


def _indexes(filters: Filters) -> list[str]:
    chosen = [k for k in (
        keys.index_status(filters.status) if filters.status else None,
        keys.index_kind(filters.kind) if filters.kind else None,
        keys.index_connection(filters.connection) if filters.connection else None,
        keys.batch_jobs(filters.batch) if filters.batch else None,
    ) if k]
    return chosen or [keys.index_all()]


def _index(client: redis.Redis, filters: Filters) -> str:
    """One sorted set holding exactly the index-matching jobs (for counting)."""
    chosen = _indexes(filters)
    if len(chosen) == 1:
        return chosen[0]
    tmp = keys.intersection(chosen)
    with client.pipeline() as pipe:
        pipe.zinterstore(tmp, chosen, aggregate="MAX")
        pipe.expire(tmp, 10)
        pipe.execute()
    return tmp


def _error_matches(raw: str | None, filters: Filters) -> bool:
    if raw is None:
        return False
    error = StepError.model_validate_json(raw)
    if filters.error_step is not None and error.step != filters.error_step:
        return False
    if filters.error is not None and filters.error.lower() not in error.message.lower():
        return False
    return filters.http_status is None or error.status == filters.http_status


def select_page(client: redis.Redis, filters: Filters, *, limit: int = 50,
                cursor: str | None = None, scan_budget: int = 5000) -> Selection:
    """Up to ``limit`` matching ids, newest first, starting below ``cursor`` (a score).

    Walks the smallest matching index by score and checks the other indexes with ZMSCORE (and,
    for a failed step or HTTP status, each candidate's ``error`` field), a batch at a time, so
    a page costs the same at 100 000 jobs as at 100. With such narrowing filters at most
    ``scan_budget`` entries are examined per call; a short page with a cursor then means "keep
    going", not "no more"."""
    if cursor is not None and not cursor.isdigit():
        raise ValueError(f"cursor: not a cursor from an earlier page: {cursor!r}")
    indexes = _indexes(filters)
    if len(indexes) > 1:
        with client.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.zcard(index)
            sizes = pipe.execute()
        indexes = [i for _, i in sorted(zip(sizes, indexes, strict=True))]
    base, others = indexes[0], indexes[1:]
    narrowing = bool(others) or filters.reads_records
    top = f"({cursor}" if cursor else (f"({_score(filters.until)}" if filters.until else "+inf")
    bottom = str(_score(filters.since)) if filters.since else "-inf"
    found: list[str] = []
    scanned = 0
    last: float | None = None
    while len(found) < limit and scanned < scan_budget:
        want = (min(max(4 * limit, 100), BATCH, scan_budget - scanned) if narrowing
                else limit - len(found))
        batch = cast(list[tuple[str, float]], client.zrevrangebyscore(
            base, top, bottom, start=0, num=max(want, 1), withscores=True))
        if not batch:
            return Selection(found, None, scanned)
        scanned += len(batch)
        keep = _narrow(client, [job_id for job_id, _ in batch], others, filters)
        for (job_id, score), ok in zip(batch, keep, strict=True):
            last = score
            if ok:
                found.append(job_id)
                if len(found) == limit:
                    break
        top = f"({last:.0f}"
    more = client.zrevrangebyscore(base, top, bottom, start=0, num=1)
    return Selection(found, f"{last:.0f}" if more and last is not None else None, scanned)


def _narrow(client: redis.Redis, ids: list[str], others: list[str],
            filters: Filters) -> list[bool]:
    """Which of ``ids`` are also in every index of ``others`` and match the error filters."""
    if not others and not filters.reads_records:
        return [True] * len(ids)
    with client.pipeline(transaction=False) as pipe:
        for index in others:
            pipe.zmscore(index, ids)
        if filters.reads_errors:
            for job_id in ids:
                pipe.hget(keys.job(job_id), codec.ERROR)
        if filters.reads_meta:
            for job_id in ids:
                pipe.hget(keys.job(job_id), codec.META)
        replies = pipe.execute()
    keep = [True] * len(ids)
    for scores in replies[: len(others)]:
        keep = [k and s is not None for k, s in zip(keep, scores, strict=True)]
    rest = replies[len(others):]
    if filters.reads_errors:
        errors, rest = rest[: len(ids)], rest[len(ids):]
        keep = [k and _error_matches(e, filters) for k, e in zip(keep, errors, strict=True)]
    if filters.reads_meta:
        keep = [k and _meta_matches(m, filters) for k, m in zip(keep, rest, strict=True)]
    return keep


def _meta_matches(meta: str | None, filters: Filters) -> bool:
    """Whether a job's stored meta matches the file name, priority and tenant filters."""
    if meta is None:
        return False
    if filters.file_name is not None and filters.file_name.lower() not in codec.file_name(meta).lower():
        return False
    found = json.loads(meta)
    return ((filters.priority is None or codec.priority_of(found) == filters.priority)
            and (filters.tenant is None or codec.tenant_of(found) == filters.tenant))


def count_indexed(client: redis.Redis, filters: Filters) -> int:
    """How many jobs match filters that the indexes answer alone, counted inside Redis."""
    assert not filters.reads_records, "a failed step or HTTP status is matched record by record"
    index = _index(client, filters)
    if filters.since is None and filters.until is None:
        return int(client.zcard(index))
    top = f"({_score(filters.until)}" if filters.until else "+inf"
    bottom = str(_score(filters.since)) if filters.since else "-inf"
    return int(client.zcount(index, bottom, top))
