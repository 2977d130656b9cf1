"""``ferry``: the command line users and other tools script against.

Exit codes: 0 success (or the job succeeded, with ``--wait``), 1 the job failed, 2 bad input
(nothing was enqueued). ``submit``'s subcommands are built from the kind declarations, so a new
kind brings its command and options with it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Literal, get_args, get_origin

import click
import redis
from kombu.exceptions import OperationalError
from pydantic.fields import FieldInfo

from producers.cli.console import (
    PlainTable,
    connect,
    err,
    fail,
    finish,
    needs_extra,
    not_before_from,
    out,
    outcome_text,
    plain,
    show_record,
    styled_text,
    wait_for,
)
from producers.cli.examples import add_examples
from producers.cli.home import config_to_serve
from producers.config import FerryConfig
from producers.errors import ConfigError, JobNotFound, SubmitError
from producers.kinds import KINDS, Kind
from producers.priority import PRIORITIES
from producers.records import JobStatus
from producers.store import Filters


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", envvar="FERRY_CONFIG",
              help="ferry.toml to use (default: the nearest ferry.toml in this folder or above; see ferry info)")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Ferry carries file uploads into SaaS APIs whose uploads take several calls."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    if config:  # every part (the embedded Redis's home, a worker's children) finds the same file
        os.environ["FERRY_CONFIG"] = config


# ---- submit ------------------------------------------------------------------------------------
@cli.group()
def submit() -> None:
    """Validate and enqueue one upload job; prints its id (or the record with --json)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_for(name: str, field: FieldInfo) -> click.Option:
    """The option for one parameter. Required ones say so, and a parameter with fixed values
    shows them; the values are still checked by the kind's model, with every other problem."""
    if field.annotation is bool:
        return click.Option([_flag(name)], is_flag=True, default=None, help=field.description)
    values = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
    metavar = "[" + "|".join(map(str, values)) + "]" if values else None
    required = "  [required]" if field.is_required() else ""
    return click.Option([_flag(name)], default=None, metavar=metavar, help=(field.description or "") + required)


def _submit_command(kind: Kind) -> click.Command:
    params: list[click.Parameter] = [
        click.Option(["-c", "--connection"], required=True, help="connection name from ferry.toml"),
        *[_option_for(n, f) for n, f in kind.params.model_fields.items()],
    ]
    if kind.file is not None:
        # Not required by click: a missing file is reported by the kind's checks with the rest.
        params.append(click.Argument(["file"], required=False,
                                     metavar="(FILE | --uri URL)" if kind.file.uri_allowed else "FILE"))
        if kind.file.uri_allowed:
            params.append(click.Option(["--uri"], help="a URL to take the file from instead"))
    params += [
        click.Option(["--idempotency-key"], help="the same key returns the existing job"),
        click.Option(["--callback", "callback_url"], metavar="URL",
                     help="POST a signed webhook to URL each time the job ends ([notifications])"),
        click.Option(["--batch"], metavar="ID", help="join the open batch ID (ferry batch open)"),
        click.Option(["--at", "at"], metavar="TIME", help="start no earlier than this ISO time (UTC if no offset)"),
        click.Option(["--in", "in_"], metavar="DURATION", help="start no earlier than 90s, 10m, 2h, 1d from now"),
        click.Option(["--priority"], type=click.Choice(PRIORITIES), help="what runs next (default: normal)"),
        click.Option(["--tenant"], metavar="NAME", help="whose job: tenants take turns within a priority"),
        click.Option(["--wait"], is_flag=True,
                     help="print the id, then block until the job ends; exit 1 if it failed (Ctrl-C: 130)"),
        click.Option(["--timeout"], type=float, default=None,
                     help="with --wait: stop waiting after N s (exit 124; the job runs on)"),
        click.Option(["--json", "as_json"], is_flag=True, help="print the job record as JSON"),
    ]

    @click.pass_context
    def run(ctx: click.Context, /, **kw: Any) -> None:
        _submit(ctx, kind, kw)

    return click.Command(kind.name, params=params, callback=run, help=kind.summary)


def _option_name(kind: Kind, field: str) -> str:
    """A problem's field as the command line spells it (``--object-type``, ``--callback``)."""
    if field in kind.params.model_fields:
        return _flag(field)
    return {"callback_url": "--callback", "tenant": "--tenant"}.get(field, field)


