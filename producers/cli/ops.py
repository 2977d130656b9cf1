"""The operator's commands: ``ferry cancel``, ``ferry pause`` / ``ferry resume``,
``ferry connections``, ``ferry workers`` and ``ferry flower``; and ``ferry worker
--metrics-port``'s set-up (``metrics_args``).

``ferry cancel JOB_ID`` exits 0 when the job is cancelled (or will be, once the step it runs now
ends), 1 when it had ended already, 2 for an unknown job. Every change logs an audit line.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from producers.cli.console import PlainTable, connect, fail, needs_extra, out, plain, styled_text
from producers.cli.replay import filter_options, filters_from, who
from producers.errors import ConfigError, JobNotFound
from producers.store import FINISHED_ALREADY

# prometheus-client's multiprocess mode reads this when it is imported: set it first.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PORT_ENV = "FERRY_METRICS_PORT"
METRICS_HOST_ENV = "FERRY_METRICS_HOST"


def register(cli: click.Group) -> None:
    for command in (cancel, pause, resume, connections, workers, flower):
        cli.add_command(command)


@click.command()
@click.argument("job_id", required=False)
@filter_options(default_status=None)
@click.option("--dry-run", is_flag=True, help="bulk: only count the matching jobs")
@click.option("--limit", type=int, default=None, help="bulk: at most N jobs (newest first)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
@click.pass_context
def cancel(ctx: click.Context, /, job_id: str | None, dry_run: bool, limit: int | None,
           as_json: bool, **kw: Any) -> None:
    """Cancel JOB_ID, or every job matching the filters (only queued ones unless --status says
    otherwise, as over HTTP). A queued or retrying job is cancelled at once and never runs another
    step; a running one finishes the step it runs now and stops there. A cancelled job can be
    replayed. Exit 0 cancelled, 1 it had ended, 2 no such job."""
    if bool(job_id) == any(v is not None for v in kw.values()):
        fail("give a JOB_ID, or filters (e.g. --status queued) for a bulk cancel")
    ferry = connect(ctx)
    if job_id:
        try:
            outcome = ferry.cancel(job_id, by=who())
        except JobNotFound:
            fail(f"no job {job_id}")
        _say(as_json, outcome.as_json(), {
            "cancelled": f"{job_id} cancelled",
            "cancelling": f"{job_id} is running a step; it is cancelled when that step ends",
            FINISHED_ALREADY: f"{job_id} had ended already ({outcome.status}); nothing to cancel",
        }[outcome.outcome])
        sys.exit(1 if outcome.outcome == FINISHED_ALREADY else 0)
    kw["status_"] = kw.get("status_") or "queued"  # POST /jobs:cancel's default too
    summary = ferry.cancel_many(filters_from(kw), by=who(), dry_run=dry_run, limit=limit)
    if dry_run:
        text = f"{summary.matched} job(s) match ({filters_from(kw)}); nothing cancelled (dry run)"
    else:
        text = (f"cancelled {summary.cancelled} of {summary.matched}"
                + (f"; {summary.cancelling} stop after their running step" if summary.cancelling else "")
                + (f"; {summary.finished} had ended" if summary.finished else ""))
    _say(as_json, summary.as_json(), text)


@click.command()
@click.argument("connection")
@click.pass_context
def pause(ctx: click.Context, connection: str) -> None:
    """Hold CONNECTION: no worker sends it a request until `ferry resume` (its jobs wait and
    spend no attempt; other connections run on). Survives worker restarts."""
    ferry = connect(ctx)
    try:
        changed = ferry.pause(connection, by=who())
    except ConfigError as exc:
        fail(str(exc))
    out.print(f"{connection} paused" if changed else f"{connection} was paused already")


@click.command()
@click.argument("connection")
@click.pass_context
def resume(ctx: click.Context, connection: str) -> None:
    """Lift CONNECTION's pause; the steps that waited go on at once."""
    ferry = connect(ctx)
    try:
        outcome = ferry.resume(connection, by=who())
    except ConfigError as exc:
        fail(str(exc))
    out.print(f"{connection} resumed; {outcome.republished} waiting step(s) sent on"
              if outcome.was_paused else f"{connection} was not paused")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print it as JSON")
