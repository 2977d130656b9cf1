"""Batch manifests: many jobs from one file, ``ferry submit-batch manifest.jsonl|manifest.csv``.

Formats (chosen by the name: ``.csv`` is CSV, anything else is JSONL):

* JSONL: one JSON object per line, the same body as ``POST /jobs``:
  ``{"kind": …, "connection": …, "file" | "uri": …, "params": {…}, "idempotency_key": …,
  "callback_url": …}``.
  Blank lines are skipped.
* CSV: a header row naming the columns ``kind``, ``connection``, ``file``, ``uri``,
  ``idempotency_key``, ``callback_url``, and parameters either as one ``params.<name>`` column per parameter
  (``params.object``, ``params.comment``) or as one ``params`` column holding a JSON object; both
  may be used together as long as they don't name the same parameter. Empty cells are absent.

The manifest's jobs are one batch (``--name``, ``--batch-callback URL``: told once it completes);
the JSON outcome names it (``"batch"``), ``ferry batch status|wait|replay`` follow it.

A relative ``file`` is taken relative to the manifest's folder, so a manifest and its files can
move together. Every line is validated before anything is submitted and every bad line is
reported with its number (the header is line 1 of a CSV). Without ``--strict`` the good lines are
submitted anyway; with it, nothing is.

Exit codes: 0 every line was submitted (and, with ``--wait``, every job succeeded); 1 every line
was submitted but a job failed or ``--wait`` timed out; 2 at least one line was bad (so nothing,
or not everything, was submitted) — 2 wins over 1.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from producers.cli.console import EXIT_INTERRUPTED, EXIT_TIMEOUT, PlainTable, outcome_text, plain
from producers.client import Ferry, JobRequest, request_field
from producers.errors import ManifestError, Problem, SubmitError
from producers.records import FINISHED, JobRecord, JobStatus
from producers.store import NewJob

CSV_COLUMNS = frozenset(JobRequest.model_fields) - {"params"}
POLL_SECONDS = 0.25
SUBMIT_CHUNK = 500  # jobs per Redis MULTI
# The report's jobs: line, created and the record each (pydantic encodes a record in ``Any`` as
# its model).
_SUBMITTED: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(list[dict[str, Any]])


@dataclass
class ManifestLine:
    number: int
    request: JobRequest | None = None
    problems: list[Problem] = field(default_factory=list)
    job: NewJob | None = None  # the line checked: the job to store


@dataclass
class Submitted:
    line: int
    record: JobRecord
    created: bool


@dataclass
class BatchOutcome:
    lines: list[ManifestLine]
    submitted: list[Submitted] = field(default_factory=list)
    waited: bool = False
    timed_out: bool = False
    batch: str | None = None
    interrupted: bool = False  # Ctrl-C while waiting: the jobs run on

    @property
    def bad(self) -> list[ManifestLine]:
        return [ln for ln in self.lines if ln.problems]

    def exit_code(self) -> int:
        if self.bad:
            return 2
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.timed_out:
            return EXIT_TIMEOUT
        failed = any(s.record.status != JobStatus.SUCCEEDED for s in self.submitted)
        return 1 if self.waited and failed else 0


# ---- reading ----------------------------------------------------------------------------------
def read_manifest(path: Path) -> list[ManifestLine]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    lines = _read_csv(text) if path.suffix.lower() == ".csv" else _read_jsonl(text)
    if not lines:
        raise ManifestError(f"{path} holds no jobs")
    base = path.resolve().parent
    resolved: dict[str, str] = {}  # lines name the same few files: each path resolved once
    for ln in lines:
        if ln.request is not None and ln.request.file:
            name = ln.request.file
            full = resolved.get(name)
            if full is None:
                full = resolved[name] = name if Path(name).is_absolute() else str(base / name)
            ln.request.file = full
    return lines


def _read_jsonl(text: str) -> list[ManifestLine]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:  # the common case in one step: pydantic parses the JSON and checks it together
            lines.append(ManifestLine(number, JobRequest.model_validate_json(raw)))
            continue
        except ValidationError:
            pass  # told below as before: not JSON, not an object, or the fields' problems
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            lines.append(ManifestLine(number, problems=[Problem("", f"not JSON: {exc.msg}")]))
            continue
        lines.append(_parse(number, data))
    return lines


def _read_csv(text: str) -> list[ManifestLine]:
    reader = csv.DictReader(text.splitlines(keepends=True), restkey="\0extra")
    header = reader.fieldnames or []
    unknown = [c for c in header
               if c not in CSV_COLUMNS and c != "params" and not c.startswith("params.")]
    if unknown or not header:
        raise ManifestError(
            f"CSV header (line 1): unknown column(s) {', '.join(unknown) or '(none given)'}; "
            f"use {', '.join(sorted(CSV_COLUMNS))}, params.<name> or params")
    lines = []
    start = reader.line_num + 1
    for row in reader:
        number, start = start, reader.line_num + 1
        if not any((v or "").strip() for k, v in row.items() if k != "\0extra"):
            continue
        lines.append(_csv_row(number, row))
    return lines


def _csv_row(number: int, row: dict[str, Any]) -> ManifestLine:
    if row.get("\0extra"):
        return ManifestLine(number, problems=[Problem("", "more cells than header columns")])
    data: dict[str, Any] = {}
    params: dict[str, Any] = {}
    problems: list[Problem] = []
    for column, value in row.items():
        if value is None or not value.strip():
            continue
        if column == "params":
            try:
                loaded = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(Problem("params", f"not a JSON object: {exc.msg}"))
                continue
            if not isinstance(loaded, dict):
                problems.append(Problem("params", "must be a JSON object"))
                continue
            for name, v in loaded.items():
                if name in params:
                    problems.append(Problem(f"params.{name}", "given twice"))
                params[name] = v
        elif column.startswith("params."):
            name = column.removeprefix("params.")
            if name in params:
                problems.append(Problem(f"params.{name}", "given twice"))
            params[name] = value
        else:
            data[column] = value.strip()
    if problems:
        return ManifestLine(number, problems=problems)
    return _parse(number, {**data, "params": params})


def _parse(number: int, data: Any) -> ManifestLine:
    if not isinstance(data, dict):
        return ManifestLine(number, problems=[Problem("", "a line must be a JSON object")])
    try:
        return ManifestLine(number, JobRequest.model_validate(data))
    except ValidationError as exc:
        return ManifestLine(number, problems=[
            Problem(".".join(str(x) for x in e["loc"]), str(e["msg"])) for e in exc.errors()])


# ---- checking and submitting ------------------------------------------------------------------
def check(ferry: Ferry, lines: list[ManifestLine]) -> None:
    """Validate every parsed line as ``ferry submit`` would (each distinct file inspected once),
    keeping the job to store on the line, or its problems."""
    parsed = [ln for ln in lines if ln.request is not None]
    found = ferry.prepare_many([ln.request for ln in parsed if ln.request is not None])
    for ln, job in zip(parsed, found, strict=True):
        if isinstance(job, SubmitError):
            ln.problems = [Problem(request_field(p.field), p.message) for p in job.problems]
        else:
            ln.job = job


def submit(ferry: Ferry, lines: list[ManifestLine], console: Console, batch: str) -> list[Submitted]:
    """Submit the good lines' checked jobs into the open ``batch`` (``Ferry.submit_prepared``), a
    chunk at a time (the progress bar moves per chunk). A line refused now (its file vanished since the
    check…) gets its problems."""
    good = [ln for ln in lines if not ln.problems and ln.job is not None]
    submitted: list[Submitted] = []
    with _progress(console) as progress:
        task = progress.add_task("submitting", total=len(good))
        outcomes = ferry.submit_prepared([ln.job for ln in good if ln.job is not None], batch=batch,
                                         chunk_size=SUBMIT_CHUNK, progress=lambda n: progress.advance(task, n))
    for ln, outcome in zip(good, outcomes, strict=True):
        if isinstance(outcome, SubmitError):
            ln.problems = [Problem(request_field(p.field), p.message) for p in outcome.problems]
        elif isinstance(outcome, Exception):
            raise outcome  # Redis went away: every chunk was tried; those before this line are in
        else:
            submitted.append(Submitted(ln.number, *outcome))
    return submitted


def wait(ferry: Ferry, submitted: list[Submitted], console: Console,
         timeout: float | None) -> bool:
    """Follow the jobs until each has ended; refresh the records. False if ``timeout`` hit."""
    deadline = None if timeout is None else time.monotonic() + timeout
    by_id = {s.record.id: s for s in submitted}
    pending = {i for i, s in by_id.items() if not s.record.done}
    done = sum(s.record.status == JobStatus.SUCCEEDED for s in submitted)
    failed = sum(s.record.status == JobStatus.FAILED for s in submitted)
    with _progress(console) as progress:
        task = progress.add_task(_counts(done, failed), total=len(submitted),
                                 completed=done + failed)
        while pending:
            if deadline is not None and time.monotonic() >= deadline:
                break
            ids = sorted(pending)
            for job_id, status in zip(ids, ferry.store.statuses(ids), strict=True):
                if status is None or JobStatus(status) in FINISHED:
                    pending.discard(job_id)
                    done += status == JobStatus.SUCCEEDED.value
                    failed += status != JobStatus.SUCCEEDED.value
            progress.update(task, completed=done + failed, description=_counts(done, failed))
            if pending:
                time.sleep(POLL_SECONDS)
    for s in submitted:
        found = ferry.store.find(s.record.id)
        if found is not None:
            s.record = found
    return not pending


def _counts(done: int, failed: int) -> str:
    return f"[green]done {done}[/green]  [red]failed {failed}[/red]"


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


# ---- the command ------------------------------------------------------------------------------
def run(ferry: Ferry, path: Path, *, strict: bool, wait_for_jobs: bool, timeout: float | None,
        as_json: bool, out: Console, err: Console, name: str | None = None,
        callback_url: str | None = None) -> int:
    """``ferry submit-batch``: returns the exit code. Progress goes to stderr, results to stdout.
    The manifest's jobs are one batch (``name``, told ``callback_url`` when it completes)."""
    with no_cycle_collection():
        outcome = _read_and_submit(ferry, path, strict=strict, as_json=as_json, err=err, name=name,
                                   callback_url=callback_url)
    if isinstance(outcome, int):
        return outcome
    if wait_for_jobs:
        outcome.waited = True
        try:
            outcome.timed_out = not wait(ferry, outcome.submitted, err, timeout)
        except KeyboardInterrupt:  # the ids below are what the user needs to follow the jobs
            outcome.interrupted = True
    with no_cycle_collection():
        if as_json:
            print_report(outcome)
        else:
            _show(outcome, out, waited=wait_for_jobs)
    if outcome.bad:
        err.print(f"{len(outcome.bad)} bad line(s) not submitted")
    if outcome.timed_out:
        err.print(f"timed out after {timeout}s; the jobs still running keep running (ferry status ID)")
    if outcome.interrupted:
        err.print("stopped waiting; the jobs keep running: ferry status ID --wait, or ferry cancel ID")
    return outcome.exit_code()