def _submit(ctx: click.Context, kind: Kind, kw: dict[str, Any]) -> None:
    ferry = connect(ctx)
    values = {n: kw[n] for n in kind.params.model_fields if kw.get(n) is not None}
    try:
        record, _ = ferry.submit_checked(
            kind.name, connection=kw["connection"], file=kw.get("file"), uri=kw.get("uri"),
            params=values, idempotency_key=kw.get("idempotency_key"), callback_url=kw.get("callback_url"),
            batch=kw.get("batch"), not_before=not_before_from(kw.get("at"), kw.get("in_")),
            priority=kw.get("priority"), tenant=kw.get("tenant"))
    except SubmitError as exc:
        fail("; ".join(f"{_option_name(kind, p.field)}: {p.message}" for p in exc.problems))
    finish(ferry, record, wait=kw["wait"], timeout=kw.get("timeout"), as_json=kw["as_json"])


for _kind in KINDS.values():
    submit.add_command(_submit_command(_kind))


@cli.command("submit-batch")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--strict", is_flag=True, help="submit nothing if any line is bad")
@click.option("--wait", is_flag=True, help="follow the jobs to the end; exit 1 if any failed")
@click.option("--timeout", type=float, default=None, help="with --wait: stop waiting after N s (exit 124)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
@click.option("--name", help="the batch's name")
@click.option("--batch-callback", "callback_url", metavar="URL",
              help="POST a signed batch.completed webhook to URL when the batch completes")
@click.pass_context
def submit_batch(ctx: click.Context, manifest: str, strict: bool, wait: bool,
                 timeout: float | None, as_json: bool, name: str | None,
                 callback_url: str | None) -> None:
    """Submit one job per line of a .jsonl or .csv manifest; every bad line is reported with its
    number. Exit 0 all submitted (and succeeded, with --wait), 1 a job failed, 2 bad lines,
    124 --timeout passed, 130 Ctrl-C (the jobs run on).

    \b
    .jsonl: one POST /jobs body per line (blank lines skipped):
      {"kind": "assets-attachment", "connection": "acme", "file": "scans/88.pdf",
       "params": {"object": "88"}, "idempotency_key": "scan-88"}
    .csv: a header row; kind, connection, file, uri, idempotency_key, and each
    parameter as a params.<name> column (or one params column of JSON):
      kind,connection,file,params.object,params.comment
      assets-attachment,acme,scans/88.pdf,88,scan
    A relative file is relative to the manifest's folder. The manifest is one batch
    (--name, --batch-callback URL: told once it completes); --json names it."""
    from pathlib import Path

    from producers.cli import batch

    sys.exit(batch.run(connect(ctx), Path(manifest), strict=strict, wait_for_jobs=wait,
                       timeout=timeout, as_json=as_json, out=out, err=err, name=name,
                       callback_url=callback_url))


# ---- reading the store -------------------------------------------------------------------------
@cli.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="block until the job ends; exit 1 if it failed")
@click.option("--follow", "-f", is_flag=True,
              help="like --wait, showing the running step live in a terminal (an upload's bytes, rate, time left)")
@click.option("--timeout", type=float, default=None, help="with --wait: stop waiting after N s (exit 124)")
@click.option("--json", "as_json", is_flag=True, help="print the job record as JSON")
@click.pass_context
def status(ctx: click.Context, job_id: str, wait: bool, follow: bool, timeout: float | None, as_json: bool) -> None:
    """Show one job: status, each step with attempts, what landed or why it failed (or, for a
    job that does not move, why). Exit 0, or 1 when the job failed or is unknown."""
    ferry = connect(ctx)
    try:
        record = ferry.status(job_id)
    except JobNotFound:
        fail(f"no job {job_id} in {ferry.location.url} (ferry info says which Redis this is)", code=1)
    if wait or follow:
        record = wait_for(ferry, record, timeout)
    if as_json:
        out.print_json(record.model_dump_json())
    else:
        show_record(record)
        for reason in ferry.why_waiting(record):
            out.print(f"[yellow]waiting:[/yellow] {plain(reason)}")
    sys.exit(1 if record.status == JobStatus.FAILED else 0)


