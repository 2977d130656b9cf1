"""``ferry batch list|status|wait|replay|cancel|notify|open|seal``: a batch of jobs as one thing.

``ferry batch open`` prints ``{"batch": id}`` with ``--json``; ``ferry submit KIND … --batch ID``
joins it; ``ferry batch seal ID`` closes it (it completes once no job is left to run).
``ferry batch wait ID`` exits 0 when every job succeeded, 1 when one failed or was cancelled,
124 on ``--timeout``, 130 on Ctrl-C; in a terminal it shows a bar of jobs and one of bytes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn

from producers import replay as ops
from producers.audit import audit
from producers.cli.console import PlainTable, connect, err, fail, out, plain
from producers.cli.replay import who
from producers.client import Ferry
from producers.errors import BatchNotFound, NotifyRefused, SubmitError
from producers.records import BatchRecord

TIMED_OUT, INTERRUPTED = 124, 130


def register(cli: click.Group) -> None:
    cli.add_command(batch)


def status_json(record: BatchRecord) -> dict[str, Any]:
    """The status record (``GET /batches/{id}`` answers the same)."""
    return record.model_dump(mode="json")


def _get(ferry: Ferry, batch_id: str) -> BatchRecord:
    try:
        return ferry.batch(batch_id)
    except BatchNotFound as exc:
        fail(str(exc), code=1)


def _counts(record: BatchRecord) -> str:
    return ", ".join(f"{n} {status}" for status, n in record.counts.items() if n) or "no jobs"


@click.group()
def batch() -> None:
    """Batches: many jobs watched, replayed and told about as one."""


@batch.command("open")
@click.option("--name", help="a name to know it by")
@click.option("--batch-callback", "callback_url", metavar="URL",
              help="POST a signed batch.completed webhook to URL when it completes")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def open_(ctx: click.Context, name: str | None, callback_url: str | None, as_json: bool) -> None:
    """Open a batch for jobs submitted one by one (ferry submit … --batch ID); seal it after."""
    try:
        opened = connect(ctx).open_batch(name, callback_url)
    except SubmitError as exc:
        fail("; ".join(f"--batch-callback: {p.message}" for p in exc.problems))
    click.echo(json.dumps({"batch": opened.id}) if as_json else opened.id)


@batch.command()
@click.argument("batch_id")
@click.pass_context
def seal(ctx: click.Context, batch_id: str) -> None:
    """Close BATCH_ID to new jobs: it completes once none of its jobs is left to run."""
    try:
        sealed = connect(ctx).seal_batch(batch_id)
    except BatchNotFound as exc:
        fail(str(exc), code=1)
    out.print(f"batch {batch_id} " + ("sealed" if sealed else "was sealed already"))


@batch.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The newest batches, those still running first."""
    found = connect(ctx).batches(limit)
    if as_json:
        click.echo(json.dumps({"batches": [status_json(b) for b in found]}, indent=2))
        return
    table = PlainTable("id", "name", "total", "counts", "sealed", "finished")
    for b in found:
        table.add_row(b.id, b.name or "", str(b.total), _counts(b), b.sealed_at or "open", b.finished_at or "")
    out.print(table)


@batch.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, batch_id: str, as_json: bool) -> None:
    """A batch's counts by status, bytes, ETA, and whether it completed."""
    record = _get(connect(ctx), batch_id)
    if as_json:
        click.echo(json.dumps(status_json(record), indent=2))
        return
    out.print(f"batch {record.id}" + (f" ({plain(record.name)})" if record.name else ""))
    existing = f"; {record.existing} existing" if record.existing else ""
    out.print(f"{record.total} job(s): {_counts(record)}{existing}")
    out.print(f"bytes {record.bytes_done} of {record.bytes_total}"
              + (f"; ETA {record.eta_seconds:.0f}s" if record.eta_seconds is not None else ""))
    out.print(f"sealed {record.sealed_at or 'no (open)'}; finished {record.finished_at or 'not yet'}")