def _read_and_submit(ferry: Ferry, path: Path, *, strict: bool, as_json: bool, err: Console,
                     name: str | None, callback_url: str | None) -> BatchOutcome | int:
    """Read and check the manifest, then submit its good lines as one batch: the outcome, or the
    exit code when nothing was submitted."""
    try:
        lines = read_manifest(path)
    except ManifestError as exc:
        err.print(f"[red]error:[/red] {plain(exc)}")
        return 2
    check(ferry, lines)
    outcome = BatchOutcome(lines)
    bad = outcome.bad
    for ln in bad:
        for p in ln.problems:
            err.print(f"[red]line {ln.number}:[/red] {plain(p)}", highlight=False)
    if bad and (strict or len(bad) == len(lines)):
        err.print(f"{len(bad)} bad line(s) of {len(lines)}: nothing submitted")
        if as_json:
            print_report(outcome)
        return 2
    try:
        opened = ferry.open_batch(name, callback_url)
    except SubmitError as exc:
        err.print(f"[red]error:[/red] --batch-callback: {plain('; '.join(p.message for p in exc.problems))}")
        return 2
    with opened:  # sealed once every line is in, whatever happened
        outcome.batch = opened.id
        outcome.submitted = submit(ferry, lines, err, opened.id)
    return outcome


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while a manifest's objects pile up: it would walk every one
    of them again and again as they grow (a third of the command's time for 20 000 lines, in
    bench.cli_batch). Nothing made here is cyclic garbage worth waiting for; it is back on after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def print_report(outcome: BatchOutcome) -> None:
    """The JSON outcome (``_report``), one line, written as it is: rich's print_json (indented,
    highlighted, wrapped) took 24 of 25 s for 2 000 lines, growing faster than the manifest. The
    jobs are encoded by pydantic in one call (``_SUBMITTED``): each record's own JSON, without a
    Python string per record to join (half the time of ``model_dump_json`` per record)."""
    head = json.dumps(_report(outcome), separators=(",", ":"))[:-1]
    jobs = _SUBMITTED.dump_json([{"line": s.line, "created": s.created, "job": s.record}
                                 for s in outcome.submitted])
    data = b"".join((head.encode(), b',"submitted":', jobs, b"}\n"))
    sys.stdout.flush()
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:  # a text-only stdout (a test's StringIO)
        sys.stdout.write(data.decode())
    else:
        binary.write(data)
        binary.flush()


