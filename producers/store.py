"""The job store: one Redis hash per job plus sorted-set indexes, the single source of truth.

Layout (keys in ``producers.keys``)::

    ferry:job:{id}            hash  meta (JSON), status, updated_at, finished_at, result, error, runs,
                                    step:{name} (JSON StepRecord, one field per declared step)
    ferry:secret:{id}:{step}  string  a step's short-lived secret output; expires with the secret
    ferry:idx:all             zset  every job, scored by creation time (unique score, newest last)
    ferry:idx:status:{s}      zset  the same, one per status (a job sits in exactly one)
    ferry:idx:kind:{k}, ferry:idx:conn:{c}
    ferry:idem:{key}          string  job id for an idempotency key, for the retention window

Status by id is one HGETALL; lists page through the zsets by score (``producers.selection``)
without scanning keys.
Succeeded jobs expire after the retention; failed ones stay until replayed or purged. Index entries
of expired jobs are dropped lazily when a listing meets them, and by ``sweep``.
"""

from __future__ import annotations

import builtins
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from producers import keys
from producers.errors import IdempotencyConflict, JobNotFound, Problem
from producers.records import (
    MAX_ATTEMPT_HISTORY,
    AttemptStatus,
    FileInfo,
    JobRecord,
    JobStatus,
    RunRecord,
    StepError,
    StepRecord,
    StepStatus,
    utc_in,
    utcnow,
)
from producers.selection import BATCH, Filters, Selection, count_indexed, select_page

_STEP = "step:"


@dataclass(frozen=True)
class Page:
    jobs: list[JobRecord]
    next_cursor: str | None


