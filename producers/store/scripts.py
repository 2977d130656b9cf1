"""The job store's Lua scripts (``lua/*.lua``), one typed method each: named arguments in, KEYS
and ARGV in the order of the script's header out, the reply decoded.

Keys a script touches arrive in KEYS where the caller knows them in advance; key families a
script picks from what it reads (the job's connection, its status before) arrive as prefixes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from producers import keys
from producers.priority import level
from producers.records import MAX_ATTEMPT_HISTORY
from producers.store import codec
from producers.store.loader import STORE_SCRIPTS, Pipelined, Scripts
from producers.store.types import NewJob

_THROTTLE_PREFIX, _, _THROTTLE_SUFFIX = keys.rate_limit_pause("\0").partition("\0")
_STATUS_PREFIX = keys.index_status("")
# begin.lua's batch context: key and members as prefixes (the job's meta names its batch).
_BEGIN_BATCH = json.dumps({"key": keys.batch(""), "members": keys.batch_jobs("")})
# lib/ready.lua's key prefixes: each key is prefix .. connection (.. ':' .. level).
READY_KEYS = json.dumps({"ready": keys.ready("", "").removesuffix(":"), "at": keys.ready_at("", "").removesuffix(":"),
                         "turns": keys.ready_turns("")})


@dataclass(frozen=True)
class BeginReply:
    """What ``begin.lua`` answered: its outcome, the job's hash as it read it (empty when
    missing) and, when the step started, the step's new record (JSON) and the 429 pause."""

    outcome: str
    raw: dict[str, str]
    step_json: str | None = None
    paused_until: str | None = None


@dataclass(frozen=True)
class Settle:
    """One transition for ``settle.lua`` (see its header)."""

    job_id: str
    fields: dict[str, str]
    token: str = ""  # '' = no lease to check and release
    status_from: str = ""
    status_to: str = ""  # '' = the status stays
    score: str = "0"
    finished: bool = False  # counts in the minute's throughput
    expire: int = 0
    outbox_entry: str = ""
    commands: Sequence[Sequence[Any]] = ()
    batch: str = ""  # the batch context (lib/batch.lua), '' for a job of no batch or no move


def create_clashes(reply: Any) -> dict[int, str]:
    """create.lua's reply: the id each job not written found behind its key, by position ('' for
    a job written that waits in the ready sets)."""
    return {int(reply[i]): str(reply[i + 1]) for i in range(0, len(reply), 2)}


