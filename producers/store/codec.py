"""The job hash's fields: the one module that names them and turns them into records and back.

``ferry:job:{id}`` (``keys.job``) holds::

    meta          JSON: kind, connection, created_at, params, steps, file, idempotency_key,
                  callback_url, batch, not_before (epoch ms: fewer bytes than ISO in a backlog of
                  scheduled jobs), priority (absent: normal), tenant, trace (the submit's W3C
                  traceparent: the first run's, ``producers.tracecontext``) (no nulls; no id: the
                  key names it)
    status        the job's status (its index entry moves with it)
    score         its creation score (the indexes' score; a paging cursor)
    updated_at, finished_at   ISO times (``updated_at`` absent: the creation)
    result, error JSON: the job's result, or the error it failed with
    runs          JSON list of runs (absent: one run, from the submit)
    lease         ``token:until-ms`` while a worker runs one of its steps
    cancel_requested          JSON {by, at}: set by ``cancel``; a replay clears it
    step:{name}   JSON StepRecord, once the step has run (absent: pending)
    progress:{name}   JSON Progress of an upload step (``lua/progress.lua``; kept after the step)
    notify:{id}   JSON DeliveryRecord, one per webhook delivery
    batch_bytes   what the job added to its batch's bytes_done so far (a job of a batch, with a file)

``ferry:batch:{id}`` (``keys.batch``) holds the BATCH_* fields below: its spec (JSON: name,
created_at, callback_url), ``total``/``existing``, one count per status (``n:{status}``), bytes,
when it was sealed and completed, how many times it completed, how many of its jobs were purged
(and left its counts), and its deliveries (``notify:*``).
The counts move in the scripts that move its jobs' statuses (``lua/lib/batch.lua``).

A new job stores meta, status and score only (``lua/create.lua``): small, for a backlog. Each
``.lua`` file's header lists the fields it touches (``tests/unit/test_store_scripts.py`` checks
them against ``FIELDS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from producers import keys
from producers.records import (
    BatchRecord,
    DeliveryRecord,
    FileInfo,
    JobRecord,
    JobStatus,
    Progress,
    RunRecord,
    StepError,
    StepRecord,
    utc_at,
)
from producers.store.types import JobRow, NewJob, dump

META = "meta"
STATUS = "status"
SCORE = "score"
UPDATED_AT = "updated_at"
FINISHED_AT = "finished_at"
RESULT = "result"
ERROR = "error"
RUNS = "runs"
LEASE = "lease"
CANCEL = "cancel_requested"
STEP = "step:"  # + the step's name
PROGRESS = "progress:"  # + the step's name
NOTIFY = "notify:"  # + the delivery's id
BATCH_BYTES = "batch_bytes"  # what the job added to its batch's bytes_done (lua/lib/batch.lua)
# Not a hash field: the key of a run's trace context in meta (the first run's) and in each stored run.
TRACE = "trace"

# Every field, the two prefixed families written with a trailing ``*``.
FIELDS = frozenset({META, STATUS, SCORE, UPDATED_AT, FINISHED_AT, RESULT, ERROR, RUNS, LEASE, CANCEL,
                    STEP + "*", PROGRESS + "*", NOTIFY + "*", BATCH_BYTES})
# What a job list shows of a job (``rows``), read with one HMGET.
ROW_FIELDS = (META, STATUS, UPDATED_AT, FINISHED_AT, ERROR, RUNS)
# What a transition needs to know (``JobState``), read with one HMGET; the step's field follows.
STATE_FIELDS = (STATUS, SCORE, RUNS, META)
# What a replay clears: the previous run's ending and a cancel request.
RUN_ENDING = (ERROR, RESULT, FINISHED_AT, CANCEL)


# The batch hash's fields (``keys.batch``); none shares a name with a job field.
BATCH_SPEC = "spec"
BATCH_TOTAL = "total"
BATCH_EXISTING = "existing"
BATCH_COUNT = "n:"  # + a status
BATCH_BYTES_TOTAL = "bytes_total"
BATCH_BYTES_DONE = "bytes_done"
BATCH_SEALED = "sealed"
BATCH_COMPLETED = "completed"
BATCH_COMPLETIONS = "completions"
BATCH_PURGED = "purged"
BATCH_FIELDS = frozenset({BATCH_SPEC, BATCH_TOTAL, BATCH_EXISTING, BATCH_COUNT + "*", BATCH_BYTES_TOTAL,
                          BATCH_BYTES_DONE, BATCH_SEALED, BATCH_COMPLETED, BATCH_COMPLETIONS, BATCH_PURGED,
                          NOTIFY + "*"})


def step_field(step: str) -> str:
    return STEP + step


def progress_field(step: str) -> str:
    return PROGRESS + step


def count_field(status: str, kind: str, connection: str) -> str:
    """A field of the counts hash (``keys.job_counts``, ``producers.store.counts``), not of a job's."""
    return "|".join((status, kind, connection))