@cli.command()
@click.option("--status", "status_", type=click.Choice([s.value for s in JobStatus]))
@click.option("--kind", type=click.Choice(list(KINDS)))
@click.option("--connection")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page")
@click.option("--batch", metavar="ID", help="only the jobs of batch ID")
@click.option("--step", "error_step", help="the step the job failed at")
@click.option("--http-status", type=int, help="the HTTP status of the failure")
@click.option("--since", help="created at or after: ISO-8601 or an age (90m, 2h, 7d)")
@click.option("--until", help="created before: ISO-8601 or an age")
@click.option("--file", "file_name", metavar="TEXT", help="part of the file's name, any case")
@click.option("--error", metavar="TEXT", help="part of the error's message, any case")
@click.option("--priority", type=click.Choice(PRIORITIES))
@click.option("--tenant")
@click.option("--json", "as_json", is_flag=True, help="print it as JSON")
@click.pass_context
def jobs(ctx: click.Context, /, limit: int, cursor: str | None, as_json: bool, **chosen: Any) -> None:
    """List jobs, newest first: those in Redis and those in the archive (docs/archive.md)."""
    try:
        filters = Filters.parse({("status" if k == "status_" else k): v for k, v in chosen.items()})
    except ValueError as exc:
        fail(str(exc))
    page = connect(ctx).search(filters, limit=limit, cursor=cursor)
    if as_json:
        click.echo(json.dumps({"jobs": [j.model_dump(mode="json") for j in page.jobs],
                               "next_cursor": page.next_cursor}, indent=2))
        return
    table = PlainTable("id", "kind", "connection", "status", "priority", "created", "failed step / result")
    for j in page.jobs:
        table.add_row(j.id, j.kind, j.connection, styled_text(j.status),
                      j.priority + (f" {j.tenant}" if j.tenant else ""), j.created_at, outcome_text(j))
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


# ---- processes ---------------------------------------------------------------------------------
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--tokens-file", envvar="FERRY_API_TOKENS_FILE", type=click.Path(dir_okay=False),
              help="full-access bearer tokens, one per line (a mounted secret), instead of the "
                   "configured ones")
@click.pass_context
def api(ctx: click.Context, host: str, port: int, tokens_file: str | None) -> None:
    """Serve the HTTP API (POST /jobs…); bearer tokens from the [api.tokens.<label>] tables (each
    with its scopes), the variable [api] tokens_env names, or --tokens-file (full access). Refuses
    to start (exit 2) with no token at all."""
    with needs_extra("api", "the HTTP API"):
        from producers.web.app import serve  # the api extra: only those who serve it need fastapi
    try:
        serve(host=host, port=port, config_path=ctx.obj.get("config") if ctx.obj else None,
              tokens_file=tokens_file)
    except ConfigError as exc:
        fail(str(exc))


# Uploads wait on remote servers (50-500 ms a call) far longer than they compute, so each worker
# process keeps many of them in flight on threads: WORKER_SLOTS steps at once for ~60 MB. A 3-step
# job still costs ~20 ms of Python, so one process is bound by the GIL at ~50 jobs/s: by default
# `ferry worker` runs one such process per usable CPU under a supervisor (worker/supervisor.py).
# bench/latency.py measures it against one process and plain requests (bench/README.md).
WORKER_POOL = "threads"
WORKER_SLOTS = 32
# Pools that run in the worker's own process tree as today: prefork forks -c processes itself,
# solo is one step at a time by choice.
SINGLE_PROCESS_POOLS = ("prefork", "solo")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
             help=f"""Run workers: any further options go to each `celery worker`.

\b
Default: one worker process per usable CPU (its affinity mask), each --pool {WORKER_POOL}
--concurrency {WORKER_SLOTS}, under this process as their supervisor. Uploads spend their time
waiting on the destination, so threads keep {WORKER_SLOTS} of them in flight per process for
little memory; but each step still costs some ms of Python, and one process is bound by the GIL
(~50 jobs/s), so one process per CPU uses the machine (bench/README.md). -c/--concurrency is per
process; --processes 1 runs a single worker in this process. -P prefork (which forks -c
processes itself) or -P solo also run a single worker here.

\b
The supervisor sends SIGTERM/SIGINT on to every process as a warm shutdown (running steps end)
and exits 0 once all stopped; a process that dies is started again (backoff 1 s doubling to 30 s).
Node names: ferry-<supervisor pid>-<i>@host, or -n NAME with -<i> added.

It serves every configured queue; -Q ferry.atlassian,ferry.awork serves only those. It reads
ferry.toml once, at start (restart it after a change), refuses to start (exit 2) with no
connection, and warns about each connection whose token it cannot read.

--metrics-port N serves Prometheus metrics at 127.0.0.1:N/metrics (every process added up);
--metrics-host H serves them on another address (they have no auth).""")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="worker processes (default: one per usable CPU; 1 with -P prefork/solo)")
@click.pass_context
def worker(ctx: click.Context, processes: int | None) -> None:
    from producers.cli.ops import metrics_args
    from worker.supervisor import usable_cpus

    if ctx.obj and ctx.obj.get("config"):  # the worker reads $FERRY_CONFIG; so do its children
        os.environ["FERRY_CONFIG"] = ctx.obj["config"]
    args = metrics_args(list(ctx.args))  # before the worker (and prometheus-client) is imported
    pool = _pool_option(args)
    if processes is None:
        processes = 1 if pool in SINGLE_PROCESS_POOLS else usable_cpus()
    elif processes > 1 and pool == "prefork":
        fail("--processes: -P prefork starts -c processes of its own; give --processes 1 or another pool")
    config = config_to_serve()
    with needs_extra("worker", "the worker"):
        from worker.celery_app import app
    _warn_missing_tokens(config)
    known = list(app.amqp.queues)
    unknown = [q for q in _queue_options(args) if q not in known]
    if unknown:  # Celery would create it, and wait on a queue nobody publishes to
        fail(f"unknown queue {', '.join(unknown)} (configured: {', '.join(known)})")
    if processes > 1:
        sys.exit(_supervise(processes, args))
    from worker.supervisor import as_child

    as_child()  # started by a supervisor: go when it goes
    app.worker_main(["worker", *worker_args(args)])


