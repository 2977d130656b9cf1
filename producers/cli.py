"""``ferry``: the command line users and other tools script against.

Exit codes: 0 success (or the job succeeded, with ``--wait``), 1 the job failed, 2 bad input
(nothing was enqueued). ``submit``'s subcommands are built from the kind declarations, so a new
kind brings its command and options with it.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any

import click
import redis
from kombu.exceptions import OperationalError
from pydantic.fields import FieldInfo
from rich.table import Table

from producers.client import Ferry
from producers.console import err, fail, out
from producers.errors import ConfigError, JobNotFound, SubmitError
from producers.kinds import KINDS, Kind
from producers.records import JobRecord, JobStatus


def connect(ctx: click.Context) -> Ferry:
    try:
        return Ferry(config_path=ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as exc:
        fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", envvar="FERRY_CONFIG", help="ferry.toml to use (default ./ferry.toml)")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Ferry carries file uploads into SaaS APIs whose uploads take several calls."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


# ---- submit ------------------------------------------------------------------------------------
@cli.group()
def submit() -> None:
    """Validate and enqueue one upload job; prints its id (or the record with --json)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_for(name: str, field: FieldInfo) -> click.Option:
    if field.annotation is bool:
        return click.Option([_flag(name)], is_flag=True, default=None, help=field.description)
    return click.Option([_flag(name)], default=None, help=field.description)


def _submit_command(kind: Kind) -> click.Command:
    params: list[click.Parameter] = [
        click.Option(["-c", "--connection"], required=True, help="connection name from ferry.toml"),
        *[_option_for(n, f) for n, f in kind.params.model_fields.items()],
    ]
    if kind.file is not None:
        params.append(click.Argument(["file"], required=False))
        if kind.file.uri_allowed:
            params.append(click.Option(["--uri"], help="a URL to take the file from instead"))
    params += [
        click.Option(["--idempotency-key"], help="the same key returns the existing job"),
        click.Option(["--wait"], is_flag=True, help="block until the job ends; exit 1 if it failed"),
        click.Option(["--timeout"], type=float, default=None, help="with --wait: give up after N s"),
        click.Option(["--json", "as_json"], is_flag=True, help="print the job record as JSON"),
    ]

    @click.pass_context
    def run(ctx: click.Context, /, **kw: Any) -> None:
        _submit(ctx, kind, kw)

    return click.Command(kind.name, params=params, callback=run, help=kind.summary)


def _submit(ctx: click.Context, kind: Kind, kw: dict[str, Any]) -> None:
    ferry = connect(ctx)
    values = {n: kw[n] for n in kind.params.model_fields if kw.get(n) is not None}
    try:
        record, _ = ferry.submit_checked(
            kind.name, connection=kw["connection"], file=kw.get("file"), uri=kw.get("uri"),
            params=values, idempotency_key=kw.get("idempotency_key"))
    except SubmitError as exc:
        fail("; ".join(f"{_flag(p.field) if p.field in kind.params.model_fields else p.field}: "
                       f"{p.message}" for p in exc.problems))
    _finish(ferry, record, wait=kw["wait"], timeout=kw.get("timeout"), as_json=kw["as_json"])


def _finish(ferry: Ferry, record: JobRecord, *, wait: bool, timeout: float | None, as_json: bool) -> None:
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


for _kind in KINDS.values():
    submit.add_command(_submit_command(_kind))


@cli.command("submit-batch")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--strict", is_flag=True, help="submit nothing if any line is bad")
@click.option("--wait", is_flag=True, help="follow the jobs to the end; exit 1 if any failed")
@click.option("--timeout", type=float, default=None, help="with --wait: give up after N s")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
@click.pass_context
def submit_batch(ctx: click.Context, manifest: str, strict: bool, wait: bool,
                 timeout: float | None, as_json: bool) -> None:
    """Submit one job per line of a .jsonl (a POST /jobs body per line) or .csv manifest.
    Exit 0 all submitted (and succeeded, with --wait), 1 a job failed, 2 bad lines."""
    from pathlib import Path

    from producers import batch

    sys.exit(batch.run(connect(ctx), Path(manifest), strict=strict, wait_for_jobs=wait,
                       timeout=timeout, as_json=as_json, out=out, err=err))


