"""Where the command line writes, and what every command shares: one stdout and one stderr
console, the one way to fail, the one way to open Ferry from ``--config``, and the one way to show
a job (``ferry submit``, ``ferry status``, ``ferry replay`` and ``ferry submit-batch`` agree)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import click
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress
from rich.style import StyleType
from rich.table import Column, Table
from rich.text import Text

from producers.client import Ferry
from producers.config import find_config, no_config_warning
from producers.errors import ConfigError
from producers.records import JobRecord, JobStatus, StepStatus

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


# What a terminal takes as a command, not text: C0 controls but tab and line feed (ESC starts the
# sequences that set the window title, clear the screen or move the cursor; CR overwrites a line),
# DEL, C1 controls, and the bidirectional overrides that reorder what is shown.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """A value from a job, a producer or a destination with its control characters dropped."""
    return _CONTROLS.sub("", str(value))


def plain(value: object) -> str:
    """``printable``, with rich markup escaped too (a message saying ``[link=…]`` stays text)."""
    return escape(printable(value))


class PlainTable(Table):
    """Every table the command line prints: each text cell goes through ``plain``. A cell meant to
    carry style is a rich ``Text`` (``styled_text``), built from Ferry's own words only."""

    def add_row(self, *renderables: RenderableType | None, style: StyleType | None = None,
                end_section: bool = False) -> None:
        super().add_row(*(plain(r) if isinstance(r, str) else r for r in renderables), style=style,
                        end_section=end_section)


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line on stderr per line of ``message``, then exit (2: bad input, nothing enqueued;
    1: it failed)."""
    # escape: messages quote user input and ferry.toml ("[files] roots"), never markup
    for line in message.splitlines() or [""]:
        err.print(f"[red]error:[/red] {plain(line)}", markup=True)
    sys.exit(code)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {plain(message)}", markup=True)


def connect(ctx: click.Context) -> Ferry:
    """Ferry over the ``--config`` the group was given (else the nearest ferry.toml upward); a
    bad ferry.toml is one line and exit 2, none at all a warning (the command goes on)."""
    if find_config() is None:
        warn(no_config_warning())
    try:
        return Ferry(config_path=ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as exc:
        fail(str(exc))


# Exit codes every command shares (README "Exit codes"): 0 done, 1 a job failed, 2 bad input
# (nothing enqueued), and for --wait the coreutils `timeout` and shell conventions:
EXIT_TIMEOUT = 124  # --timeout passed; the job runs on
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting; the job runs on


def finish(ferry: Ferry, record: JobRecord, *, wait: bool, timeout: float | None, as_json: bool) -> None:
    """How a command that enqueued a job ends: its id, or (``--wait``) the record once it ended,
    exiting 1 when it failed. Waiting, the id comes first (on stderr), so neither Ctrl-C (exit
    130) nor ``--timeout`` (exit 124) leaves anyone without it."""
    if wait:
        record = wait_for(ferry, record, timeout)
    if as_json:
        out.print_json(record.model_dump_json())
    elif wait:
        show_record(record)
    else:
        click.echo(record.id)
    if wait and record.status != JobStatus.SUCCEEDED:
        sys.exit(1)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def not_before_from(at: str | None, in_: str | None) -> datetime | None:
    """``--at ISO`` or ``--in 90s|10m|2h|1d``: when a job may start (None: now). Exits 2 on
    both, or on a text neither reads."""
    if at and in_:
        fail("--at and --in: give one of them")
    if in_:
        found = _DURATION.match(in_.strip().lower())
        if not found:
            fail(f"--in: {in_!r} is not a duration like 90s, 10m, 2h or 1d")
        return datetime.now(UTC) + timedelta(seconds=float(found[1]) * _UNIT_SECONDS[found[2]])
    if at:
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            fail(f"--at: {at!r} is not an ISO 8601 time (e.g. 2026-12-24T02:00:00Z)")
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def wait_for(ferry: Ferry, record: JobRecord, timeout: float | None = None) -> JobRecord:
    """Block until the job ends. Ctrl-C or the timeout end the waiting, never the job: both say
    so, with the id and how to follow or cancel it."""
    if record.done:
        return record
    follow = f"follow it with `ferry status {record.id} --wait`, stop it with `ferry cancel {record.id}`"
    try:
        err.print(f"job {record.id} {record.status.value}: waiting for it to end "
                  "(Ctrl-C stops the waiting, not the job)", highlight=False)
        if err.is_terminal:
            return _wait_with_a_bar(ferry, record.id, timeout)
        return ferry.wait(record.id, timeout=timeout)
    except TimeoutError as exc:
        err.print(f"[red]error:[/red] {plain(exc)}; it keeps running: {plain(follow)}")
        sys.exit(EXIT_TIMEOUT)
    except KeyboardInterrupt:
        err.print(f"stopped waiting; job {record.id} keeps running: {plain(follow)}", highlight=False)
        sys.exit(EXIT_INTERRUPTED)


def _wait_with_a_bar(ferry: Ferry, job_id: str, timeout: float | None) -> JobRecord:
    """``wait`` with a live line on a terminal: the step that runs and, for an upload, its bytes,
    rate and time left (the figures the worker writes once a second)."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
               TransferSpeedColumn(), TimeRemainingColumn())
    with RichProgress(*columns, console=err, transient=True) as bar:
        line = bar.add_task("queued", total=None)

        def show(record: JobRecord) -> None:
            step = next((s for s in record.steps if s.status == StepStatus.RUNNING), None)
            figures = step.progress if step is not None else None
            bar.update(line, description=step.name if step is not None else record.status.value,
                       completed=figures.bytes_sent if figures else 0,
                       total=figures.bytes_total if figures else None)

        return ferry.wait(job_id, timeout=timeout, poll=0.5, on_poll=show)