class StoreScripts(Scripts):
    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, STORE_SCRIPTS)

    def begin(self, job_id: str, step: str, *, token: str, now_ms: int, lease_ms: int, now: str,
              events_max: int) -> BeginReply:
        reply = self.run("begin", [keys.job(job_id), keys.events(), keys.job_counts()], [
            codec.step_field(step), token, now_ms, lease_ms, now, _STATUS_PREFIX, MAX_ATTEMPT_HISTORY,
            job_id, _THROTTLE_PREFIX, _THROTTLE_SUFFIX, keys.connection_paused(""), keys.parked(""), step,
            events_max, _BEGIN_BATCH])
        flat = reply[1]
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        if reply[0] != "started":
            return BeginReply(str(reply[0]), raw)
        return BeginReply("started", raw, str(reply[2]), reply[3] or None)

    def settle(self, change: Settle, now_ms: int, minute: int) -> bool:
        pairs = [x for item in change.fields.items() for x in item]
        moves = bool(change.status_to)
        reply = self.run("settle", [
            keys.job(change.job_id), keys.index_status(change.status_from) if moves else "",
            keys.index_status(change.status_to) if moves else "",
            keys.throughput(minute) if change.finished else "", keys.outbox()], [
            change.job_id, change.token, change.score, change.expire, change.outbox_entry, now_ms,
            json.dumps(change.commands), change.batch, len(pairs) // 2, *pairs])
        return bool(reply == 1)

    def progress(self, job_id: str, step: str, *, token: str, until_ms: int, progress: str, event_data: str,
                 kept: int, batch: str | None = None) -> bool:
        return bool(self.run("progress", [
            keys.job(job_id), keys.events(), keys.progress_event_ids(), keys.batch(batch) if batch else ""], [
            token, until_ms, codec.progress_field(step), progress, event_data, kept]))

    def rebuild_counts(self, statuses: Sequence[str]) -> bool:
        return bool(self.run("rebuild_counts", [
            keys.job_counts(), keys.index_names("kind"), keys.index_names("conn"), keys.intersection(["counts"])], [
            _STATUS_PREFIX, keys.index_kind(""), keys.index_connection(""), *statuses]))

    def forget(self, job_id: str, statuses: Sequence[str], batch: str = "") -> bool:
        """``batch``: the batch context of a purged job of a batch ('' none): it leaves its counts."""
        return bool(self.run("forget", [
            keys.index_all(), keys.index_names("kind"), keys.index_names("conn"), keys.job_counts()], [
            job_id, _STATUS_PREFIX, keys.index_kind(""), keys.index_connection(""), batch, *statuses]))

    def archive_drop(self, job_id: str, meta: dict[str, Any], *, status: str, updated_at: str,
                     deliveries: int, pipe: Any) -> None:
        """In ``pipe``: take the job out of Redis if it is still the version archived (its reply
        in the pipeline's: 1 dropped, 0 changed or gone)."""
        kind, connection = str(meta.get("kind", "")), str(meta.get("connection", ""))
        batch, key = codec.batch_of(meta), meta.get("idempotency_key")
        self.run("archive_drop", [
            keys.job(job_id), keys.index_all(), keys.index_status(status), keys.index_kind(kind),
            keys.index_connection(connection), keys.batch_jobs(batch) if batch else "", keys.job_counts(),
            keys.idempotency(str(key)) if key else "", keys.archived(job_id)], [
            job_id, status, updated_at, deliveries, codec.count_field(status, kind, connection)], client=pipe)

    def renew(self, job_id: str, token: str, until_ms: int) -> bool:
        return bool(self.run("renew", [keys.job(job_id)], [token, until_ms]))

    def create(self, jobs: Sequence[NewJob], ids: Sequence[str], messages: Sequence[tuple[str, str]], *,
               now: str, idempotency_seconds: int, events_max: int, kind_names: str,
               conn_names: str, batch: str | None = None, line: Pipelined | None = None) -> dict[int, str]:
        """Stores ``jobs`` (``kind_names``/``conn_names``: the name sets to add to, '' none), in
        the open ``batch`` if given; returns the id each job not written found behind its
        idempotency key, by position, and '' for each job written that waits in the ready sets.
        ``line``: only sent on it ({} returned); ``create_clashes`` of its ``receive()`` is the answer."""
        per_job: list[Any] = []
        for job, job_id, (target, payload) in zip(jobs, ids, messages, strict=True):
            held = "" if job.window is None else f"{job.window}|{level(job.priority)}"
            per_job += (job_id, job.kind, job.connection, job.idempotency_key or "", codec.new_meta(job, now),
                        target, payload, "" if job.not_before_ms is None else job.not_before_ms, held,
                        job.tenant or "")
        # The jobs' file sizes close the tail (create.lua reads them for the batch's bytes).
        per_job.append(",".join(str(j.file.size or 0) if j.file else "0" for j in jobs) if batch else "")
        reply = self.run("create", [
            keys.index_all(), keys.index_status("queued"), keys.events(), kind_names, conn_names,
            keys.job_counts(), keys.batch(batch) if batch else "", keys.batch_jobs(batch) if batch else "",
            keys.index_status("scheduled"), keys.scheduled(), keys.archived("")], [
            keys.job(""), keys.idempotency(""), idempotency_seconds, keys.index_kind(""), keys.index_connection(""),
            events_max, now, len(jobs), READY_KEYS if any(j.window is not None for j in jobs) else "", *per_job],
            client=line)
        return {} if line is not None else create_clashes(reply)

    def batch_move(self, job_id: str, context: str, pipe: Any) -> None:
        """In ``pipe``'s MULTI: the job's batch counts move to ``context``'s status."""
        self.run("batch_move", [keys.job(job_id)], [context], client=pipe)

    def seal(self, batch_id: str, context: str) -> int:
        """1 sealed now (and completed, if nothing is left to run), 0 already, -1 no such batch."""
        return int(self.run("seal", [keys.batch(batch_id)], [context]))

    def release(self, jobs: Sequence[tuple[str, str, str, str, str]], *, now_ms: int, now: str,
                events_max: int) -> list[str]:
        """Queue the due ones of ``jobs`` (id, message list, message, outbox entry, ready part;
        '' none); returns the ids released, those left waiting in the ready sets ending with '+'."""
        per_job = [x for job in jobs for x in job]
        reply = self.run("release", [
            keys.scheduled(), keys.index_status("scheduled"), keys.index_status("queued"), keys.events(),
            keys.outbox(), keys.job_counts()], [keys.job(""), now_ms, now, events_max,
                                                READY_KEYS if any(job[4] for job in jobs) else "", len(jobs),
                                                keys.batch(""), *per_job])
        return [str(i) for i in reply]

    def ready_take(self, connection: str, *, queue: str, window: int, aging_ms: int, now_ms: int,
                   fields: Sequence[str]) -> list[str]:
        """Release up to the window's room of the connection's waiting jobs: their outbox entries."""
        reply = self.run("ready_take", [keys.outbox(), keys.job_counts()], [
            READY_KEYS, connection, queue, window, aging_ms, now_ms, keys.job(""), *fields])
        return [str(e) for e in reply]

    def ready_move(self, job_id: str, *, level_from: int, level_to: int | None, pipe: Any = None) -> Any:
        """Move a job between levels (``level_to`` None: out of the ready sets), in ``pipe``'s MULTI."""
        return self.run("ready_move", [keys.job(job_id)], [
            READY_KEYS, job_id, level_from, "" if level_to is None else level_to], client=pipe)

    def resume(self, connection: str) -> tuple[bool, list[str]]:
        was, members = self.run("resume", [keys.connection_paused(connection), keys.parked(connection)], [])
        return bool(was), [str(m) for m in members]

    def claim_due(self, now: float, until: float, limit: int) -> list[str]:
        return [str(m) for m in self.run("claim_due", [keys.notify_due()], [repr(now), repr(until), limit])]

    def take_claim(self, member: str, token: str, until: float) -> bool:
        return bool(self.run("take_claim", [keys.notify_due()], [member, token, repr(until)]))

    def save_delivery(self, owner_key: str, delivery_id: str, record: str, member: str, when: str) -> bool:
        """``owner_key``: the job's (or batch's) hash. ``when``: '' keeps the due set as it is,
        'done' takes ``member`` out, else its next attempt (epoch seconds)."""
        return bool(self.run("save_delivery", [owner_key, keys.notify_due()], [
            codec.delivery_field(delivery_id), record, member, when]))
