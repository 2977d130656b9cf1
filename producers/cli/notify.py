"""``ferry notify`` (deliver a job's webhook again) and ``ferry events`` (the job event stream).

``ferry events`` prints the events the stream still holds (oldest first) and exits; ``--follow``
then waits for new ones until interrupted. ``--after ID`` resumes after an event id printed
before, so a script that keeps the last id it handled sees every event exactly once.
"""

from __future__ import annotations

import json

import click

from producers.cli.console import connect, fail, out, printable
from producers.errors import JobNotFound, NotifyRefused
from producers.events import START, Event, check_id
from producers.kinds import KINDS


def register(cli: click.Group) -> None:
    cli.add_command(notify)
    cli.add_command(events)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the new delivery as JSON")
@click.pass_context
def notify(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Deliver an ended job's webhook to its callback_url again (a new delivery id; a worker
    sends it). Exit 1: no such job; 2: no callback_url, or the job has not ended."""
    ferry = connect(ctx)
    try:
        delivery = ferry.notify(job_id)
    except JobNotFound:
        fail(f"no job {job_id}", code=1)
    except NotifyRefused as exc:
        fail(str(exc))
    if as_json:
        out.print_json(delivery.model_dump_json())
    else:
        click.echo(f"delivery {delivery.id} ({delivery.event}) is due; `ferry status {job_id}` shows its progress")


@click.command()
@click.option("--follow", "-f", is_flag=True, help="keep waiting for new events")
@click.option("--job", help="only this job's events")
@click.option("--kind", type=click.Choice(list(KINDS)), help="only jobs of this kind")
@click.option("--connection", help="only jobs of this connection")
@click.option("--after", "after_id", default=START, help="only events after this event id")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.pass_context
def events(ctx: click.Context, follow: bool, job: str | None, kind: str | None, connection: str | None,
           after_id: str, as_json: bool) -> None:
    """Print every job state change: queued, step started/succeeded/retrying, succeeded, failed,
    replayed."""
    try:
        check_id(after_id)
    except ValueError as exc:
        fail(str(exc))
    ferry = connect(ctx)
    try:
        for event in ferry.events(after_id, job=job, kind=kind, connection=connection, follow=follow):
            click.echo(json.dumps(event.as_json()) if as_json else line(event))
    except KeyboardInterrupt:
        pass


def line(event: Event) -> str:
    """One event as a line of text: id, time, type, job, step and what else it carries."""
    data = event.data
    extra = {k: v for k, v in data.items()
             if k not in ("job", "kind", "connection", "step", "status", "time") and v is not None}
    parts = [event.id, str(data.get("time", "")), f"{event.type:<15}", str(data.get("job", "")),
             f"{data.get('kind')}@{data.get('connection')}", str(data.get("step") or "-"),
             str(data.get("status", "")), " ".join(f"{k}={v}" for k, v in extra.items())]
    return printable("  ".join(p for p in parts if p).rstrip())