def styled(status: str) -> str:
    colour = {"succeeded": "green", "delivered": "green", "failed": "red", "running": "yellow",
              "retried": "yellow", "retrying": "yellow"}.get(status, "cyan")
    return f"[{colour}]{status}[/{colour}]"


def styled_text(status: str, more: str = "") -> Text:
    """``styled`` as a table cell (``PlainTable`` shows plain strings as they are)."""
    return Text.from_markup(styled(status) + plain(more))


def outcome_text(j: JobRecord) -> str:
    """One line: where the job failed and why, or what landed."""
    if j.error:
        return f"{j.error.step}{_http(j.error.status, ' HTTP ')}: {j.error.message}"
    if j.result:
        return ", ".join(f"{k}={v}" for k, v in j.result.items() if isinstance(v, str | int) and v != "")
    if j.status == JobStatus.SCHEDULED and j.not_before:
        return f"not before {j.not_before}"
    return ""


def _http(status: int | None, prefix: str = "HTTP ", suffix: str = "") -> str:
    return f"{prefix}{status}{suffix}" if status else ""


def took(started: str | None, finished: str | None) -> str:
    if not (started and finished):
        return ""
    seconds = (datetime.fromisoformat(finished.replace("Z", "+00:00"))
               - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()
    return f"{seconds:.2f} s"


def _clock(at: str | None) -> str:
    return (at or "")[11:19]  # HH:MM:SS (UTC); the full times are in --json


def show_record(j: JobRecord) -> None:
    """The job, its steps as a table (attempts and runs when there is more to tell), and where it
    landed or why it failed."""
    out.print(f"[bold]{plain(j.id)}[/bold]  {plain(j.kind)} via {plain(j.connection)}  {styled(j.status)}"
              + (f"  not before {plain(j.not_before)}" if j.not_before else ""))
    table = PlainTable("step", "status", "attempts", "started", "took", "result / error")
    for s in j.steps:
        detail = ""
        if s.error:
            detail = _http(s.error.status, suffix=": ") + s.error.message
        elif s.result:
            detail = ", ".join(f"{k}={v}" for k, v in s.result.items() if isinstance(v, str | int))
        table.add_row(s.name, styled_text(s.status), str(s.attempts), _clock(s.started_at),
                      took(s.started_at, s.finished_at), detail)
    out.print(table)
    _show_progress(j)
    _show_attempts(j)
    _show_runs(j)
    _show_notifications(j)
    if j.error:
        out.print(f"[red]failed at {plain(j.error.step)}{_http(j.error.status, ' (HTTP ', ')')}:[/red] "
                  f"{plain(j.error.message)}")
    elif j.result:
        out.print("[green]landed:[/green] " + plain(outcome_text(j)))


def _show_progress(j: JobRecord) -> None:
    """Each upload step's bytes: how far it got, at what rate, how long is left."""
    for s in j.steps:
        if s.progress is not None:
            out.print(f"[bold]{plain(s.name)}[/bold] uploaded {plain(s.progress.describe())}")


def _show_attempts(j: JobRecord) -> None:
    """Every recorded attempt, when there is more to tell than one success per step."""
    if not any(s.eventful for s in j.steps):
        return
    attempts = [(s.name, a) for s in j.steps for a in s.history]
    table = PlainTable(Column("step", no_wrap=True), "run", "#", "started", "took", "outcome", "error",
                       title="attempts")
    for step, a in attempts:
        delay = f", next in {a.retry_delay:.1f} s" if a.retry_delay is not None else ""
        outcome = styled_text(a.status, delay)
        table.add_row(step, str(a.run), str(a.number), _clock(a.started_at),
                      took(a.started_at, a.finished_at), outcome,
                      _http(a.http_status, suffix=": ") + (a.message or ""))
    out.print(table)


def _show_runs(j: JobRecord) -> None:
    """The job's runs (the submit, each replay), when it has been replayed."""
    if len(j.runs) < 2:
        return
    table = PlainTable("run", "triggered by", Column("from step", no_wrap=True), "started", "outcome",
                       "why / note", title="runs")
    for r in j.runs:
        why = f"{r.error.step}{_http(r.error.status, ' HTTP ')}: {r.error.message}" if r.error else ""
        table.add_row(str(r.number), r.trigger, r.from_step, _clock(r.started_at),
                      styled_text(r.outcome or "running"), "; ".join(filter(None, [why, r.note])))
    out.print(table)


def _show_notifications(j: JobRecord) -> None:
    """The webhook deliveries to the job's callback_url: attempts, last answer, next try."""
    if not j.callback_url:
        return
    table = PlainTable("delivery", "event", "run", "status", "attempts", "last answer", "last try", "next try",
                       title=f"notifications → {plain(j.callback_url)}")
    for d in j.notifications:
        answer = "; ".join(filter(None, [_http(d.last_status), d.last_error or ""]))
        table.add_row(d.id[:12], d.event, str(d.run), styled_text(d.status), str(d.attempts), answer,
                      _clock(d.last_attempt_at), _clock(d.next_attempt_at))
    out.print(table)


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Imports made inside that fail (an install without ``extra``) end in one line naming the
    extra to install, not a traceback."""
    try:
        yield
    except ImportError as exc:
        fail(f"{what} needs the {extra} extra (pip install 'ferry[{extra}]'): {exc}")
