"""The job store: one Redis hash per job plus sorted-set indexes, the single source of truth.

Layout (keys in ``producers.keys``)::

    ferry:job:{id}            hash  meta (JSON), status, score, updated_at, finished_at, result,
                                    error, runs, lease, step:{name} (JSON StepRecord, once the
                                    step has run: absent = pending). A new job stores meta,
                                    status and score only (``_CREATE``): small, for a backlog.
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
from dataclasses import field as dataclass_field
from typing import Any, cast

import redis

from producers import events, keys
from producers.errors import IdempotencyConflict, JobNotFound, NotifyRefused, Problem
from producers.records import (
    MAX_ATTEMPT_HISTORY,
    AttemptStatus,
    DeliveryRecord,
    DeliveryStatus,
    FileInfo,
    JobRecord,
    JobStatus,
    RunRecord,
    StepError,
    StepRecord,
    StepStatus,
    utc_at,
    utc_in,
    utcnow,
)
from producers.selection import BATCH, Filters, Selection, count_indexed, select_page

_STEP = "step:"
_NOTIFY = "notify:"  # one field per webhook delivery (JSON DeliveryRecord)
_CANCEL = "cancel_requested"  # JSON {by, at}: set by ``cancel``; a replay clears it

# What ``cancel`` did: the job is cancelled, or a step runs now and it is cancelled after that
# step, or it had ended already (nothing changed).
CANCELLED, CANCELLING, FINISHED_ALREADY = "cancelled", "cancelling", "finished"

# KEYS: the pause flag, the parked set. Lifting the pause and taking the parked steps is one
# atomic step, so a worker parks a step either before it (handed back here) or not at all.
_RESUME = """
local was = redis.call('DEL', KEYS[1])
local parked = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
return {was, parked}
"""


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
    meta: dict[str, Any] = dataclass_field(default_factory=dict)

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


# A step's record is JSON in the job's hash (absent while pending); _BEGIN edits it as the Python code would
# (StepRecord.begin_attempt): compact (no nulls), so cjson's one ambiguity, an empty array read
# back as {}, cannot arise: a running step has no result, and its history is never empty.
# The operator's gate is part of the start: a job whose cancel was requested answers 'cancel'
# and a step on a paused connection is parked ('parked': added to the connection's parked set),
# both changing nothing else, so neither spends an attempt. A step that starts appends its
# step.started event (``producers.events``) in the same call.
# KEYS[1] job. ARGV: step field, lease token ('' = no lease), now ms, lease ms, now ISO,
# status index prefix, history kept, job id, the connection's 429 pause key around its name,
# the operator pause key's prefix, the parked set's prefix, the step's name, the event stream,
# its MAXLEN ~. Returns {outcome, the job's hash as read, the step's new JSON, the 429 pause}.
_BEGIN = """
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return {'missing', {}} end
local f = {}
for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
local meta = cjson.decode(f.meta)
local raw = f[ARGV[1]]
local step
if raw then
  step = cjson.decode(raw)
else
  -- Not stored: pending, if the job declares it.
  for _, name in ipairs(meta.steps or {}) do
    if name == ARGV[13] then step = {name = name} end
  end
  if not step then return {'missing', {}} end
end
local function given(x) if x == cjson.null then return nil end return x end
local was = given(step.status) or 'pending'
if was == 'succeeded' or was == 'reused' then return {'done', flat} end
if f.status == 'succeeded' or f.status == 'failed' or f.status == 'cancelled' then return {'ended', flat} end
if f.cancel_requested then return {'cancel', flat} end
-- The operator's pause and the destination's 429 pause, in one read.
local gate = redis.call('MGET', ARGV[11] .. meta.connection, ARGV[9] .. meta.connection .. ARGV[10])
if gate[1] then
  redis.call('SADD', ARGV[12] .. meta.connection, ARGV[8] .. ' ' .. ARGV[13])
  return {'parked', flat}
end
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
redis.call('XADD', ARGV[14], 'MAXLEN', '~', ARGV[15], '*', 'type', 'step.started', 'data', cjson.encode({
  job = ARGV[8], kind = meta.kind, connection = meta.connection, step = ARGV[13], status = 'running',
  time = ARGV[5], attempt = step.attempts}))