def _report(outcome: BatchOutcome) -> dict[str, Any]:
    """What ``--json`` prints but the jobs (``"submitted"``: line, created and the job record each)."""
    statuses = [s.record.status.value for s in outcome.submitted]
    return {
        "batch": outcome.batch,
        "problems": [{"line": ln.number, "field": p.field, "message": p.message}
                     for ln in outcome.bad for p in ln.problems],
        "summary": {
            "lines": len(outcome.lines), "bad_lines": len(outcome.bad),
            "submitted": len(outcome.submitted),
            "created": sum(s.created for s in outcome.submitted),
            **{st.value: statuses.count(st.value) for st in JobStatus},
            "timed_out": outcome.timed_out,
        },
    }


def _show(outcome: BatchOutcome, out: Console, *, waited: bool) -> None:
    table = PlainTable("line")
    table.add_column("id", no_wrap=True, min_width=32)  # ids are for copying: never cut
    for title in ("kind", "connection", "status", "result / error"):
        table.add_column(title)
    for s in outcome.submitted:
        r = s.record
        status = r.status.value if s.created else f"{r.status.value} (existing)"
        table.add_row(str(s.line), r.id, r.kind, r.connection, status, outcome_text(r))
    out.print(table)
    statuses = [s.record.status.value for s in outcome.submitted]
    counts = ", ".join(f"{statuses.count(st.value)} {st.value}" for st in JobStatus
                       if statuses.count(st.value))
    out.print(f"{len(outcome.submitted)} submitted ({counts or 'none'}); "
              f"{len(outcome.bad)} bad line(s)" + ("" if waited else "; not waited for"))
    out.print(f"batch {outcome.batch}  (ferry batch status {outcome.batch})")

