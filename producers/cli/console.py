"""Where the command line writes, and what every command shares: one stdout and one stderr
console, the one way to fail, the one way to open Ferry from ``--config``, and the one way to show
a job (``ferry submit``, ``ferry status``, ``ferry replay`` and ``ferry submit-batch`` agree)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from producers.client import Ferry
from producers.errors import ConfigError
from producers.records import JobRecord, JobStatus

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line on stderr, then exit (2: bad input, nothing enqueued; 1: it failed)."""
    # escape: messages quote user input and ferry.toml ("[files] roots"), never markup
    err.print(f"[red]error:[/red] {escape(message)}", markup=True)
    sys.exit(code)


def connect(ctx: click.Context) -> Ferry:
    """Ferry over the ``--config`` the group was given; a bad ferry.toml is one line and exit 2."""
    try:
        return Ferry(config_path=ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as exc:
        fail(str(exc))


def finish(ferry: Ferry, record: JobRecord, *, wait: bool, timeout: float | None, as_json: bool) -> None:
    """How a command that enqueued a job ends: its id, or (``--wait``) the record once it ended,
    exiting 1 when it failed or the wait timed out."""
    if wait:
        try:
            record = ferry.wait(record.id, timeout=timeout)
        except TimeoutError as exc:
            fail(str(exc), code=1)
    if as_json:
        out.print_json(record.model_dump_json())
    elif wait:
        show_record(record)
    else:
        click.echo(record.id)
    if wait and record.status != JobStatus.SUCCEEDED:
        sys.exit(1)


def styled(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(status, "cyan")
    return f"[{colour}]{status}[/{colour}]"


def outcome_text(j: JobRecord) -> str:
    """One line: where the job failed and why, or what landed."""
    if j.error:
        code = f" HTTP {j.error.status}" if j.error.status else ""
        return f"{j.error.step}{code}: {j.error.message}"
    if j.result:
        return ", ".join(f"{k}={v}" for k, v in j.result.items() if isinstance(v, str | int) and v != "")
    return ""


def took(started: str | None, finished: str | None) -> str:
    if not (started and finished):
        return ""
    seconds = (datetime.fromisoformat(finished.replace("Z", "+00:00"))
               - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()
    return f"{seconds:.2f} s"


def show_record(j: JobRecord) -> None:
    """The job, its steps as a table, and where it landed or why it failed."""
    out.print(f"[bold]{j.id}[/bold]  {j.kind} via {j.connection}  {styled(j.status)}")
    table = Table("step", "status", "attempts", "started", "took", "result / error")
    for s in j.steps:
        detail = ""
        if s.error:
            detail = f"HTTP {s.error.status}: {s.error.message}" if s.error.status else s.error.message
        elif s.result:
            detail = ", ".join(f"{k}={v}" for k, v in s.result.items() if isinstance(v, str | int))
        started = (s.started_at or "")[11:19]  # HH:MM:SS (UTC); the full times are in --json
        table.add_row(s.name, styled(s.status), str(s.attempts), started, took(s.started_at, s.finished_at),
                      detail)
    out.print(table)
    if j.error:
        code = f" (HTTP {j.error.status})" if j.error.status else ""
        out.print(f"[red]failed at {j.error.step}{code}:[/red] {j.error.message}")
    elif j.result:
        out.print("[green]landed:[/green] " + outcome_text(j))