return {'started', flat, json, gate[2]}
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
        self.create = client.register_script(_CREATE)


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
        events_max_length: int = events.DEFAULT_MAX_LENGTH,
    ) -> None:
        self.redis = redis_client
        self.retention_seconds = retention_seconds
        self.idempotency_seconds = idempotency_seconds
        self.events_max_length = events_max_length
        self._names = _Names()

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
        callback_url: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Store a new queued job. With an idempotency key already seen, return that job and False
        (a different job under that key: IdempotencyConflict).

        One script checks the key and writes the job: of N identical requests from concurrent
        producers, exactly one creates the job and the others read it back.
        """
        [outcome] = self.create_many([NewJob(kind=kind, connection=connection, steps=tuple(steps),
                                             params=params, file=file, idempotency_key=idempotency_key,
                                             callback_url=callback_url)])
        if isinstance(outcome, IdempotencyConflict):
            raise outcome
        return outcome

    def _next_score(self) -> float:
        # Milliseconds x 1000 plus a rolling counter: unique per job, ordered by creation, and
        # exact in a double (< 2**53), so a score is a stable paging cursor.
        seq = int(self.redis.incr(keys.sequence())) % 1000
        return float(int(time.time() * 1000) * 1000 + seq)

    # ---- reads ---------------------------------------------------------------------------
    def find(self, job_id: str) -> JobRecord | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.job(job_id)))
        return _decode(raw, job_id) if raw else None

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
                found.append(_decode(raw, job_id))
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
        return [_row(job_id, values) for job_id, values in zip(ids, replies, strict=True) if values[0]]

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
            pause_prefix, pause_suffix, keys.connection_paused(""), keys.parked(""), step, keys.events(),
            self.events_max_length])
        outcome, flat = str(reply[0]), reply[1]
        if outcome == "missing":
            return Begun(outcome)
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        if outcome != "started":
            return Begun(outcome, job=_decode(raw, job_id))
        record = StepRecord.model_validate_json(reply[2])
        raw.update({_STEP + step: reply[2], "status": JobStatus.RUNNING.value, "updated_at": now})
        job = _decode(raw, job_id)
        meta = json.loads(raw["meta"])
        state = JobState(job_id=job_id, status=JobStatus.RUNNING, score=self._score(job_id, raw.get("score")),
                         runs=_runs(raw, meta), step_record=record, meta=meta)
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
        succeeded = self._job_event(events.STEP_SUCCEEDED, state, state.status, step=step,
                                    attempt=record.attempts)
        if job_result is None:
            return self._settle(state, fields, lease=lease, then=then, events_=[succeeded])
        fields.update(result=_dump(job_result), finished_at=now, runs=state.finished_runs("succeeded", now))
        ended = self._job_event(events.SUCCEEDED, state, JobStatus.SUCCEEDED, run=state.run_number)
        return self._settle(state, fields, lease=lease, status=JobStatus.SUCCEEDED,
                            expire=self.retention_seconds, then=then, events_=[succeeded, ended],
                            delivery=events.SUCCEEDED)

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
        retrying = self._job_event(events.STEP_RETRYING, state, state.status, step=step,
                                   attempt=record.attempts, delay=round(delay, 3),
                                   next_attempt_at=record.next_attempt_at)
        return self._settle(state, {_STEP + step: record.stored(), "updated_at": utcnow()}, lease=lease,
                            then=then, events_=[retrying])

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
        }, lease=lease, status=JobStatus.FAILED, expire=PERSIST,
            events_=[self._job_event(events.FAILED, state, JobStatus.FAILED, step=step, run=state.run_number)],
            delivery=events.FAILED)

    def mark_succeeded(self, job_id: str, result: dict[str, Any]) -> None:
        """The job succeeded (its last step already recorded): ``finish_step(job_result=…)``
        does both in one call."""
        state = self._state(job_id)
        now = utcnow()
        self.redis.hdel(keys.job(job_id), "error")
        self._settle(state, {"result": _dump(result), "finished_at": now, "updated_at": now,
                             "runs": state.finished_runs("succeeded", now)},
                     status=JobStatus.SUCCEEDED, expire=self.retention_seconds,
                     events_=[self._job_event(events.SUCCEEDED, state, JobStatus.SUCCEEDED, run=state.run_number)],
                     delivery=events.SUCCEEDED)

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
            pipe.hdel(keys.job(job_id), "error", "result", "finished_at", _CANCEL)
            self._set_status(pipe, self._state(job_id), JobStatus.QUEUED)
            pipe.persist(keys.job(job_id))
            self._event(pipe, events.REPLAYED, job_id, record.model_dump(include={"kind", "connection"}),
                        JobStatus.QUEUED, step=from_step, run=len(runs))
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
        fields = ["status", "score", "runs", "meta"] + ([_STEP + step] if step else [])
        values = cast(builtins.list[str | None], self.redis.hmget(keys.job(job_id), fields))
        meta = json.loads(values[3] or "{}")
        if values[0] is None or (step and step not in meta.get("steps", ())):
            raise JobNotFound(job_id, f"step {step}" if step else None)
        return JobState(job_id=job_id, status=JobStatus(values[0]), score=self._score(job_id, values[1]),
                        runs=_runs({"runs": values[2]}, meta), meta=meta,
                        step_record=_step(step, values[4]) if step else None)

    def _score(self, job_id: str, stored: str | None) -> float:
        # Records written before the score was a field of the hash find it in the index.
        score = float(stored) if stored else self.redis.zscore(keys.index_all(), job_id)
        return score or self._next_score()

    def _settle(self, state: JobState, fields: dict[str, str], *, lease: Lease | None = None,
                status: JobStatus | None = None, expire: int = 0, then: Outgoing | None = None,
                events_: Sequence[events.Event] = (), delivery: str | None = None) -> bool:
        """Write a transition in one call of _SETTLE: ``fields``, the status (and its index
        entry) when it changes, the expiry, the lease released, ``then``'s message or outbox
        entry, the transition's ``events_`` and, for a job with a callback URL, the webhook
        ``delivery`` of that ending event. False (nothing written) when ``lease`` is no longer
        this holder's."""
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
            json.dumps([[name, *args] for name, args in then.commands]
                       + self._also_written(state, events_, delivery)), len(pairs) // 2, *pairs])
        if reply == 1 and moves and status is not None:
            state.status = status
        return bool(reply == 1)

    def _also_written(self, state: JobState, events_: Sequence[events.Event],
                      delivery: str | None) -> builtins.list[builtins.list[Any]]:
        """The Redis commands _SETTLE runs after the transition's own writes: its events'
        XADDs and its webhook delivery (the same commands ``_event`` and ``_queue_delivery``
        put in a MULTI)."""
        commands: builtins.list[builtins.list[Any]] = [
            ["XADD", keys.events(), "MAXLEN", "~", self.events_max_length, "*", "type", e.type,
             "data", json.dumps(e.data, separators=(",", ":"))] for e in events_]
        if delivery and state.meta.get("callback_url"):
            record = self._new_delivery(delivery, state.run_number, "end")
            commands.append(["HSET", keys.job(state.job_id), _NOTIFY + record.id, record.model_dump_json()])
            commands.append(["ZADD", keys.notify_due(), repr(time.time()), _due_member(state.job_id, record.id)])
        return commands

    def _job_event(self, type_: str, state: JobState, status: JobStatus, **extra: Any) -> events.Event:
        return events.new(type_, job=state.job_id, kind=str(state.meta.get("kind", "")),
                          connection=str(state.meta.get("connection", "")), status=status.value, **extra)

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
    def create_many(self, jobs: Sequence[NewJob], *, message: MessageFor | None = None,
                    chunk_size: int = 500) -> builtins.list[Created | IdempotencyConflict]:
        """``create`` for many jobs: one Lua script per ``chunk_size`` jobs writes their records,
        indexes, idempotency keys, events and, with ``message``, each new job's Celery message
        (so a job and its message are stored together or not at all). One result per job, in
        order: the record and whether it is new, or the conflict for a key reused for a
        different job (also within ``jobs``)."""
        return _create_many(self, jobs, message=message, chunk_size=chunk_size)

    # ---- the event stream (producers.events) --------------------------------------------------
    def _event(self, pipe: Any, type_: str, job_id: str, meta: Mapping[str, Any], status: JobStatus,
               **extra: Any) -> None:
        """Append a state change to the event stream, in the transition's own MULTI."""
        events.append(pipe, events.new(type_, job=job_id, kind=str(meta.get("kind", "")),
                                       connection=str(meta.get("connection", "")), status=status.value,
                                       **extra), self.events_max_length)

    # ---- webhook deliveries (producers.notifications, worker.notify) ------------------------------
    # A delivery is a field ``notify:<id>`` of the job's hash (its record, shown with the job) and
    # a member ``"<job> <id>"`` of ``keys.notify_due()`` scored by when to try it. The transition
    # that ends a run writes both in its own MULTI, so a job never ends without its delivery
    # being due; the worker's dispatcher claims due members and publishes ``ferry.notify``.
    def _queue_delivery(self, pipe: Any, state: JobState, event: str, trigger: str = "end") -> None:
        """A new delivery of ``event``, due now, when the job has a callback URL."""
        if state.meta.get("callback_url"):
            self._add_delivery(pipe, state.job_id, event, state.run_number, trigger)

    def _add_delivery(self, pipe: Any, job_id: str, event: str, run: int, trigger: str) -> DeliveryRecord:
        delivery = self._new_delivery(event, run, trigger)
        pipe.hset(keys.job(job_id), _NOTIFY + delivery.id, delivery.model_dump_json())
        pipe.zadd(keys.notify_due(), {_due_member(job_id, delivery.id): time.time()})
        return delivery

    @staticmethod
    def _new_delivery(event: str, run: int, trigger: str) -> DeliveryRecord:
        now = utcnow()
        return DeliveryRecord(id=uuid.uuid4().hex, event=event, run=run, trigger=trigger,
                              created_at=now, next_attempt_at=now)

    def redeliver(self, job_id: str) -> DeliveryRecord:
        """Deliver the ended job's webhook again (a new delivery id), due now."""
        record = self.get(job_id)
        event = {JobStatus.SUCCEEDED: events.SUCCEEDED, JobStatus.FAILED: events.FAILED,
                 JobStatus.CANCELLED: events.CANCELLED}.get(record.status)
        if not record.callback_url:
            raise NotifyRefused(f"job {job_id} has no callback_url")
        if event is None:
            raise NotifyRefused(f"job {job_id} is {record.status.value}; it is notified when it ends")
        with self.redis.pipeline() as pipe:
            delivery = self._add_delivery(pipe, job_id, event, len(record.runs) or 1, "redeliver")
            pipe.execute()
        return delivery

    def claim_due_deliveries(self, lease_seconds: float, limit: int = 100) -> builtins.list[DueDelivery]:
        """Up to ``limit`` deliveries due now, each rescheduled to ``lease_seconds`` from now in
        the same script: of several dispatchers one claims it, and a claim whose message is lost
        comes due again. A claim's ``token`` (its new score) lets ``begin_delivery`` tell the
        current claim's message from a stale copy."""
        now = time.time()
        until = repr(now + lease_seconds)
        members = cast(builtins.list[str], self.redis.eval(
            _CLAIM_DUE, 1, keys.notify_due(), repr(now), until, limit))
        return [DueDelivery(*_split_due(m), until) for m in members]

    def begin_delivery(self, due: DueDelivery, lease_seconds: float) -> tuple[JobRecord, DeliveryRecord] | None:
        """Start the next attempt of a claimed delivery: the job and the delivery, now
        delivering and leased for ``lease_seconds``; or None when there is nothing to do (a
        stale claim, the job is gone, or the delivery has ended)."""
        member = _due_member(due.job_id, due.delivery_id)
        if not self.redis.eval(_TAKE_CLAIM, 1, keys.notify_due(), member, due.token,
                               repr(time.time() + lease_seconds)):
            return None
        record = self.find(due.job_id)
        delivery = _find_delivery(record, due.delivery_id)
        if record is None or delivery is None or not delivery.open:
            self.redis.zrem(keys.notify_due(), member)
            return None
        delivery.attempts += 1
        delivery.status = DeliveryStatus.DELIVERING
        delivery.last_attempt_at, delivery.next_attempt_at = utcnow(), None
        self.redis.eval(_HSET_IF_EXISTS, 1, keys.job(due.job_id), _NOTIFY + delivery.id,
                        delivery.model_dump_json())
        return record, delivery

    def end_delivery_attempt(self, job_id: str, delivery: DeliveryRecord, retry_at: float | None) -> None:
        """Record how an attempt ended; ``retry_at`` (epoch seconds): when to try again, or None
        when the delivery is over. A job deleted meanwhile is not brought back."""
        with self.redis.pipeline() as pipe:
            pipe.eval(_HSET_IF_EXISTS, 1, keys.job(job_id), _NOTIFY + delivery.id, delivery.model_dump_json())
            if retry_at is None:
                pipe.zrem(keys.notify_due(), _due_member(job_id, delivery.id))
            else:
                pipe.zadd(keys.notify_due(), {_due_member(job_id, delivery.id): retry_at})
            pipe.execute()

    def delivery_body(self, delivery_id: str, body: bytes, ttl_seconds: int) -> bytes:
        """The body of a delivery: ``body`` if this is its first attempt, else the body the first
        attempt sent (every retry sends the same bytes)."""
        key = keys.notify_body(delivery_id)
        self.redis.set(key, body.decode(), nx=True, ex=max(1, ttl_seconds))
        stored = self.redis.get(key)
        return str(stored).encode() if stored is not None else body

    def due_deliveries(self) -> int:
        return int(self.redis.zcard(keys.notify_due()))
    # ---- operator controls: cancel, pause, heartbeats ------------------------------------------
    def cancel(self, job_id: str, by: str) -> CancelOutcome:
        """Stop a job. Queued, or between steps (a step waiting to retry): cancelled now, and a
        message still on its way finds it ended. A step running now finishes; the job is
        cancelled when its next step would start (``begin_step``). Ended: nothing changes."""
        return self._cancel(job_id, by, wait_for_running_step=True)

    def settle_cancel(self, job_id: str) -> CancelOutcome:
        """The worker, at the start of a step of a job whose cancel was requested: cancel it now."""
        return self._cancel(job_id, None, wait_for_running_step=False)

    def _cancel(self, job_id: str, by: str | None, *, wait_for_running_step: bool) -> CancelOutcome:
        key = keys.job(job_id)
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = cast(dict[str, str], pipe.hgetall(key))
                    if not raw:
                        raise JobNotFound(job_id)
                    record = _decode(raw, job_id)
                    if record.done:
                        pipe.unwatch()
                        return CancelOutcome(job_id, FINISHED_ALREADY, record.status.value)
                    asked = json.loads(raw.get(_CANCEL) or "null") or {"by": by, "at": utcnow()}
                    running = wait_for_running_step and any(
                        s.status == StepStatus.RUNNING for s in record.steps)
                    pipe.multi()
                    pipe.hset(key, _CANCEL, _dump(asked))
                    if not running:
                        self._write_cancelled(pipe, raw, record, str(asked.get("by") or "unknown"))
                    pipe.execute()
                except redis.WatchError:
                    continue  # a worker wrote the job meanwhile: look again
            status = JobStatus.RUNNING if running else JobStatus.CANCELLED
            return CancelOutcome(job_id, CANCELLING if running else CANCELLED, status.value)

    def _write_cancelled(self, pipe: Any, raw: dict[str, str], record: JobRecord, by: str) -> None:
        now = utcnow()
        meta = json.loads(raw.get("meta") or "{}")
        state = JobState(job_id=record.id, status=record.status,
                          score=float(raw.get("score") or self._next_score()), runs=_runs(raw, meta), meta=meta)
        runs = json.loads(state.finished_runs(CANCELLED, now))
        if runs:
            runs[-1]["note"] = "; ".join(filter(None, [runs[-1].get("note"), f"cancelled by {by}"]))
        pipe.hset(keys.job(record.id), mapping=_fields({
            "finished_at": now, "updated_at": now, "runs": _dump(runs)}))
        self._set_status(pipe, state, JobStatus.CANCELLED)
        pipe.persist(keys.job(record.id))  # kept, like a failed job, until replayed or purged
        self._event(pipe, events.CANCELLED, record.id, state.meta, JobStatus.CANCELLED)
        self._queue_delivery(pipe, state, events.CANCELLED)

    def pause_connection(self, connection: str, by: str) -> bool:
        """Hold every step on ``connection`` until ``resume_connection``. False if already paused."""
        return bool(self.redis.set(keys.connection_paused(connection),
                                   _dump({"by": by, "at": utcnow()}), nx=True))

    def resume_connection(self, connection: str) -> tuple[bool, builtins.list[tuple[str, str]]]:
        """Lift the pause. Returns whether it was paused, and the (job id, step) pairs parked
        meanwhile, taken out of the parked set in the same atomic step (the caller re-publishes
        them; ``park_again`` puts back what it could not)."""
        was, members = cast(tuple[int, builtins.list[str]], self.redis.eval(
            _RESUME, 2, keys.connection_paused(connection), keys.parked(connection)))
        return bool(was), [cast(tuple[str, str], tuple(m.split(" ", 1))) for m in members]

    def park_again(self, connection: str, parked: Iterable[tuple[str, str]]) -> None:
        members = [f"{job_id} {step}" for job_id, step in parked]
        if members:
            self.redis.sadd(keys.parked(connection), *members)

    def connection_states(self, connections: Sequence[str]) -> dict[str, ConnectionState]:
        """Each connection's pause, the destination's 429 pause, parked steps and job counts."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name in connections:
                pipe.get(keys.connection_paused(name))
                pipe.get(keys.rate_limit_pause(name))
                pipe.scard(keys.parked(name))
            replies = pipe.execute()
        active = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED)
        counts = self.intersection_counts([[keys.index_connection(name), keys.index_status(s.value)]
                                           for name in connections for s in active])
        states = {}
        for i, name in enumerate(connections):
            paused, throttled, parked = replies[3 * i: 3 * i + 3]
            until = float(throttled) if throttled and float(throttled) > time.time() else None
            states[name] = ConnectionState(
                name=name, paused=json.loads(paused) if paused else None, parked=int(parked),
                throttled_until=utc_at(until) if until else None,
                jobs={s.value: counts[len(active) * i + j] for j, s in enumerate(active)})
        return states

    def intersection_counts(self, combos: Sequence[Sequence[str]]) -> builtins.list[int]:
        """How many jobs are in every index of each combination, in one round trip (ZINTERSTORE
        answers the size; its scratch key is dropped at once)."""
        if not combos:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for combo in combos:
                scratch = keys.intersection(builtins.list(combo))
                pipe.zinterstore(scratch, builtins.list(combo))
                pipe.delete(scratch)
            replies = pipe.execute()
        return [int(n) for n in replies[0::2]]

    def lookup(self, text: str) -> builtins.list[str]:
        """The job ``text`` names exactly: by its id, or by its idempotency key (the dashboard's
        search; a file name is matched by ``Filters.file_name``)."""
        text = text.strip()
        if not text:
            return []
        if self.redis.exists(keys.job(text)):
            return [text]
        found = self.redis.get(keys.idempotency(text))
        return [str(found)] if found and self.redis.exists(keys.job(str(found))) else []

    def beat(self, node: str, data: dict[str, Any], ttl: int) -> None:
        """One worker process says it is alive (and what it runs); forgotten ``ttl`` s after its last beat."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.heartbeat(node), _dump(data), ex=ttl)
            pipe.zadd(keys.heartbeats(), {node: time.time()})
            pipe.execute()

    def end_beat(self, node: str) -> None:
        """A worker process stopping cleanly takes itself off the list at once."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.heartbeat(node))
            pipe.zrem(keys.heartbeats(), node)
            pipe.execute()

    def heartbeats(self) -> builtins.list[dict[str, Any]]:
        """The live worker processes' heartbeats (expired ones leave the list)."""
        nodes = [str(n) for n in self.redis.zrange(keys.heartbeats(), 0, -1)]
        if not nodes:
            return []
        raws = self.redis.mget([keys.heartbeat(n) for n in nodes])
        gone = [n for n, raw in zip(nodes, raws, strict=True) if raw is None]
        if gone:
            self.redis.zrem(keys.heartbeats(), *gone)
        return [json.loads(raw) for raw in raws if raw is not None]

    def workers(self) -> builtins.list[dict[str, Any]]:
        """One entry per worker (its main process), with the steps its pool's processes run now."""
        beats = self.heartbeats()
        mains = {(b["hostname"], b["pid"]): {**b, "running": builtins.list(b.get("running", []))}
                 for b in beats if not b.get("parent")}
        orphans = []
        for b in beats:
            if b.get("parent"):
                main = mains.get((b["hostname"], b["parent"]))
                if main is None:
                    orphans.append(b)
                else:
                    main["running"] += b.get("running", [])
        return sorted([*mains.values(), *orphans], key=lambda w: (w["hostname"], w["pid"]))