def _warn_missing_tokens(config: FerryConfig) -> None:
    """A connection whose token this worker cannot read fails each of its jobs: say so once, at
    start, in the worker's own JSON log (by the supervisor, not again by each of its processes)."""
    from worker.log import get_logger
    from worker.settings import missing_token
    from worker.supervisor import SUPERVISOR_ENV

    if os.environ.get(SUPERVISOR_ENV):
        return
    for conn in config.connections.values():
        problem = missing_token(conn)
        if problem:
            get_logger(connection=conn.name).warning(
                f"{problem}: its jobs will fail until it is set and the worker restarted")


def _supervise(processes: int, args: list[str]) -> int:
    """Run ``processes`` single-process workers as children; serve their metrics from here."""
    from worker import heartbeat, metrics
    from worker.log import get_logger
    from worker.runtime import runtime
    from worker.supervisor import Supervisor, child_name

    name, rest = _hostname_option(args)
    env = dict(os.environ)
    port = env.pop(metrics.PORT_ENV, None)  # one endpoint, here: no child binds the port
    if port:
        try:
            metrics.serve(int(port))
        except OSError as exc:
            fail(f"--metrics-port {port}: {exc}")
    supervisor_pid = os.getpid()

    def argv(index: int) -> list[str]:
        return [sys.executable, "-m", "producers", "worker", "--processes", "1",
                f"--hostname={child_name(index, supervisor_pid, name)}", *rest]

    def forget(pid: int) -> None:  # a dead child's heartbeat: gone now, not in 30 s
        heartbeat.forget(runtime().store, pid)

    return Supervisor(processes, argv, env, get_logger(), on_crash=forget).run()


def worker_args(args: list[str]) -> list[str]:
    """``celery worker`` arguments: the user's, plus Ferry's defaults for what they leave out."""
    given = {a.split("=")[0] for a in args}
    if not given & {"-P", "--pool"} and not any(a.startswith("-P") for a in args):
        args.append(f"--pool={WORKER_POOL}")
    if not given & {"-c", "--concurrency"} and not any(a.startswith("-c") and a[2:].isdigit() for a in args):
        args.append(f"--concurrency={WORKER_SLOTS}")
    if not any(a.startswith(("-l", "--loglevel")) for a in args):
        args.append("--loglevel=INFO")
    if not any(a.startswith(("-n", "--hostname")) for a in args):
        # Celery's default node name is one per host; two workers on a host (one per queue, say)
        # would share it, and on RabbitMQ the second could not declare its control queue.
        args.append(f"--hostname=ferry-{os.getpid()}@%h")
    return args