@dataclass
class JobState:
    """What a transition needs to know about a job: read in one HMGET, or handed back by
    ``begin_step`` so the step's end needs no read at all."""

    job_id: str
    status: JobStatus
    score: float
    runs: list[dict[str, Any]]
    step_record: StepRecord | None = None  # when the read named a step

    @property
    def step(self) -> StepRecord:
        assert self.step_record is not None, "read without a step"
        return self.step_record

    @property
    def run_number(self) -> int:
        return len(self.runs) or 1

    def finished_runs(self, outcome: str, now: str, error: StepError | None = None) -> str:
        """The runs, the current one ended with ``outcome`` (and, when it failed, why)."""
        if self.runs:
            self.runs[-1].update(finished_at=now, outcome=outcome,
                                 error=error.model_dump(exclude_none=True) if error else None)
        return _dump([{k: v for k, v in run.items() if v is not None} for run in self.runs])


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a job while one of its steps runs (the ``lease`` field of the job's
    hash: ``token:until-ms``): a second copy of the step's message waits instead of running
    the step twice at once, and the reaper knows a step whose lease lapsed lost its worker."""

    token: str
    seconds: float

    @classmethod
    def new(cls, seconds: float) -> Lease:
        return cls(uuid.uuid4().hex, seconds)


@dataclass(frozen=True)
class Begun:
    """What ``begin_step`` found: ``started`` (``state`` to end the step with), ``done`` (the
    step already succeeded or was reused), ``ended`` (the job succeeded or failed), ``busy``
    (another worker holds the lease) or ``missing`` (no such job or step)."""

    outcome: str
    job: JobRecord | None = None
    state: JobState | None = None
    paused_until: str | None = None  # the connection's 429 pause as read (``keys.rate_limit_pause``)


RedisCommand = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class OutboxEntry:
    """A step message a transition recorded for a broker other than the store's Redis: the
    worker publishes it right after, then deletes it; the reaper publishes what stays."""

    job_id: str
    step: str
    queue: str
    eta: float | None = None  # epoch seconds: a delayed retry
    retries: int = 0  # Celery's ``retries`` header: how many retries of this step came before

    def encode(self) -> str:
        return _dump([self.job_id, self.step, self.queue, self.eta, self.retries])

    @classmethod
    def decode(cls, text: str) -> OutboxEntry:
        job_id, step, queue, eta, retries = json.loads(text)
        return cls(job_id, step, queue, eta, retries)


@dataclass(frozen=True)
class Outgoing:
    """The next message of a job, written by the same call as the transition that leads to it:
    the Redis commands that publish it (the broker is the store's own Redis), or an outbox
    entry (another broker)."""

    commands: tuple[RedisCommand, ...] = ()
    outbox: OutboxEntry | None = None


PERSIST = -1  # ``_settle(expire=...)``: the record never expires (a failed job)


def _lease_until(value: str | None) -> float:
    _, _, until = (value or "").partition(":")
    return int(until) / 1000 if until else 0.0


# A step's record is JSON in the job's hash; _BEGIN edits it as the Python code would
# (StepRecord.begin_attempt): compact (no nulls), so cjson's one ambiguity, an empty array read
# back as {}, cannot arise: a running step has no result, and its history is never empty.
# KEYS[1] job. ARGV: step field, lease token ('' = no lease), now ms, lease ms, now ISO,
# status index prefix, history kept, job id, the connection's pause key around its name.
# Returns {outcome, the job's hash as read, the step's new JSON, the connection's pause}.
_BEGIN = """
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return {'missing', {}} end
local f = {}
for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
local raw = f[ARGV[1]]
if not raw then return {'missing', {}} end
local function given(x) if x == cjson.null then return nil end return x end
local step = cjson.decode(raw)
local was = given(step.status) or 'pending'
if was == 'succeeded' or was == 'reused' then return {'done', flat} end
if f.status == 'succeeded' or f.status == 'failed' then return {'ended', flat} end
local now_ms = tonumber(ARGV[3])
if ARGV[2] ~= '' and f.lease and f.lease ~= '' then
  local holder, untl = string.match(f.lease, '^(.*):(%d+)$')
  if holder ~= ARGV[2] and tonumber(untl) > now_ms then return {'busy', flat} end
end
local runs = cjson.decode(f.runs or '[]')
step.status = 'running'
step.attempts = (given(step.attempts) or 0) + 1
step.started_at = given(step.started_at) or ARGV[5]
step.next_attempt_at = nil
step.error = nil
local history = given(step.history) or {}
local last = history[#history]
if last and (given(last.status) or 'running') == 'running' then
  last.status = 'lost'
  last.finished_at = nil
  last.retry_delay = nil
end
history[#history + 1] = {run = math.max(#runs, 1), number = step.attempts, started_at = ARGV[5]}
local keep = tonumber(ARGV[7])
while #history > keep do table.remove(history, 1) end
step.history = history
local json = cjson.encode(step)
local write = {KEYS[1], ARGV[1], json, 'updated_at', ARGV[5], 'status', 'running'}
if ARGV[2] ~= '' then
  write[#write + 1] = 'lease'
  write[#write + 1] = ARGV[2] .. ':' .. (now_ms + tonumber(ARGV[4]))
end
redis.call('HSET', unpack(write))
if f.status ~= 'running' then
  local before = ARGV[6] .. (f.status or 'queued')
  local score = f.score or redis.call('ZSCORE', before, ARGV[8]) or 0
  redis.call('ZREM', before, ARGV[8])
  redis.call('ZADD', ARGV[6] .. 'running', score, ARGV[8])
end
local meta = cjson.decode(f.meta)
local paused = redis.call('GET', ARGV[9] .. meta.connection .. ARGV[10])
return {'started', flat, json, paused}
"""

# KEYS[1] job. ARGV: job id, lease token ('' = none to check), status now, new status ('' = unchanged),
# score, status index prefix, throughput key ('' = none), expire (seconds; -1 persist; 0 keep),
# outbox key, outbox entry ('' = none), now ms, the next message's commands (JSON), number of
# field pairs, the pairs. Returns 1, or 0 when the lease is another holder's or the job is gone.
_SETTLE = """
local job = ARGV[1]
if ARGV[2] ~= '' then
  local lease = redis.call('HGET', KEYS[1], 'lease')
  if not lease or string.sub(lease, 1, #ARGV[2] + 1) ~= ARGV[2] .. ':' then return 0 end
end
local n = tonumber(ARGV[13])
local write = {}
for i = 14, 13 + 2 * n do write[#write + 1] = ARGV[i] end
if ARGV[2] ~= '' then
  write[#write + 1] = 'lease'
  write[#write + 1] = ''
end
redis.call('HSET', KEYS[1], unpack(write))
if ARGV[4] ~= '' then
  redis.call('ZREM', ARGV[6] .. ARGV[3], job)
  redis.call('ZADD', ARGV[6] .. ARGV[4], ARGV[5], job)
end
if ARGV[7] ~= '' and redis.call('INCR', ARGV[7]) == 1 then redis.call('EXPIRE', ARGV[7], 7200) end
local expire = tonumber(ARGV[8])
if expire > 0 then redis.call('EXPIRE', KEYS[1], expire) elseif expire < 0 then redis.call('PERSIST', KEYS[1]) end
if ARGV[10] ~= '' then redis.call('ZADD', ARGV[9], ARGV[11], ARGV[10]) end
for _, command in ipairs(cjson.decode(ARGV[12])) do redis.call(unpack(command)) end
return 1
"""

# KEYS[1] job. ARGV: token, new expiry ms. Extends the lease only while it is this holder's.
_RENEW = """
local lease = redis.call('HGET', KEYS[1], 'lease')
if not lease or string.sub(lease, 1, #ARGV[1] + 1) ~= ARGV[1] .. ':' then return 0 end
redis.call('HSET', KEYS[1], 'lease', ARGV[1] .. ':' .. ARGV[2])
return 1
"""


class _Scripts:
    """The transitions' Lua scripts, loaded once per client (EVALSHA; reloaded after a restart)."""

    def __init__(self, client: redis.Redis) -> None:
        self.begin = client.register_script(_BEGIN)
        self.settle = client.register_script(_SETTLE)
        self.renew = client.register_script(_RENEW)


def _fields(values: dict[str, str]) -> Mapping[Any, Any]:
    """redis-py's stubs want a mapping over every key type; ours are all str."""
    return values


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class JobStore:
    """Reads and writes job records. Every write that changes status also moves the index entry."""

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        retention_seconds: int = 7 * 24 * 3600,
        idempotency_seconds: int = 24 * 3600,
    ) -> None:
        self.redis = redis_client
        self.retention_seconds = retention_seconds
        self.idempotency_seconds = idempotency_seconds

    # ---- producer side -------------------------------------------------------------------
    def create(
        self,
        *,
        kind: str,
        connection: str,
        steps: Iterable[str],
        params: dict[str, Any],
        file: FileInfo | None,
        idempotency_key: str | None = None,
        trigger: str = "submit",
    ) -> tuple[JobRecord, bool]:
        """Store a new queued job. With an idempotency key already seen, return that job and False.

        WATCH on the key makes this safe across concurrent producers: of N identical requests,
        exactly one creates the job and the others read it back.
        """
        job_id = uuid.uuid4().hex
        new = NewJob(kind=kind, connection=connection, steps=tuple(steps), params=params, file=file,
                     idempotency_key=idempotency_key)
        fields = _new_job_fields(new, job_id, self._next_score(), utcnow(), trigger)
        score = float(fields["score"])
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    if idempotency_key:
                        pipe.watch(keys.idempotency(idempotency_key))  # type: ignore[no-untyped-call]
                        existing = pipe.get(keys.idempotency(idempotency_key))
                        if existing:
                            pipe.unwatch()
                            found = self.find(str(existing))
                            if found is not None:
                                _check_same_job(found, idempotency_key, kind, connection, params, file)
                                return found, False
                    pipe.multi()
                    if idempotency_key:
                        pipe.set(
                            keys.idempotency(idempotency_key), job_id, ex=self.idempotency_seconds
                        )
                    pipe.hset(keys.job(job_id), mapping=_fields(fields))
                    pipe.zadd(keys.index_all(), {job_id: score})
                    pipe.zadd(keys.index_kind(kind), {job_id: score})
                    pipe.zadd(keys.index_connection(connection), {job_id: score})
                    pipe.zadd(keys.index_status(JobStatus.QUEUED.value), {job_id: score})
                    pipe.sadd(keys.index_names("kind"), kind)
                    pipe.sadd(keys.index_names("conn"), connection)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        return self.get(job_id), True

    def _next_score(self) -> float:
        # Milliseconds x 1000 plus a rolling counter: unique per job, ordered by creation, and
        # exact in a double (< 2**53), so a score is a stable paging cursor.
        seq = int(self.redis.incr(keys.sequence())) % 1000
        return float(int(time.time() * 1000) * 1000 + seq)

    # ---- reads ---------------------------------------------------------------------------
    def find(self, job_id: str) -> JobRecord | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.job(job_id)))
        return _decode(raw) if raw else None

    def get(self, job_id: str) -> JobRecord:
        record = self.find(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        connection: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Newest first, ``limit`` per page; ``cursor`` is the ``next_cursor`` of the page before.
        A record that expired since the index named it is left out (and leaves the index)."""
        chosen = self.select(Filters(status=status, kind=kind, connection=connection), limit=limit,
                             cursor=cursor)
        return Page(self._records(chosen.ids), chosen.next_cursor)

    def select(self, filters: Filters, *, limit: int | None = None,
               cursor: str | None = None) -> Selection:
        """The ids matching ``filters``, newest first, from ``cursor`` on: ``limit`` of them (None:
        every one), and the cursor of the next page. The one loop over ``select_page``, which
        may stop short of a page when narrowing filters use up its scan budget."""
        ids: builtins.list[str] = []
        scanned = 0
        while limit is None or len(ids) < limit:
            want = BATCH if limit is None else min(BATCH, limit - len(ids))
            page = select_page(self.redis, filters, limit=want, cursor=cursor, scan_budget=50 * BATCH)
            ids += page.ids
            scanned += page.scanned
            cursor = page.next_cursor
            if cursor is None:
                break
        return Selection(ids, cursor, scanned)

    def count(self, filters: Filters) -> int:
        """How many jobs match: inside Redis when the indexes answer, else by walking them."""
        if filters.reads_records:
            return len(self.select(filters).ids)
        return count_indexed(self.redis, filters)

    def _records(self, ids: builtins.list[str]) -> builtins.list[JobRecord]:
        """The records of ``ids`` in one round trip; ids whose record expired leave the indexes."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            raws = pipe.execute()
        found = []
        for job_id, raw in zip(ids, raws, strict=True):
            if raw:
                found.append(_decode(raw))
            else:
                self._forget(job_id)
        return found

    def counts(self) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            for s in JobStatus:
                pipe.zcard(keys.index_status(s.value))
            values = pipe.execute()
        return {s.value: int(v) for s, v in zip(JobStatus, values, strict=True)}

    def iter_ids(self, *, status: str | None = None, kind: str | None = None,
                 connection: str | None = None) -> Iterator[str]:
        """Every job id matching the filters, newest first."""
        yield from self.select(Filters(status=status, kind=kind, connection=connection)).ids

    def rows(self, ids: builtins.list[str]) -> builtins.list[JobRow]:
        """What a job list shows of each of ``ids``, in one round trip and without decoding the
        steps; ids whose record expired are left out."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), list(_ROW_FIELDS))
            replies: builtins.list[builtins.list[str | None]] = pipe.execute()
        return [_row(values) for values in replies if values[0]]

    def statuses(self, ids: builtins.list[str]) -> builtins.list[str | None]:
        """Each job's status (None: no such job any more), in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(keys.job(job_id), "status")
            return [None if v is None else str(v) for v in pipe.execute()]

    def index_sizes(self, kinds: Iterable[str],
                    connections: Iterable[str]) -> tuple[dict[str, int], dict[str, int]]:
        """How many jobs each kind and each connection has: ({kind: n}, {connection: n})."""
        kinds, connections = builtins.list(kinds), builtins.list(connections)
        with self.redis.pipeline(transaction=False) as pipe:
            for kind in kinds:
                pipe.zcard(keys.index_kind(kind))
            for name in connections:
                pipe.zcard(keys.index_connection(name))
            values = [int(v) for v in pipe.execute()]
        return dict(zip(kinds, values[: len(kinds)], strict=True)), \
            dict(zip(connections, values[len(kinds):], strict=True))

    # ---- claims and bulk progress ------------------------------------------------------
    def claim_replay(self, job_id: str, holder: str, seconds: int) -> bool:
        """True when this caller may replay the job now; a second caller within ``seconds`` of
        the first (or before it releases) gets False."""
        return bool(self.redis.set(keys.replay_claim(job_id), holder, nx=True, ex=seconds))

    def release_replay(self, job_id: str) -> None:
        self.redis.delete(keys.replay_claim(job_id))

    def save_bulk_replay(self, state: dict[str, Any], seconds: int) -> None:
        self.redis.set(keys.bulk_replay(), _dump(state), ex=seconds)

    def last_bulk_replay(self) -> dict[str, Any] | None:
        raw = self.redis.get(keys.bulk_replay())
        return cast(dict[str, Any], json.loads(str(raw))) if raw else None

    def sweep_if_due(self, every_seconds: int = 60) -> int:
        """``sweep`` at most once per ``every_seconds`` across every caller (dashboard viewers)."""
        if self.redis.set(keys.sweep_lock(), "1", nx=True, ex=every_seconds):
            return self.sweep()
        return 0

    # ---- worker side ---------------------------------------------------------------------
    # Each transition is ONE Redis call (a Lua script, EVALSHA) and the one place to add a write
    # to it: ``begin_step`` runs _BEGIN (lease + read the job + mark the step running), the others
    # run _SETTLE through ``_settle`` (record + release the lease + status move + the next step's
    # message or outbox entry). The worker passes back the ``JobState`` that ``begin_step``
    # returned, so ending a step needs no read; called without it (tests, replay) they read first.
    def begin_step(self, job_id: str, step: str, lease: Lease | None = None) -> Begun:
        """Take the job's lease and mark ``step`` running, in one call: a new attempt starts
        (the one still open, if any, was lost with its worker) and the job is ``running``.
        Outcomes other than ``started`` change nothing: the job is gone, the step already
        succeeded (a redelivered message), the job ended, or another worker holds the lease."""
        now = utcnow()
        pause_prefix, _, pause_suffix = keys.rate_limit_pause("\0").partition("\0")
        reply = self._scripts.begin(keys=[keys.job(job_id)], args=[
            _STEP + step, lease.token if lease else "", int(time.time() * 1000),
            int(lease.seconds * 1000) if lease else 0, now, keys.index_status(""), MAX_ATTEMPT_HISTORY, job_id,
            pause_prefix, pause_suffix])
        outcome, flat = str(reply[0]), reply[1]
        if outcome == "missing":
            return Begun(outcome)
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        if outcome != "started":
            return Begun(outcome, job=_decode(raw))
        record = StepRecord.model_validate_json(reply[2])
        raw.update({_STEP + step: reply[2], "status": JobStatus.RUNNING.value, "updated_at": now})
        job = _decode(raw)
        state = JobState(job_id=job_id, status=JobStatus.RUNNING, score=self._score(job_id, raw.get("score")),
                         runs=json.loads(raw.get("runs") or "[]"), step_record=record)
        return Begun(outcome, job=job, state=state, paused_until=reply[3] or None)

    def start_step(self, job_id: str, step: str) -> StepRecord:
        """``begin_step`` without a lease (tests, tools): the step's record once running."""
        begun = self.begin_step(job_id, step)
        if begun.state is None:
            raise JobNotFound(job_id, f"step {step} ({begun.outcome})")
        return begun.state.step

    def finish_step(self, job_id: str, step: str, result: dict[str, Any], *, state: JobState | None = None,
                    lease: Lease | None = None, job_result: dict[str, Any] | None = None,
                    then: Outgoing | None = None) -> bool:
        """Record the step's output; with ``job_result`` (its last step) the job succeeds in the
        same call. ``then``: the next step's message, written with the record. False when the
        lease was lost meanwhile (another worker has the step; nothing was written)."""
        state = state or self._state(job_id, step)
        record = state.step
        now = utcnow()
        record.status = StepStatus.SUCCEEDED
        record.finished_at = now
        record.result = result
        record.error = None
        record.end_attempt(AttemptStatus.SUCCEEDED, now)
        fields = {_STEP + step: record.stored(), "updated_at": now}
        if job_result is None:
            return self._settle(state, fields, lease=lease, then=then)
        fields.update(result=_dump(job_result), finished_at=now, runs=state.finished_runs("succeeded", now))
        return self._settle(state, fields, lease=lease, status=JobStatus.SUCCEEDED,
                            expire=self.retention_seconds, then=then)

    def retry_step(self, job_id: str, step: str, error: StepError, delay: float, *,
                   state: JobState | None = None, lease: Lease | None = None,
                   then: Outgoing | None = None) -> bool:
        """The step waits ``delay`` seconds for its next attempt; ``then`` is that attempt's
        (delayed) message, written with the record."""
        state = state or self._state(job_id, step)
        record = state.step
        record.status = StepStatus.RETRYING
        record.error = error
        record.next_attempt_at = utc_in(delay)
        record.end_attempt(AttemptStatus.RETRIED, utcnow(), error, retry_delay=round(delay, 3))
        return self._settle(state, {_STEP + step: record.stored(), "updated_at": utcnow()}, lease=lease,
                            then=then)

    def mark_failed(self, job_id: str, step: str, error: StepError, *, state: JobState | None = None,
                    lease: Lease | None = None) -> bool:
        state = state or self._state(job_id, step)
        record = state.step
        now = utcnow()
        record.status = StepStatus.FAILED
        record.finished_at = now
        record.next_attempt_at = None
        record.error = error
        record.end_attempt(AttemptStatus.FAILED, now, error)
        return self._settle(state, {
            _STEP + step: record.stored(), "error": error.model_dump_json(), "finished_at": now,
            "updated_at": now, "runs": state.finished_runs("failed", now, error),
        }, lease=lease, status=JobStatus.FAILED, expire=PERSIST)

    def mark_succeeded(self, job_id: str, result: dict[str, Any]) -> None:
        """The job succeeded (its last step already recorded): ``finish_step(job_result=…)``
        does both in one call."""
        state = self._state(job_id)
        now = utcnow()
        self.redis.hdel(keys.job(job_id), "error")
        self._settle(state, {"result": _dump(result), "finished_at": now, "updated_at": now,
                             "runs": state.finished_runs("succeeded", now)},
                     status=JobStatus.SUCCEEDED, expire=self.retention_seconds)

    def renew_lease(self, job_id: str, lease: Lease) -> bool:
        """Extend ``lease`` by its length if it is still this holder's."""
        return bool(self._scripts.renew(keys=[keys.job(job_id)], args=[
            lease.token, int((time.time() + lease.seconds) * 1000)]))

    def lease_expiry(self, job_id: str) -> float:
        """When the job's lease lapses (epoch seconds; 0: nobody holds it)."""
        return _lease_until(cast(str | None, self.redis.hget(keys.job(job_id), "lease")))

    # ---- the outbox: step messages for a broker other than the store's Redis -----------------
    def outbox_due(self, older_than: float, limit: int = 1000) -> builtins.list[OutboxEntry]:
        """Entries written over ``older_than`` seconds ago and still there: their worker did
        not get to publish them (it or the broker died in between)."""
        members = self.redis.zrangebyscore(keys.outbox(), "-inf", (time.time() - older_than) * 1000,
                                           start=0, num=limit)
        return [OutboxEntry.decode(str(m)) for m in members]

    def outbox_done(self, entry: OutboxEntry) -> None:
        self.redis.zrem(keys.outbox(), entry.encode())

    def outputs(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Results of the steps that have succeeded (or were reused), by step name."""
        record = self.get(job_id)
        return {
            s.name: dict(s.result or {})
            for s in record.steps
            if s.status in (StepStatus.SUCCEEDED, StepStatus.REUSED)
        }

    def put_secret(self, job_id: str, step: str, data: dict[str, Any], ttl_seconds: float) -> None:
        """Keep a short-lived secret (the media JWT) for the next step, never past its own expiry."""
        ms = int(ttl_seconds * 1000)
        if ms > 0:
            self.redis.set(keys.job_secret(job_id, step), _dump(data), px=ms)

    def get_secret(self, job_id: str, step: str) -> dict[str, Any] | None:
        raw = self.redis.get(keys.job_secret(job_id, step))
        return json.loads(raw) if raw else None

    def drop_secret(self, job_id: str, step: str) -> None:
        self.redis.delete(keys.job_secret(job_id, step))

    # ---- replay and purge ----------------------------------------------------------------
    def begin_run(
        self, job_id: str, *, trigger: str, from_step: str, note: str | None = None
    ) -> JobRecord:
        """Start another pass: steps before ``from_step`` keep their output (marked reused), the
        rest are reset; the history of earlier runs stays in ``runs`` and each step's attempts."""
        record = self.get(job_id)
        names = [s.name for s in record.steps]
        start = names.index(from_step)
        runs = [*record.runs, RunRecord(number=len(record.runs) + 1, trigger=trigger,
                                        from_step=from_step, note=note)]
        fields: dict[str, str] = {"runs": _dump([r.model_dump(exclude_none=True) for r in runs]),
                                  "updated_at": utcnow()}
        for i, s in enumerate(record.steps):
            if i < start:
                s.status = StepStatus.REUSED
            else:
                s = StepRecord(name=s.name, history=s.history)
            fields[_STEP + s.name] = s.stored()
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.job(job_id), mapping=_fields(fields))
            pipe.hdel(keys.job(job_id), "error", "result", "finished_at")
            self._set_status(pipe, self._state(job_id), JobStatus.QUEUED)
            pipe.persist(keys.job(job_id))
            pipe.execute()
        return self.get(job_id)

    def delete(self, job_id: str) -> bool:
        record = self.find(job_id)
        if record is None:
            return False
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.job(job_id))
            for step in record.steps:
                pipe.delete(keys.job_secret(job_id, step.name))
            pipe.execute()
        self._forget(job_id, record.kind, record.connection)
        return True

    def sweep(self, batch: int = 1000) -> int:
        """Drop index entries of succeeded jobs whose record has expired. Returns how many."""
        ids = cast(builtins.list[str], self.redis.zrange(keys.index_status(JobStatus.SUCCEEDED.value), 0, batch - 1))
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(keys.job(job_id))
            alive = pipe.execute()
        gone = [j for j, a in zip(ids, alive, strict=True) if not a]
        for job_id in gone:
            self._forget(job_id)
        return len(gone)

    def throughput(self, minutes: int = 60) -> builtins.list[tuple[int, int]]:
        """Jobs finished per minute over the last ``minutes`` (oldest first): (epoch minute, n)."""
        now = int(time.time() // 60)
        span = list(range(now - minutes + 1, now + 1))
        values = self.redis.mget([keys.throughput(m) for m in span])
        return [(m, int(v or 0)) for m, v in zip(span, values, strict=True)]

    # ---- internals -----------------------------------------------------------------------
    @functools.cached_property
    def _scripts(self) -> _Scripts:
        return _Scripts(self.redis)

    def _state(self, job_id: str, step: str | None = None) -> JobState:
        fields = ["status", "score", "runs"] + ([_STEP + step] if step else [])
        values = cast(builtins.list[str | None], self.redis.hmget(keys.job(job_id), fields))
        if values[0] is None or (step and values[3] is None):
            raise JobNotFound(job_id, f"step {step}" if step else None)
        return JobState(job_id=job_id, status=JobStatus(values[0]), score=self._score(job_id, values[1]),
                        runs=json.loads(values[2] or "[]"),
                        step_record=StepRecord.model_validate_json(values[3]) if step and values[3] else None)

    def _score(self, job_id: str, stored: str | None) -> float:
        # Records written before the score was a field of the hash find it in the index.
        score = float(stored) if stored else self.redis.zscore(keys.index_all(), job_id)
        return score or self._next_score()

    def _settle(self, state: JobState, fields: dict[str, str], *, lease: Lease | None = None,
                status: JobStatus | None = None, expire: int = 0, then: Outgoing | None = None) -> bool:
        """Write a transition in one call of _SETTLE: ``fields``, the status (and its index
        entry) when it changes, the expiry, the lease released, and ``then``'s message or outbox
        entry. False (nothing written) when ``lease`` is no longer this holder's."""
        moves = status is not None and status != state.status
        if moves:
            assert status is not None
            fields = {**fields, "status": status.value}
        finished = moves and status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        then = then or Outgoing()
        pairs = [x for item in fields.items() for x in item]
        reply = self._scripts.settle(keys=[keys.job(state.job_id)], args=[
            state.job_id, lease.token if lease else "", state.status.value, status.value if moves and status else "",
            f"{state.score:.0f}", keys.index_status(""),
            keys.throughput(int(time.time() // 60)) if finished else "", expire,
            keys.outbox(), then.outbox.encode() if then.outbox else "", int(time.time() * 1000),
            json.dumps([[name, *args] for name, args in then.commands]), len(pairs) // 2, *pairs])
        if reply == 1 and moves and status is not None:
            state.status = status
        return bool(reply == 1)

    def _set_status(self, pipe: Any, state: JobState, status: JobStatus) -> None:
        job_id = state.job_id
        pipe.hset(keys.job(job_id), "status", status.value)
        for s in JobStatus:
            if s is not status:
                pipe.zrem(keys.index_status(s.value), job_id)
        pipe.zadd(keys.index_status(status.value), {job_id: state.score})

    def _forget(self, job_id: str, kind: str | None = None, connection: str | None = None) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.index_all(), job_id)
            for s in JobStatus:
                pipe.zrem(keys.index_status(s.value), job_id)
            if kind:
                pipe.zrem(keys.index_kind(kind), job_id)
            if connection:
                pipe.zrem(keys.index_connection(connection), job_id)
            pipe.execute()
        if kind is None or connection is None:
            # The record expired, so its kind and connection are unknown: drop the id from every
            # kind and connection index (their names are kept in two small sets; no key scan).
            with self.redis.pipeline(transaction=False) as pipe:
                for k in self.redis.smembers(keys.index_names("kind")):
                    pipe.zrem(keys.index_kind(str(k)), job_id)
                for c in self.redis.smembers(keys.index_names("conn")):
                    pipe.zrem(keys.index_connection(str(c)), job_id)
                pipe.execute()

    # ---- many jobs at once (Ferry.submit_many) -----------------------------------------------
    def create_many(self, jobs: Sequence[NewJob], *, also: AlsoWrite | None = None, trigger: str = "submit",
                    chunk_size: int = 500) -> builtins.list[Created | IdempotencyConflict]:
        """``create`` for many jobs: one MULTI per ``chunk_size`` jobs (records, indexes,
        idempotency keys, plus whatever ``also`` adds per new job, e.g. its Celery message, so a
        job and its message are stored together or not at all). One result per job, in order: the
        record and whether it is new, or the conflict for a key reused for a different job."""
        return _create_many(self, jobs, also=also, trigger=trigger, chunk_size=chunk_size)


@dataclass(frozen=True)
class JobRow:
    """One line of a job list: a job without its steps, parameters and results."""

    id: str
    kind: str
    connection: str
    status: str
    created_at: str
    updated_at: str | None
    finished_at: str | None
    error: StepError | None
    runs: int
    file: str | None


_ROW_FIELDS = ("meta", "status", "updated_at", "finished_at", "error", "runs")


def _row(values: builtins.list[str | None]) -> JobRow:
    meta_raw, status, updated, finished, error, runs = values
    meta = json.loads(meta_raw or "{}")
    file = meta.get("file") or {}
    return JobRow(
        id=meta["id"], kind=meta["kind"], connection=meta["connection"],
        status=status or JobStatus.QUEUED.value, created_at=meta["created_at"],
        updated_at=updated, finished_at=finished,
        error=StepError.model_validate_json(error) if error else None,
        runs=len(json.loads(runs)) if runs else 1, file=file.get("name"))


def _check_same_job(found: JobRecord, key: str, kind: str, connection: str, params: dict[str, Any],
                    file: FileInfo | None) -> None:
    """A repeated idempotency key must name the same job: same kind, connection, parameters and
    file reference (path or URL)."""
    differs = [name for name, old, new in (
        ("kind", found.kind, kind),
        ("connection", found.connection, connection),
        ("params", found.params, params),
        ("file", _file_ref(found.file), _file_ref(file)),
    ) if old != new]
    if differs:
        raise IdempotencyConflict([Problem("idempotency_key", (
            f"{key!r} was used for job {found.id} with a different {', '.join(differs)}; "
            "use a new key for a different job"))])


def _file_ref(file: FileInfo | None) -> str | None:
    return (file.path or file.uri) if file else None


def _decode(raw: dict[str, str]) -> JobRecord:
    meta = json.loads(raw["meta"])
    steps = [
        StepRecord.model_validate_json(raw[_STEP + n])
        for n in meta["steps"]
        if _STEP + n in raw
    ]
    return JobRecord(
        id=meta["id"],
        kind=meta["kind"],
        connection=meta["connection"],
        status=JobStatus(raw.get("status", "queued")),
        created_at=meta["created_at"],
        updated_at=raw.get("updated_at"),
        finished_at=raw.get("finished_at"),
        params=meta.get("params") or {},
        file=FileInfo.model_validate(meta["file"]) if meta.get("file") else None,
        idempotency_key=meta.get("idempotency_key"),
        steps=steps,
        result=json.loads(raw["result"]) if raw.get("result") else None,
        error=StepError.model_validate_json(raw["error"]) if raw.get("error") else None,
        runs=[RunRecord.model_validate(r) for r in json.loads(raw.get("runs") or "[]")],
    )


# ---- many jobs at once (Ferry.submit_many) ---------------------------------------------------------
@dataclass(frozen=True)
class NewJob:
    """A validated job about to be stored."""

    kind: str
    connection: str
    steps: tuple[str, ...]
    params: dict[str, Any]
    file: FileInfo | None = None
    idempotency_key: str | None = None


Created = tuple[JobRecord, bool]  # the record, and False when an idempotency key named an old job
AlsoWrite = Callable[[Any, JobRecord], None]  # adds commands for a new job to the write pipeline


def _new_job_fields(job: NewJob, job_id: str, score: float, now: str, trigger: str) -> dict[str, str]:
    """The hash of a new queued job: what ``JobStore.create`` writes."""
    meta = {"id": job_id, "kind": job.kind, "connection": job.connection, "created_at": now,
            "params": job.params, "file": job.file.model_dump(exclude_none=True) if job.file else None,
            "idempotency_key": job.idempotency_key, "steps": list(job.steps)}
    first_run = RunRecord(number=1, trigger=trigger, from_step=job.steps[0], started_at=now)
    # No null fields (``_decode`` reads them back as None): bytes in every queued job's hash.
    fields = {"meta": _dump({k: v for k, v in meta.items() if v is not None}),
              "status": JobStatus.QUEUED.value, "updated_at": now,
              "runs": _dump([first_run.model_dump(exclude_none=True)]), "score": f"{score:.0f}"}
    for name in job.steps:
        fields[_STEP + name] = _pending_step(name)
    return fields


@functools.cache
def _pending_step(name: str) -> str:
    """A step that has not run yet, as stored (the same few bytes for every new job)."""
    return StepRecord(name=name).stored()


def _new_record(job: NewJob, job_id: str, now: str, trigger: str) -> JobRecord:
    """What ``_decode`` would read back from ``_new_job_fields``, without encoding it twice."""
    return JobRecord(id=job_id, kind=job.kind, connection=job.connection, status=JobStatus.QUEUED,
                     created_at=now, updated_at=now, params=job.params, file=job.file,
                     idempotency_key=job.idempotency_key, steps=[StepRecord(name=n) for n in job.steps],
                     runs=[RunRecord(number=1, trigger=trigger, from_step=job.steps[0], started_at=now)])


class _Chunk:
    """One pipeline's worth of jobs, sorted out before anything is written: new jobs, jobs whose
    idempotency key names a stored job (returned as they are) or an earlier job of this chunk, and
    keys reused for a different job (refused)."""

    def __init__(self, jobs: Sequence[NewJob]) -> None:
        self.jobs = jobs
        self.ids = [uuid.uuid4().hex for _ in jobs]  # used by the jobs that turn out new
        self.existing: dict[int, JobRecord] = {}
        self.repeats: dict[int, int] = {}  # job -> the earlier job of this chunk with its key
        self.conflicts: dict[int, IdempotencyConflict] = {}

    def keys(self) -> builtins.list[str]:
        return sorted({j.idempotency_key for j in self.jobs if j.idempotency_key})

    def settle(self, found: Mapping[str, JobRecord]) -> None:
        claimed: dict[str, int] = {}
        for i, job in enumerate(self.jobs):
            key = job.idempotency_key
            if not key:
                continue
            earlier = claimed.get(key)
            old = found.get(key) or (self._draft(earlier) if earlier is not None else None)
            if old is None:
                claimed[key] = i
                continue
            try:
                _check_same_job(old, key, job.kind, job.connection, job.params, job.file)
            except IdempotencyConflict as exc:
                self.conflicts[i] = exc
                continue
            if earlier is None:
                self.existing[i] = old
            else:
                self.repeats[i] = earlier

    def _draft(self, index: int) -> JobRecord:
        job = self.jobs[index]
        return JobRecord(id=self.ids[index], kind=job.kind, connection=job.connection,
                         status=JobStatus.QUEUED, created_at="", params=job.params, file=job.file)

    def new(self) -> builtins.list[int]:
        settled = self.existing.keys() | self.repeats.keys() | self.conflicts.keys()
        return [i for i in range(len(self.jobs)) if i not in settled]

    def results(self, created: Mapping[int, JobRecord]) -> builtins.list[Created | IdempotencyConflict]:
        out: builtins.list[Created | IdempotencyConflict] = []
        for i in range(len(self.jobs)):
            if i in created:
                out.append((created[i], True))
            elif i in self.repeats:
                out.append((created[self.repeats[i]], False))
            elif i in self.existing:
                out.append((self.existing[i], False))
            else:
                out.append(self.conflicts[i])
        return out


def _create_many(store: JobStore, jobs: Sequence[NewJob], *, also: AlsoWrite | None = None,
                 trigger: str = "submit", chunk_size: int = 500) -> builtins.list[Created | IdempotencyConflict]:
    """Store many new queued jobs, ``chunk_size`` per MULTI; see ``JobStore.create_many``."""
    results: builtins.list[Created | IdempotencyConflict] = []
    for start in range(0, len(jobs), chunk_size):
        results += _create_chunk(store, jobs[start:start + chunk_size], also, trigger)
    return results


def _create_chunk(store: JobStore, jobs: Sequence[NewJob], also: AlsoWrite | None,
                  trigger: str) -> builtins.list[Created | IdempotencyConflict]:
    while True:
        chunk = _Chunk(jobs)
        with store.redis.pipeline() as pipe:
            try:
                idem_keys = chunk.keys()
                if idem_keys:
                    # As in create(): WATCH the keys, so of two producers racing for one key exactly
                    # one creates the job; the other's EXEC fails and it reads that job back.
                    pipe.watch(*[keys.idempotency(k) for k in idem_keys])  # type: ignore[no-untyped-call]
                    chunk.settle(_stored_jobs(store, idem_keys))
                created = _write_new(store, pipe, chunk, also, trigger)
                return chunk.results(created)
            except redis.WatchError:
                continue


def _stored_jobs(store: JobStore, idem_keys: builtins.list[str]) -> dict[str, JobRecord]:
    """The stored job each idempotency key names (keys whose job expired name none)."""
    ids = cast(builtins.list[str | None], store.redis.mget([keys.idempotency(k) for k in idem_keys]))
    named = {k: str(i) for k, i in zip(idem_keys, ids, strict=True) if i}
    records = {r.id: r for r in store._records(builtins.list(named.values()))} if named else {}
    return {k: records[i] for k, i in named.items() if i in records}


def _write_new(store: JobStore, pipe: Any, chunk: _Chunk, also: AlsoWrite | None,
               trigger: str) -> dict[int, JobRecord]:
    new = chunk.new()
    if not new:
        pipe.reset()
        return {}
    last = int(store.redis.incrby(f"{keys.PREFIX}:seq", len(new)))
    millis, now = int(time.time() * 1000), utcnow()
    pipe.multi()
    created: dict[int, JobRecord] = {}
    indexes: dict[str, dict[str, float]] = {}  # one ZADD per index for the whole chunk
    for n, i in enumerate(new):
        job, job_id = chunk.jobs[i], chunk.ids[i]
        # As _next_score: milliseconds x 1000 plus the rolling counter, unique per job.
        score = float(millis * 1000 + (last - len(new) + 1 + n) % 1000)
        fields = _new_job_fields(job, job_id, score, now, trigger)
        if job.idempotency_key:
            pipe.set(keys.idempotency(job.idempotency_key), job_id, ex=store.idempotency_seconds)
        pipe.hset(keys.job(job_id), mapping=_fields(fields))
        for index in (keys.index_all(), keys.index_kind(job.kind), keys.index_connection(job.connection),
                      keys.index_status(JobStatus.QUEUED.value)):
            indexes.setdefault(index, {})[job_id] = score
        created[i] = _new_record(job, job_id, now, trigger)
        if also is not None:
            also(pipe, created[i])
    for index, members in indexes.items():
        pipe.zadd(index, members)
    for which, names in (("kind", {chunk.jobs[i].kind for i in new}),
                         ("conn", {chunk.jobs[i].connection for i in new})):
        pipe.sadd(keys.index_names(which), *sorted(names))
    pipe.execute()
    return created