@dataclass(frozen=True)
class CancelOutcome:
    job_id: str
    outcome: str  # CANCELLED, CANCELLING or FINISHED_ALREADY
    status: str  # the job's status now

    def as_json(self) -> dict[str, str]:
        return {"id": self.job_id, "outcome": self.outcome, "status": self.status}


@dataclass(frozen=True)
class ConnectionState:
    """What an operator sees of one connection (``ferry connections``, ``GET /connections``)."""

    name: str
    paused: dict[str, Any] | None  # {by, at} while an operator holds it
    parked: int  # steps waiting for a resume
    throttled_until: str | None  # the destination's 429 pause, while it lasts
    jobs: dict[str, int]  # queued / running / failed


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


def _row(job_id: str, values: builtins.list[str | None]) -> JobRow:
    meta_raw, status, updated, finished, error, runs = values
    meta = json.loads(meta_raw or "{}")
    file = meta.get("file") or {}
    return JobRow(
        id=meta.get("id") or job_id, kind=meta["kind"], connection=meta["connection"],
        status=status or JobStatus.QUEUED.value, created_at=meta["created_at"],
        updated_at=updated or meta["created_at"], finished_at=finished,
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


def _decode(raw: dict[str, str], job_id: str) -> JobRecord:
    """A job's record from its hash. A new job's hash leaves out what its creation implies: the
    id (the key names it), ``updated_at`` (its creation), its pending steps and its first run."""
    meta = json.loads(raw["meta"])
    steps = [_step(n, raw.get(_STEP + n)) for n in meta["steps"]]
    return JobRecord(
        id=meta.get("id") or job_id,
        kind=meta["kind"],
        connection=meta["connection"],
        status=JobStatus(raw.get("status", "queued")),
        created_at=meta["created_at"],
        updated_at=raw.get("updated_at") or meta["created_at"],
        finished_at=raw.get("finished_at"),
        params=meta.get("params") or {},
        file=FileInfo.model_validate(meta["file"]) if meta.get("file") else None,
        idempotency_key=meta.get("idempotency_key"),
        steps=steps,
        result=json.loads(raw["result"]) if raw.get("result") else None,
        error=StepError.model_validate_json(raw["error"]) if raw.get("error") else None,
        runs=[RunRecord.model_validate(r) for r in _runs(raw, meta)],
        callback_url=meta.get("callback_url"),
        notifications=_deliveries(raw),
    )


def _step(name: str, stored: str | None) -> StepRecord:
    """A step's record; a step not stored has not run yet (pending)."""
    return StepRecord.model_validate_json(stored) if stored else StepRecord(name=name)


def _deliveries(raw: Mapping[str, str]) -> builtins.list[DeliveryRecord]:
    found = [DeliveryRecord.model_validate_json(v) for k, v in raw.items() if k.startswith(_NOTIFY)]
    return sorted(found, key=lambda d: d.created_at)


def _find_delivery(record: JobRecord | None, delivery_id: str) -> DeliveryRecord | None:
    return next((d for d in record.notifications if d.id == delivery_id), None) if record else None


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery: which, and the claim's token (see ``claim_due_deliveries``)."""

    job_id: str
    delivery_id: str
    token: str


def _due_member(job_id: str, delivery_id: str) -> str:
    return f"{job_id} {delivery_id}"


def _split_due(member: str) -> tuple[str, str]:
    job_id, _, delivery_id = member.partition(" ")
    return job_id, delivery_id


# Due members (score <= now), rescheduled to the lease's end: claimed by exactly one caller.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""
# The claim still stands (its score is the token) and becomes the attempt's lease.
_TAKE_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then return redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) + 1 end
return 0
"""
_HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""


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
    callback_url: str | None = None


Created = tuple[JobRecord, bool]  # the record, and False when an idempotency key named an old job
# A new job's first Celery message: (the Redis list it is pushed onto, the message as kombu's
# Redis transport stores it), built by ``producers.queue.StepMessages.first``.
MessageFor = Callable[[str, NewJob], tuple[str, str]]

# Stores a chunk of new queued jobs in one call: each job's hash, its idempotency key, its index
# entries (one ZADD per index for the chunk), its job.queued event and its first message, all in
# one script, so a job and its message exist together or not at all. A job whose idempotency key
# names a job that still exists is not written: the script answers its index and that job's id,
# and the caller decides (the same job: returned; another: refused). Pending steps are not
# stored (an absent step field reads as pending), nor is the first run (``runs`` absent reads
# as one run from the first step, started when the job was created), nor ``updated_at`` (absent:
# the creation) nor the id in ``meta`` (the key names it): bytes in every queued job's hash.
# ARGV: the job key prefix, the idempotency key prefix, its TTL, the 'all' and 'queued'
# indexes, the kind and connection index prefixes, the event stream, its MAXLEN ~, now (ISO),
# the number of jobs, the kind-names set and the connection-names set ('' = known already, no
# SADD), then per job: id, kind, connection, idempotency key ('' none), meta
# JSON, message list ('' none), message. Returns {index, existing id, ...} of the jobs not written.
_CREATE = """
local job_prefix, idem_prefix, ttl = ARGV[1], ARGV[2], ARGV[3]
local n, width, base = tonumber(ARGV[11]), 7, 14
local clash, taken = {}, {}
for j = 0, n - 1 do
  local key = ARGV[base + j * width + 3]
  if key ~= '' then
    local old = redis.call('GET', idem_prefix .. key)
    if old and redis.call('EXISTS', job_prefix .. old) == 1 then
      taken[j] = true
      clash[#clash + 1] = j
      clash[#clash + 1] = old
    end
  end
end
if #clash == 2 * n then return clash end
local now, stream, maxlen = ARGV[10], ARGV[8], ARGV[9]
local indexes, order, pushes, porder, quoted = {}, {}, {}, {}, {}
local function add(tbl, keys, key, a, b)
  local t = tbl[key]
  if not t then t = {}; tbl[key] = t; keys[#keys + 1] = key end
  t[#t + 1] = a
  t[#t + 1] = b
end
local function q(s)
  local v = quoted[s]
  if not v then v = cjson.encode(s); quoted[s] = v end
  return v
end
for j = 0, n - 1 do
  if not taken[j] then
    local a = base + j * width
    local id, kind, conn, key = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    local meta, list, message = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
    local event = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'type', 'job.queued', 'data',
      '{"job":"' .. id .. '","kind":' .. q(kind) .. ',"connection":' .. q(conn) ..
      ',"step":null,"status":"queued","time":"' .. now .. '"}')
    -- The score, as _next_score's: milliseconds x 1000 plus a counter below 1000, here the
    -- job.queued event's stream id (ms-seq), which grows with every entry: no counter to INCR.
    local ms, seq = string.match(event, '^(%d+)-(%d+)$')
    local score = string.format('%.0f', tonumber(ms) * 1000 + tonumber(seq) % 1000)
    if key ~= '' then redis.call('SET', idem_prefix .. key, id, 'EX', ttl) end
    redis.call('HSET', job_prefix .. id, 'meta', meta, 'status', 'queued', 'score', score)
    add(indexes, order, ARGV[4], score, id)
    add(indexes, order, ARGV[5], score, id)
    add(indexes, order, ARGV[6] .. kind, score, id)
    add(indexes, order, ARGV[7] .. conn, score, id)
    if list ~= '' then
      if not pushes[list] then pushes[list] = {}; porder[#porder + 1] = list end
      local p = pushes[list]
      p[#p + 1] = message
    end
  end
end
-- In slices: Lua's unpack is bounded by its stack (~8000 values).
local function each_slice(command, key, values)
  for s = 1, #values, 4000 do
    redis.call(command, key, unpack(values, s, math.min(s + 3999, #values)))
  end
end
for _, index in ipairs(order) do each_slice('ZADD', index, indexes[index]) end
-- LPUSH in submit order: kombu's consumer pops from the other end, so the first job goes first.
for _, list in ipairs(porder) do each_slice('LPUSH', list, pushes[list]) end
for s = 12, 13 do
  if ARGV[s] ~= '' then
    local names = {}
    for j = 0, n - 1 do names[#names + 1] = ARGV[base + j * width + s - 11] end
    redis.call('SADD', ARGV[s], unpack(names))
  end
end
return clash
"""

# How long the process trusts that the kind and connection names it added are still in their
# sets (``keys.index_names``): a flushed Redis gets them again within this.
_NAMES_FRESH_SECONDS = 60.0


class _Names:
    """The kind and connection names this process has added to ``keys.index_names`` lately,
    so a submit writes them once a minute instead of on every call."""

    def __init__(self) -> None:
        self.added: dict[tuple[str, str], float] = {}

    def needed(self, which: str, names: Iterable[str]) -> bool:
        now = time.monotonic()
        return any(now - self.added.get((which, n), -_NAMES_FRESH_SECONDS) >= _NAMES_FRESH_SECONDS
                   for n in names)

    def written(self, which: str, names: Iterable[str]) -> None:
        now = time.monotonic()
        self.added.update(((which, n), now) for n in names)


def _meta(job: NewJob, now: str) -> str:
    """The ``meta`` field of a new job (no nulls: ``_decode`` reads them back as None; no id:
    the key names it)."""
    meta: dict[str, Any] = {"kind": job.kind, "connection": job.connection, "created_at": now,
                            "params": job.params, "steps": list(job.steps)}
    if job.file is not None:
        meta["file"] = job.file.model_dump(exclude_none=True)
    if job.idempotency_key is not None:
        meta["idempotency_key"] = job.idempotency_key
    if job.callback_url is not None:
        meta["callback_url"] = job.callback_url
    return _dump(meta)


def _first_run(meta: Mapping[str, Any]) -> builtins.list[dict[str, Any]]:
    """The runs of a job whose ``runs`` field is absent: its first, from the submit."""
    steps = meta.get("steps") or [""]
    return [{"number": 1, "trigger": "submit", "from_step": steps[0], "started_at": meta.get("created_at")}]


def _runs(raw: Mapping[str, str | None], meta: Mapping[str, Any]) -> builtins.list[dict[str, Any]]:
    stored = raw.get("runs")
    return cast(builtins.list[dict[str, Any]], json.loads(stored)) if stored else _first_run(meta)


def _new_record(job: NewJob, job_id: str, now: str) -> JobRecord:
    """What ``_decode`` reads back from a new job's hash, without encoding it twice. (One
    validation of the whole record: cheaper than building its steps and run one by one, and
    than pydantic's ``model_construct``; a given FileInfo is kept as it is.)"""
    return JobRecord.model_validate({
        "id": job_id, "kind": job.kind, "connection": job.connection, "status": JobStatus.QUEUED,
        "created_at": now, "updated_at": now, "params": job.params, "file": job.file,
        "idempotency_key": job.idempotency_key, "steps": [{"name": n} for n in job.steps],
        "callback_url": job.callback_url,
        "runs": [{"number": 1, "trigger": "submit", "from_step": job.steps[0], "started_at": now}]})


def _create_many(store: JobStore, jobs: Sequence[NewJob], *, message: MessageFor | None = None,
                 chunk_size: int = 500) -> builtins.list[Created | IdempotencyConflict]:
    """Store many new queued jobs, ``chunk_size`` per call of _CREATE; see ``JobStore.create_many``."""
    # Scores are ms x 1000 + the job.queued event's stream sequence % 1000: past 1000 entries in
    # one millisecond two could meet. A script of 500 jobs keeps that far off even on a Redis
    # whose scripts see one frozen clock (7.0's XADD reads the time anew: its ids spread).
    chunk_size = max(1, min(chunk_size, 500))
    results: builtins.list[Created | IdempotencyConflict] = []
    for start in range(0, len(jobs), chunk_size):
        results += _create_chunk(store, jobs[start:start + chunk_size], message)
    return results


def _create_chunk(store: JobStore, jobs: Sequence[NewJob],
                  message: MessageFor | None) -> builtins.list[Created | IdempotencyConflict]:
    """One call of _CREATE for the chunk's jobs whose idempotency key is their first use in the
    chunk; a later job with a key used earlier in the chunk takes the outcome of the job behind
    that key (the same job: returned; another: refused). A job whose key's stored job vanished
    between the script and the read is tried again."""
    results: dict[int, Created | IdempotencyConflict] = {}
    pending = builtins.list(range(len(jobs)))
    while pending:
        first: dict[str, int] = {}  # key -> the first job of the chunk with it
        followers: builtins.list[tuple[int, int]] = []
        sent = []
        for i in pending:
            key = jobs[i].idempotency_key
            if key is not None and key in first:
                followers.append((i, first[key]))
            else:
                if key is not None:
                    first[key] = i
                sent.append(i)
        created, clashes = _run_create(store, [jobs[i] for i in sent], message)
        behind: dict[int, JobRecord] = {}  # sent job -> the record its key names
        for n, i in enumerate(sent):
            if n in created:
                results[i] = (created[n], True)
                behind[i] = created[n]
        found = {r.id: r for r in store._records(builtins.list(set(clashes.values())))} if clashes else {}
        pending = []
        for n, old_id in clashes.items():
            i = sent[n]
            old = found.get(old_id)
            if old is None:
                pending.append(i)  # expired or purged meanwhile: the key is free again
                continue
            behind[i] = old
            results[i] = _same_or_conflict(old, jobs[i])
        for i, leader in followers:
            if leader in pending:
                pending.append(i)
            else:
                results[i] = _same_or_conflict(behind[leader], jobs[i])
        pending.sort()
    return [results[i] for i in range(len(jobs))]


def _same_or_conflict(old: JobRecord, job: NewJob) -> Created | IdempotencyConflict:
    assert job.idempotency_key is not None
    try:
        _check_same_job(old, job.idempotency_key, job.kind, job.connection, job.params, job.file)
    except IdempotencyConflict as exc:
        return exc
    return old, False


def _run_create(store: JobStore, jobs: Sequence[NewJob],
                message: MessageFor | None) -> tuple[dict[int, JobRecord], dict[int, str]]:
    """One call of _CREATE: the records of the jobs written and, for the others, the id of the
    stored job their idempotency key names (both by position in ``jobs``)."""
    now = utcnow()
    ids = [uuid.uuid4().hex for _ in jobs]
    kinds, conns = {j.kind for j in jobs}, {j.connection for j in jobs}
    names = store._names
    kind_names = keys.index_names("kind") if names.needed("kind", kinds) else ""
    conn_names = keys.index_names("conn") if names.needed("conn", conns) else ""
    args: builtins.list[Any] = [
        keys.job(""), keys.idempotency(""), store.idempotency_seconds, keys.index_all(),
        keys.index_status(JobStatus.QUEUED.value), keys.index_kind(""), keys.index_connection(""),
        keys.events(), store.events_max_length, now, len(jobs), kind_names, conn_names]
    for job, job_id in zip(jobs, ids, strict=True):
        target, payload = message(job_id, job) if message is not None else ("", "")
        args += (job_id, job.kind, job.connection, job.idempotency_key or "", _meta(job, now),
                 target, payload)
    reply = cast(builtins.list[Any], store._scripts.create(args=args))
    clashes = {int(reply[i]): str(reply[i + 1]) for i in range(0, len(reply), 2)}
    if kind_names:
        names.written("kind", kinds)
    if conn_names:
        names.written("conn", conns)
    created = {n: _new_record(job, ids[n], now) for n, job in enumerate(jobs) if n not in clashes}
    return created, clashes