@batch.command()
@click.argument("batch_id")
@click.option("--timeout", type=float, default=None, help="give up after N s (exit 124)")
@click.option("--json", "as_json", is_flag=True, help="print the status record at the end")
@click.pass_context
def wait(ctx: click.Context, batch_id: str, timeout: float | None, as_json: bool) -> None:
    """Block until BATCH_ID completes. Exit 0 all succeeded, 1 any failed or cancelled, 124
    timed out, 130 interrupted."""
    ferry = connect(ctx)
    record = _get(ferry, batch_id)
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                    disable=not err.is_terminal)
    bytes_bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=err,
                          disable=not err.is_terminal)
    jobs_task = bars.add_task("jobs", total=record.total)
    bytes_task = bytes_bars.add_task("bytes", total=record.bytes_total or None)

    def show(now: BatchRecord) -> None:
        bars.update(jobs_task, total=now.total, completed=now.total - now.active)
        bytes_bars.update(bytes_task, total=now.bytes_total or None, completed=now.bytes_done)

    try:
        with bars, bytes_bars:
            record = ferry.wait_batch(batch_id, timeout=timeout, progress=show)
    except TimeoutError as exc:
        err.print(str(exc))
        sys.exit(TIMED_OUT)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    if as_json:
        click.echo(json.dumps(status_json(record), indent=2))
    else:
        out.print(f"batch {batch_id} completed: {_counts(record)}")
    sys.exit(0 if record.all_succeeded else 1)


@batch.command()
@click.argument("batch_id")
@click.option("--rate", type=float, default=ops.DEFAULT_RATE, show_default=True,
              help="jobs replayed per second (spares the destination)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def replay(ctx: click.Context, batch_id: str, rate: float, as_json: bool) -> None:
    """Replay BATCH_ID's failed jobs from their failed steps; it completes (and is told) again."""
    if rate <= 0:
        fail("--rate must be above 0")
    try:
        outcome = ops.replay_batch(connect(ctx), batch_id, trigger=who() + " batch", rate=rate)
    except BatchNotFound as exc:
        fail(str(exc), code=1)
    audit("replay", who(), target={"batch": batch_id}, jobs=outcome.replayed, matched=outcome.matched)
    if as_json:
        click.echo(json.dumps(outcome.as_json(), indent=2))
    else:
        out.print(f"replayed {outcome.replayed} of {outcome.matched} failed job(s)"
                  + (f"; refused {len(outcome.refused)}" if outcome.refused else ""))


@batch.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx: click.Context, batch_id: str, as_json: bool) -> None:
    """Seal BATCH_ID and cancel its queued and running jobs."""
    try:
        outcome = connect(ctx).cancel_batch(batch_id, by=who())
    except BatchNotFound as exc:
        fail(str(exc), code=1)
    click.echo(json.dumps(outcome, indent=2) if as_json else
               f"cancelled {outcome['cancelled']}, cancelling {outcome['cancelling']} of {outcome['matched']}")


@batch.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="print the new delivery as JSON")
@click.pass_context
def notify(ctx: click.Context, batch_id: str, as_json: bool) -> None:
    """Deliver BATCH_ID's batch.completed webhook again (its last completion; a new delivery id,
    a worker sends it). Exit 1: no such batch; 2: no callback URL, or not complete."""
    try:
        delivery = connect(ctx).notify_batch(batch_id)
    except BatchNotFound as exc:
        fail(str(exc), code=1)
    except NotifyRefused as exc:
        fail(str(exc))
    audit("notify", who(), target={"batch": batch_id}, jobs=0, delivery=delivery.id)
    if as_json:
        click.echo(delivery.model_dump_json())
    else:
        click.echo(f"delivery {delivery.id} ({delivery.event}) is due; `ferry batch status {batch_id}` shows it")