@click.pass_context
def connections(ctx: click.Context, as_json: bool) -> None:
    """Each connection: service, paused, rate limit, the destination's 429 pause, jobs."""
    views = connect(ctx).connections()
    if as_json:
        click.echo(json.dumps({"connections": views}, indent=2))
        return
    table = PlainTable("connection", "service", "state", "rate limit", "in flight", "429 pause until",
                       "waiting", "queued", "running", "failed")
    for c in views:
        state = Text.from_markup(f"[yellow]paused[/yellow] by {plain(c['paused_by'])}" if c["paused"]
                                 else "[green]running[/green]")
        table.add_row(c["name"], c["service"], state, _or_dash(c["rate_limit"], "/s"),
                      _or_dash(c["max_in_flight"]), c["throttled_until"] or "—", str(c["parked"]),
                      *(str(c["jobs"][s]) for s in ("queued", "running", "failed")))
    out.print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print it as JSON")
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """The live workers (heartbeats in the last 30 s) and the steps they run now."""
    found = connect(ctx).workers()
    if as_json:
        click.echo(json.dumps({"workers": found}, indent=2))
        return
    if not found:
        out.print("[red]no worker is alive[/red] (none sent a heartbeat in the last 30 s)")
        return
    table = PlainTable("worker", "pid", "pool", "slots", "running now", "last heartbeat", "version",
                       "ferry.toml")
    for w in found:
        running = "\n".join(f"{r['job_id'][:12]} {r['step']} since {r['since'][11:19]}"
                            for r in w["running"]) or "—"
        table.add_row(w.get("name") or w["hostname"], str(w["pid"]), str(w.get("pool")),
                      _or_dash(w.get("slots")), running, styled_text(w["last_heartbeat"][11:19]),
                      w.get("version", ""), w.get("config") or "none")
    out.print(table)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def flower(ctx: click.Context) -> None:
    """Run Celery's Flower against Ferry's broker (the embedded Redis included); any further
    options go to `celery flower` (e.g. --port=5555)."""
    with needs_extra("flower", "Flower"):
        import flower as _flower  # noqa: F401  (its `celery flower` command)
    connect(ctx).celery.start(["flower", *ctx.args])


def metrics_args(args: list[str]) -> list[str]:
    """``ferry worker`` arguments without ``--metrics-port N`` and ``--metrics-host H``, which
    become the environment the worker serves its metrics from: the port, the address (loopback
    unless given: the endpoint has no auth), and a fresh multiprocess directory (or the one
    ``$PROMETHEUS_MULTIPROC_DIR`` names, emptied) so the processes (prefork's pool, or the
    supervisor's workers) add up. ``$FERRY_METRICS_PORT`` alone counts as ``--metrics-port``; a
    supervisor drops it from its children's environment, so only it serves, and no child empties
    the directory the others write to."""
    given, rest = _metrics_options(args)
    port = given.get("--metrics-port") or os.environ.get(METRICS_PORT_ENV) or None
    if port is None:
        if "--metrics-host" in given:
            fail("--metrics-host: give --metrics-port too")
        return rest
    if not port.isdigit():
        fail(f"--metrics-port: not a port number: {port!r}")
    os.environ[METRICS_PORT_ENV] = port
    if given.get("--metrics-host"):
        os.environ[METRICS_HOST_ENV] = str(given["--metrics-host"])
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)  # the documented "wipe it between runs"
        Path(directory).mkdir(parents=True, exist_ok=True)
    else:
        created = tempfile.mkdtemp(prefix="ferry-metrics-")
        os.environ[MULTIPROC_ENV] = created
        atexit.register(shutil.rmtree, created, ignore_errors=True)
    return rest


def _metrics_options(args: list[str]) -> tuple[dict[str, str | None], list[str]]:
    """``--metrics-port``/``--metrics-host`` (``--name V`` or ``--name=V``), and the other arguments."""
    given: dict[str, str | None] = {}
    rest = []
    it = iter(args)
    for arg in it:
        name, equals, value = arg.partition("=")
        if name in ("--metrics-port", "--metrics-host"):
            given[name] = value if equals else next(it, None)
        else:
            rest.append(arg)
    return given, rest


def _or_dash(value: Any, suffix: str = "") -> str:
    return "—" if value is None else f"{value:g}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


def _say(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        out.print(text)