def _option_value(args: list[str], short: str, long: str) -> tuple[str | None, list[str]]:
    """The value of celery's ``-X V``/``-XV``/``--long V``/``--long=V`` option (the last one
    given), and the arguments without it."""
    value, rest = None, []
    it = iter(args)
    for arg in it:
        if arg in (short, long):
            value = next(it, "")
        elif arg.startswith(long + "="):
            value = arg.split("=", 1)[1]
        elif arg.startswith(short) and not arg.startswith("--"):
            value = arg[len(short):]
        else:
            rest.append(arg)
    return value, rest


def _pool_option(args: list[str]) -> str:
    """The pool ``-P``/``--pool`` names (Ferry's default when none)."""
    return _option_value(args, "-P", "--pool")[0] or WORKER_POOL


def _hostname_option(args: list[str]) -> tuple[str | None, list[str]]:
    """``-n``/``--hostname``'s node name, and the arguments without it."""
    return _option_value(args, "-n", "--hostname")


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
@click.option("--media-upload", type=click.Choice(["multipart", "binary", "multipart-sizeless"]),
              default="multipart", show_default=True, help="open reading: which media upload form stores the bytes")
@click.option("--no-media-read-back", is_flag=True, help="open reading: GET /media/file/{id} answers 403")
@click.option("--no-attachment-media-id", is_flag=True,
              help="open reading: attachment records without mediaId (Data Center shape)")
@click.option("--empty-link-answer", is_flag=True, help="open reading: attachment link answers no body")
@click.option("--lenient-link-size", is_flag=True,
              help="open reading: the link accepts another size; records show the stored size")
@click.option("--artifact-form", type=click.Choice(["multipart", "raw"]), default="multipart", show_default=True,
              help="open reading: the Marketplace artifact form accepted (the other answers 415)")
@click.option("--awork-429", type=click.Choice(["awork", "kong"]), default="awork", show_default=True,
              help="open reading: awork 429 shape (kong: Retry-After and {\"message\"})")
@click.option("--refuse-project-keys", is_flag=True,
              help="open reading: universal_avatar project owners must be ids")
def sandbox(host: str, port: int, data: str, email: str, token: str, bearer: str, jwt_ttl: int,
            seed: bool, media_upload: str, no_attachment_media_id: bool, empty_link_answer: bool,
            refuse_project_keys: bool, **newer_readings: Any) -> None:
    """Run the local emulator of the five destination APIs. Faults (a status N times, a 429 with
    Retry-After, a delay, a cut connection, a lost reply) are injected through its control API,
    POST /_sandbox/faults, as below; open readings: sandbox/README.md."""
    from sandbox.server import open_readings, run

    readings = open_readings(media_upload, no_attachment_media_id, empty_link_answer, refuse_project_keys,
                             **newer_readings)
    run(host=host, port=port, data_dir=data, email=email, token=token, bearer=bearer, seed=seed,
        jwt_ttl=jwt_ttl, readings=readings)


@cli.command()
@click.option("--keep", is_flag=True, help="leave sandbox, worker and Redis running afterwards")
@click.option("--sandbox-url", envvar="FERRY_DEMO_SANDBOX_URL",
              help="use this running sandbox (e.g. http://sandbox:8900 in compose) instead of starting one")
def demo(keep: bool, sandbox_url: str | None) -> None:
    """Start Redis, the sandbox and workers; submit sample jobs of every kind; print the results.
    Exits 0 only if every sample job succeeded. With REDIS_URL set, uses that Redis."""
    from worker.demo import run_demo

    sys.exit(run_demo(keep=keep, sandbox_url=sandbox_url))


# The commands kept in modules of their own, each with its ``register(cli)``: `ferry jira|marketplace|awork …`
# (reads), `ferry replay|purge`, `ferry notify|events`, `ferry cancel|pause|resume|connections|workers|flower`
# (ops), `ferry batch …` (batches), `ferry info|redis stop` (home), `ferry archive …` (archive),
# `ferry [batch] priority` (priority). Imported here, after the commands above.
for _module in ("reads", "replay", "notify", "ops", "batches", "home", "archive", "priority"):
    importlib.import_module(f"producers.cli.{_module}").register(cli)
add_examples(cli)


def main() -> None:
    try:
        cli(obj={})
    except (redis.RedisError, OperationalError) as exc:
        # One line, not a traceback, naming where this Redis was taken from.
        from producers.cli.home import redis_hint

        fail(f"cannot reach Redis: {exc} ({redis_hint()})", code=1)
    except ConfigError as exc:
        # ferry.toml refused, or no redis-server for the embedded Redis, met outside connect()
        fail(str(exc))