# ---- reading the store -------------------------------------------------------------------------
@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show one job: status, each step with attempts, what landed or why it failed."""
    ferry = connect(ctx)
    try:
        record = ferry.status(job_id)
    except JobNotFound:
        fail(f"no job {job_id}", code=1)
    if as_json:
        out.print_json(record.model_dump_json())
    else:
        show_record(record)
    sys.exit(1 if record.status == JobStatus.FAILED else 0)


@cli.command()
@click.option("--status", "status_", type=click.Choice([s.value for s in JobStatus]))
@click.option("--kind", type=click.Choice(list(KINDS)))
@click.option("--connection")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs(ctx: click.Context, status_: str | None, kind: str | None, connection: str | None,
         limit: int, cursor: str | None, as_json: bool) -> None:
    """List jobs, newest first."""
    page = connect(ctx).jobs(status=status_, kind=kind, connection=connection, limit=limit, cursor=cursor)
    if as_json:
        click.echo(json.dumps({"jobs": [j.model_dump(mode="json") for j in page.jobs],
                               "next_cursor": page.next_cursor}, indent=2))
        return
    table = Table("id", "kind", "connection", "status", "created", "failed step / result")
    for j in page.jobs:
        table.add_row(j.id, j.kind, j.connection, _styled(j.status), j.created_at, _outcome(j))
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


def _styled(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(status, "cyan")
    return f"[{colour}]{status}[/{colour}]"


def _outcome(j: JobRecord) -> str:
    if j.error:
        code = f" HTTP {j.error.status}" if j.error.status else ""
        return f"{j.error.step}{code}: {j.error.message}"
    if j.result:
        return ", ".join(f"{k}={v}" for k, v in j.result.items() if isinstance(v, str | int) and v != "")
    return ""


def _took(started: str | None, finished: str | None) -> str:
    if not (started and finished):
        return ""
    seconds = (datetime.fromisoformat(finished.replace("Z", "+00:00"))
               - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()
    return f"{seconds:.2f} s"


def show_record(j: JobRecord) -> None:
    out.print(f"[bold]{j.id}[/bold]  {j.kind} via {j.connection}  {_styled(j.status)}")
    table = Table("step", "status", "attempts", "started", "took", "result / error")
    for s in j.steps:
        detail = ""
        if s.error:
            detail = f"HTTP {s.error.status}: {s.error.message}" if s.error.status else s.error.message
        elif s.result:
            detail = ", ".join(f"{k}={v}" for k, v in s.result.items() if isinstance(v, str | int))
        started = (s.started_at or "")[11:19]  # HH:MM:SS (UTC); the full times are in --json
        table.add_row(s.name, _styled(s.status), str(s.attempts), started, _took(s.started_at, s.finished_at),
                      detail)
    out.print(table)
    if j.error:
        code = f" (HTTP {j.error.status})" if j.error.status else ""
        out.print(f"[red]failed at {j.error.step}{code}:[/red] {j.error.message}")
    elif j.result:
        out.print("[green]landed:[/green] " + _outcome(j))


# ---- processes ---------------------------------------------------------------------------------
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.pass_context
def api(ctx: click.Context, host: str, port: int) -> None:
    """Serve the HTTP API (POST /jobs…); bearer tokens from the variable [api] tokens_env names."""
    try:
        from producers.api import serve  # the api extra: only those who serve it need fastapi
    except ImportError as exc:
        fail(f"the HTTP API needs the api extra (pip install 'ferry[api]'): {exc}")
    try:
        serve(host=host, port=port, config_path=ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as exc:
        fail(str(exc))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a worker: any further options go to ``celery worker`` (e.g. -c 4, --pool threads).

    It serves every configured queue; ``-Q ferry.atlassian,ferry.awork`` serves only those."""
    try:
        from worker.celery_app import app
    except ImportError as exc:
        fail(f"the worker needs the worker extra (pip install 'ferry[worker]'): {exc}")
    args = list(ctx.args)
    known = list(app.amqp.queues)
    unknown = [q for q in _queue_options(args) if q not in known]
    if unknown:  # Celery would create it, and wait on a queue nobody publishes to
        fail(f"unknown queue {', '.join(unknown)} (configured: {', '.join(known)})")
    if not any(a.startswith(("-l", "--loglevel")) for a in args):
        args.append("--loglevel=INFO")
    if not any(a.startswith(("-n", "--hostname")) for a in args):
        # Celery's default node name is one per host; two workers on a host (one per queue, say)
        # would share it, and on RabbitMQ the second could not declare its control queue.
        args.append(f"--hostname=ferry-{os.getpid()}@%h")
    app.worker_main(["worker", *args])


def _queue_options(args: list[str]) -> list[str]:
    """The queue names in celery worker's ``-Q``/``--queues``/``-X``/``--exclude-queues`` options."""
    names: list[str] = []
    for i, arg in enumerate(args):
        flag, _, value = arg.partition("=")
        if flag in ("-Q", "--queues", "-X", "--exclude-queues"):
            value = value or (args[i + 1] if i + 1 < len(args) else "")
        elif arg.startswith(("-Q", "-X")):
            value = arg[2:]
        else:
            continue
        names += [n for n in value.split(",") if n]
    return names


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8900, show_default=True)
@click.option("--data", default=".ferry/sandbox", show_default=True, help="where received files go")
@click.option("--email", default="ferry@example.com", show_default=True)
@click.option("--token", default="sandbox-token", show_default=True)
@click.option("--bearer", default="sandbox-awork-token", show_default=True)
@click.option("--jwt-ttl", type=int, default=600, show_default=True, help="media JWT lifetime, s")
@click.option("--seed", is_flag=True, help="create a workspace, objects, projects… to land on")
def sandbox(host: str, port: int, data: str, email: str, token: str, bearer: str, jwt_ttl: int,
            seed: bool) -> None:
    """Run the local emulator of the five destination APIs."""
    from sandbox.server import run

    run(host=host, port=port, data_dir=data, email=email, token=token, bearer=bearer, seed=seed,
        jwt_ttl=jwt_ttl)


@cli.command()
@click.option("--keep", is_flag=True, help="leave sandbox, worker and Redis running afterwards")
def demo(keep: bool) -> None:
    """Start Redis, the sandbox and workers; submit sample jobs of every kind; print the results.
    Exits 0 only if every sample job succeeded."""
    from worker.demo import run_demo

    sys.exit(run_demo(keep=keep))


def _register_reads() -> None:
    from producers.cli_reads import register  # `ferry jira|marketplace|awork …` (imports this module)

    register(cli)


_register_reads()


def _register_replay() -> None:
    from producers.cli_replay import register  # `ferry replay`, `ferry purge` (imports this module)

    register(cli)


_register_replay()


def main() -> None:
    try:
        cli(obj={})
    except (redis.RedisError, OperationalError) as exc:
        # One line, not a traceback: the usual cause is a REDIS_URL pointing at nothing.
        fail(f"cannot reach Redis: {exc} (check REDIS_URL; unset it to use the embedded Redis)", code=1)