def count_moves(meta: Mapping[str, Any], before: str, after: str) -> list[list[Any]]:
    """The counts' side of a job's status move (its ``meta`` names kind and connection), as
    commands for ``settle.lua`` or a pipeline: nothing when the status stays."""
    if before == after:
        return []
    kind, connection = str(meta.get("kind", "")), str(meta.get("connection", ""))
    return [["HINCRBY", keys.job_counts(), count_field(before, kind, connection), -1],
            ["HINCRBY", keys.job_counts(), count_field(after, kind, connection), 1]]


def delivery_field(delivery_id: str) -> str:
    return NOTIFY + delivery_id


def decode(raw: Mapping[str, str], job_id: str) -> JobRecord:
    """A job's record from its hash. A new job's hash leaves out what its creation implies: the
    id (the key names it), ``updated_at`` (its creation), its pending steps and its first run."""
    meta = json.loads(raw[META])
    return JobRecord(
        id=meta.get("id") or job_id,
        kind=meta["kind"],
        connection=meta["connection"],
        status=JobStatus(raw.get(STATUS, "queued")),
        created_at=meta["created_at"],
        updated_at=raw.get(UPDATED_AT) or meta["created_at"],
        finished_at=raw.get(FINISHED_AT),
        params=meta.get("params") or {},
        file=FileInfo.model_validate(meta["file"]) if meta.get("file") else None,
        idempotency_key=meta.get("idempotency_key"),
        steps=[step(n, raw.get(STEP + n), raw.get(PROGRESS + n)) for n in meta["steps"]],
        result=json.loads(raw[RESULT]) if raw.get(RESULT) else None,
        error=StepError.model_validate_json(raw[ERROR]) if raw.get(ERROR) else None,
        runs=[RunRecord.model_validate(r) for r in runs(raw, meta)],
        callback_url=meta.get("callback_url"),
        notifications=deliveries(raw),
        batch=meta.get("batch"),
        not_before=not_before_of(meta),
        priority=priority_of(meta),
        tenant=tenant_of(meta),
    )


def as_json(raw: Mapping[str, str], job_id: str) -> dict[str, Any]:
    """What ``decode(raw, job_id).model_dump(mode="json")`` holds, without building the
    record (the archiver copies thousands a second): the stored JSON as it is, defaults left out
    (``JobRecord.model_validate`` fills them back in), plus the fields issue 25 keeps in meta."""
    meta = json.loads(raw[META])
    steps = []
    for name in meta["steps"]:
        stored, progress = raw.get(STEP + name), raw.get(PROGRESS + name)
        found: dict[str, Any] = json.loads(stored) if stored else {"name": name}
        if progress:
            found["progress"] = json.loads(progress)
        steps.append(found)
    data = {
        "id": meta.get("id") or job_id, "kind": meta["kind"], "connection": meta["connection"],
        "status": raw.get(STATUS, "queued"), "created_at": meta["created_at"],
        "updated_at": raw.get(UPDATED_AT) or meta["created_at"], "finished_at": raw.get(FINISHED_AT),
        "params": meta.get("params") or {}, "file": meta.get("file"), "idempotency_key": meta.get("idempotency_key"),
        "steps": steps, "result": json.loads(raw[RESULT]) if raw.get(RESULT) else None,
        "error": json.loads(raw[ERROR]) if raw.get(ERROR) else None, "runs": runs(raw, meta),
        "callback_url": meta.get("callback_url"),
        "notifications": sorted((json.loads(v) for k, v in raw.items() if k.startswith(NOTIFY)),
                                key=lambda d: str(d.get("created_at"))),
        "batch": meta.get("batch"), "not_before": not_before_of(meta),
    }
    data.update({k: meta[k] for k in _META_EXTRA if meta.get(k) is not None})
    return data


def step(name: str, stored: str | None, progress: str | None = None) -> StepRecord:
    """A step's record; a step not stored has not run yet (pending). Its upload progress is
    kept in a field of its own (a worker writes it while the step runs)."""
    record = StepRecord.model_validate_json(stored) if stored else StepRecord(name=name)
    if progress:
        record.progress = Progress.model_validate_json(progress)
    return record


def first_run(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs of a job whose runs field is absent: its first, from the submit."""
    steps = meta.get("steps") or [""]
    run = {"number": 1, "trigger": "submit", "from_step": steps[0], "started_at": meta.get("created_at")}
    if meta.get(TRACE):
        run[TRACE] = meta[TRACE]
    return [run]


def runs(raw: Mapping[str, str | None], meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    stored = raw.get(RUNS)
    return cast(list[dict[str, Any]], json.loads(stored)) if stored else first_run(meta)


def deliveries(raw: Mapping[str, str]) -> list[DeliveryRecord]:
    found = [DeliveryRecord.model_validate_json(v) for k, v in raw.items() if k.startswith(NOTIFY)]
    return sorted(found, key=lambda d: d.created_at)


def row(job_id: str, values: Sequence[str | None]) -> JobRow:
    """A job list's line from the ``ROW_FIELDS`` of its hash."""
    meta_raw, status, updated, finished, error, stored_runs = values
    meta = json.loads(meta_raw or "{}")
    file = meta.get("file") or {}
    return JobRow(
        id=meta.get("id") or job_id, kind=meta["kind"], connection=meta["connection"],
        status=status or JobStatus.QUEUED.value, created_at=meta["created_at"],
        updated_at=updated or meta["created_at"], finished_at=finished,
        error=StepError.model_validate_json(error) if error else None,
        runs=len(json.loads(stored_runs)) if stored_runs else 1, file=file.get("name"),
        not_before=not_before_of(meta), priority=priority_of(meta), tenant=tenant_of(meta))


def connection_of(meta: str | None) -> str | None:
    """The connection a job's stored meta names (None: no such job)."""
    name = json.loads(meta).get("connection") if meta else None
    return name if isinstance(name, str) else None


def file_name(meta: str | None) -> str:
    """The name of the file a job's stored meta names ('' without one)."""
    file = json.loads(meta).get("file") if meta else None
    return str(file.get("name") or "") if isinstance(file, dict) else ""


def lease_until(value: str | None) -> float:
    """When a stored lease lapses (epoch seconds; 0: nobody holds it)."""
    _, _, until = (value or "").partition(":")
    return int(until) / 1000 if until else 0.0


def new_meta(job: NewJob, now: str) -> str:
    """The meta field of a new job (no nulls: ``decode`` reads them back as None; no id: the
    key names it)."""
    meta: dict[str, Any] = {"kind": job.kind, "connection": job.connection, "created_at": now,
                            "params": job.params, "steps": list(job.steps)}
    if job.file is not None:
        meta["file"] = job.file.model_dump(exclude_none=True)
    if job.idempotency_key is not None:
        meta["idempotency_key"] = job.idempotency_key
    if job.callback_url is not None:
        meta["callback_url"] = job.callback_url
    if job.batch is not None:
        meta["batch"] = job.batch
    if job.not_before_ms is not None:
        meta["not_before"] = job.not_before_ms
    if job.priority != "normal":
        meta["priority"] = job.priority
    if job.tenant is not None:
        meta["tenant"] = job.tenant
    if job.trace is not None:
        meta[TRACE] = job.trace
    return dump(meta)


def with_not_before(meta: str, not_before: float) -> str:
    """A stored meta with its ``not_before`` set (a replay scheduled for later)."""
    return dump({**json.loads(meta), "not_before": int(not_before * 1000)})


def with_priority(meta: str, priority: str) -> str:
    """A stored meta with another priority (``normal`` is the field's absence)."""
    found = {k: v for k, v in json.loads(meta).items() if k != "priority"}
    return dump({**found, "priority": priority} if priority != "normal" else found)


def priority_of_meta(meta: str) -> str:
    """A stored meta's priority, from its JSON text."""
    return priority_of(json.loads(meta))


def priority_of(meta: Mapping[str, Any] | None) -> str:
    found = meta.get("priority") if meta else None
    return found if isinstance(found, str) else "normal"


def tenant_of(meta: Mapping[str, Any] | None) -> str | None:
    found = meta.get("tenant") if meta else None
    return found if isinstance(found, str) else None


def not_before_of(meta: Mapping[str, Any]) -> str | None:
    """A stored meta's ``not_before`` (epoch ms) as the records show times."""
    stored = meta.get("not_before")
    return utc_at(stored / 1000) if isinstance(stored, int) else None


def new_record(job: NewJob, job_id: str, now: str) -> JobRecord:
    """What ``decode`` reads back from a new job's hash, without encoding it twice. (One
    validation of the whole record: cheaper than building its steps and run one by one, and
    than pydantic's ``model_construct``; a given FileInfo is kept as it is.)"""
    return JobRecord.model_validate({
        "id": job_id, "kind": job.kind, "connection": job.connection,
        "status": JobStatus.QUEUED if job.not_before is None else JobStatus.SCHEDULED,
        "created_at": now, "updated_at": now, "params": job.params, "file": job.file,
        "idempotency_key": job.idempotency_key, "steps": [{"name": n} for n in job.steps],
        "callback_url": job.callback_url, "batch": job.batch,
        "not_before": None if job.not_before_ms is None else utc_at(job.not_before_ms / 1000),
        "priority": job.priority, "tenant": job.tenant,
        "runs": [{"number": 1, "trigger": "submit", "from_step": job.steps[0], "started_at": now,
                  "trace": job.trace}]})


# ---- batches -------------------------------------------------------------------------------------
def new_batch(name: str | None, callback_url: str | None, now: str) -> dict[str, str]:
    """The fields of a batch just opened."""
    spec = {k: v for k, v in (("name", name), ("created_at", now), ("callback_url", callback_url)) if v}
    return {BATCH_SPEC: dump(spec), BATCH_TOTAL: "0"}


def decode_batch(raw: Mapping[str, str], batch_id: str) -> BatchRecord:
    """A batch's record from its hash (the ETA is the caller's: it needs the clock)."""
    spec = json.loads(raw[BATCH_SPEC])
    counts = {s.value: int(raw.get(BATCH_COUNT + s.value) or 0) for s in JobStatus}
    return BatchRecord(
        id=batch_id, name=spec.get("name"), created_at=spec["created_at"],
        total=int(raw.get(BATCH_TOTAL) or 0), existing=int(raw.get(BATCH_EXISTING) or 0), counts=counts,
        bytes_total=int(raw.get(BATCH_BYTES_TOTAL) or 0), bytes_done=int(raw.get(BATCH_BYTES_DONE) or 0),
        sealed_at=raw.get(BATCH_SEALED), finished_at=raw.get(BATCH_COMPLETED),
        completions=int(raw.get(BATCH_COMPLETIONS) or 0), purged=int(raw.get(BATCH_PURGED) or 0),
        callback_url=spec.get("callback_url"),
        failures=f"/jobs?batch={batch_id}&status=failed", notifications=deliveries(raw))


def batch_of(meta: Mapping[str, Any]) -> str | None:
    """The batch a job's meta names (None: none)."""
    found = meta.get("batch")
    return found if isinstance(found, str) else None


def file_size(meta: Mapping[str, Any]) -> int:
    """The size of the file a job's meta names (0: none, or unknown: a URL)."""
    file = meta.get("file")
    return int(file.get("size") or 0) if isinstance(file, dict) else 0


# ---- the archive's records back into a hash ------------------------------------------------------
_META_EXTRA = ("tenant", "priority")  # record fields kept in meta beyond those new_meta writes


def encode(stored: Mapping[str, Any]) -> dict[str, str]:
    """A job's hash from its whole record as JSON (``ferry status --json``, what the archive
    keeps, with its ``_score``): what ``decode`` reads back as the same record."""
    record = JobRecord.model_validate(stored)
    meta: dict[str, Any] = {"kind": record.kind, "connection": record.connection, "created_at": record.created_at,
                            "params": record.params, "steps": [s.name for s in record.steps]}
    for name, value in (("file", record.file.model_dump(exclude_none=True) if record.file else None),
                        ("idempotency_key", record.idempotency_key), ("callback_url", record.callback_url),
                        ("batch", record.batch)):
        if value is not None:
            meta[name] = value
    meta.update({k: stored[k] for k in _META_EXTRA if stored.get(k) is not None})
    fields = {META: dump(meta), STATUS: record.status.value, SCORE: str(int(stored["_score"])),
              UPDATED_AT: record.updated_at or record.created_at,
              RUNS: dump([r.model_dump(exclude_none=True) for r in record.runs])}
    if record.finished_at:
        fields[FINISHED_AT] = record.finished_at
    if record.result is not None:
        fields[RESULT] = dump(record.result)
    if record.error is not None:
        fields[ERROR] = record.error.model_dump_json(exclude_none=True)
    for s in record.steps:
        fields[step_field(s.name)] = s.stored()
        if s.progress is not None:
            fields[progress_field(s.name)] = s.progress.model_dump_json(exclude_none=True)
    for d in record.notifications:
        fields[delivery_field(d.id)] = d.model_dump_json(exclude_none=True)
    return fields
