"""``ferry replay`` and ``ferry purge``: what an operator does with failed jobs.

``ferry replay JOB_ID`` answers like ``ferry submit --wait --json`` (exit 0 succeeded, 1 failed,
2 nothing was enqueued: refused or unknown job). ``ferry replay --failed [filters]`` replays many,
throttled; ``--dry-run`` only counts. ``ferry purge [filters]`` deletes ended jobs (failed ones
unless ``--status`` says otherwise) after showing how many and asking, or with ``--yes``.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Callable
from typing import Any

import click

from producers import replay as ops
from producers.audit import audit
from producers.cli.console import connect, err, fail, finish, not_before_from, out
from producers.errors import JobNotFound, ReplayRefused
from producers.kinds import KINDS, all_step_names
from producers.records import JobStatus, still_to_come
from producers.store import Filters


def register(cli: click.Group) -> None:
    cli.add_command(replay)
    cli.add_command(purge)


def who() -> str:
    """Who/what triggered a replay, for the run history: ``cli (user@host)``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli ({user}@{socket.gethostname()})"


def filter_options(default_status: str | None) -> Callable[[Any], Any]:
    """The filter options ``replay --failed`` and ``purge`` share, from the kind declarations."""
    options = [
        click.option("--status", "status_", default=default_status, show_default=True,
                     type=click.Choice([s.value for s in JobStatus]), help="job status"),
        click.option("--kind", type=click.Choice(list(KINDS)), help="job kind"),
        click.option("--connection", help="connection name"),
        click.option("--step", "error_step", type=click.Choice(sorted(all_step_names())),
                     help="the step the job failed at"),
        click.option("--http-status", type=int, help="the HTTP status of the failure"),
        click.option("--since", help="created at or after: ISO-8601 or an age (90m, 2h, 7d)"),
        click.option("--until", help="created before: ISO-8601 or an age"),
        click.option("--error", "error_text", metavar="TEXT", help="part of the error's message, any case"),
    ]

    def apply(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def filters_from(kw: dict[str, Any]) -> Filters:
    try:
        return Filters.parse({"status": kw.get("status_"), "kind": kw.get("kind"),
                                  "connection": kw.get("connection"),
                                  "error_step": kw.get("error_step"),
                                  "http_status": kw.get("http_status"), "since": kw.get("since"),
                                  "until": kw.get("until"), "error": kw.get("error_text")})
    except ValueError as exc:
        fail(str(exc))


@click.command()
@click.argument("job_id", required=False)
@click.option("--restart", is_flag=True, help="run every step again, not just from the failed one")
@click.option("--force", is_flag=True,
              help="replay even a job that succeeded, or re-publish a queued one whose message was lost")
@click.option("--at", "at", metavar="TIME", help="one job: schedule the run for this ISO 8601 time")
@click.option("--in", "in_", metavar="DURATION", help="one job: schedule the run 90s, 10m, 2h, 1d from now")
@click.option("--wait", is_flag=True, help="one job: block until it ends; exit 1 if it failed")
@click.option("--timeout", type=float, default=None, help="with --wait: give up after N s")
@click.option("--json", "as_json", is_flag=True, help="print the record (or the summary) as JSON")
@click.option("--failed", is_flag=True, help="replay every job matching the filters (bulk)")
@filter_options(default_status="failed")
@click.option("--dry-run", is_flag=True, help="bulk: only count the matching jobs")
@click.option("--rate", type=float, default=ops.DEFAULT_RATE, show_default=True,
              help="bulk: jobs replayed per second (spares the destination)")
@click.option("--limit", type=int, default=None, help="bulk: at most N jobs (newest first)")
@click.pass_context
def replay(ctx: click.Context, /, job_id: str | None, restart: bool, force: bool, wait: bool,
           timeout: float | None, as_json: bool, failed: bool, dry_run: bool, rate: float,
           limit: int | None, **kw: Any) -> None:
    """Replay JOB_ID from its failed step, reusing what earlier steps produced (or, with
    --failed, every job matching the filters). The job id and its history stay."""
    if bool(job_id) == failed:
        fail("give a JOB_ID, or --failed with filters for a bulk replay")
    ferry = connect(ctx)
    if job_id:
        try:
            record = ops.replay(ferry, job_id, restart=restart, force=force, trigger=who(),
                                not_before=still_to_come(not_before_from(kw.pop("at"), kw.pop("in_"))))
        except JobNotFound:
            fail(f"no job {job_id}")
        except ReplayRefused as exc:
            fail(str(exc))
        audit("replay", who(), target=job_id, jobs=1, restart=restart, force=force)
        finish(ferry, record, wait=wait, timeout=timeout, as_json=as_json)
        return
    if rate <= 0:
        fail("--rate must be above 0")
    filters = filters_from(kw)
    ids = ops.select(ferry, filters, limit=limit)
    if dry_run:
        _say(as_json, {"dry_run": True, "matched": len(ids), "filters": filters.as_query()},
             f"{len(ids)} job(s) match ({filters}); nothing replayed (dry run)")
        return
    if not as_json:
        err.print(f"replaying {len(ids)} job(s) ({filters}) at {rate:g}/s …")
    outcome = ops.replay_many(ferry, ids, restart=restart, force=force, trigger=who() + " bulk",
                              rate=rate)
    audit("replay", who(), target=filters.as_query(), jobs=outcome.replayed, matched=outcome.matched)
    _say(as_json, outcome.as_json(),
         f"replayed {outcome.replayed} of {outcome.matched} in {outcome.seconds:.1f}s"
         + (f"; refused {len(outcome.refused)}" if outcome.refused else ""))
    if not as_json:
        for refused_id, why in list(outcome.refused.items())[:20]:
            err.print(f"  {refused_id}: {why}")


@click.command()
@filter_options(default_status="failed")
@click.option("--dry-run", is_flag=True, help="only count the matching jobs")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.pass_context
def purge(ctx: click.Context, /, dry_run: bool, yes: bool, as_json: bool, **kw: Any) -> None:
    """Delete the jobs matching the filters (failed ones by default). Queued and running jobs
    are never deleted."""
    ferry = connect(ctx)
    filters = filters_from(kw)
    ids = ops.select(ferry, filters)
    if dry_run or not ids:
        _say(as_json, {"dry_run": True, "matched": len(ids), "filters": filters.as_query()},
             f"{len(ids)} job(s) match ({filters}); nothing deleted")
        return
    if not yes and not click.confirm(f"delete {len(ids)} job(s) ({filters})?", err=True):
        fail("nothing deleted", code=1)
    outcome = ops.purge(ferry, filters, ids=ids)
    audit("purge", who(), target=filters.as_query(), jobs=outcome.deleted, matched=outcome.matched)
    _say(as_json, outcome.as_json(), f"deleted {outcome.deleted} of {outcome.matched}"
         + (f"; {outcome.skipped} still active, kept" if outcome.skipped else ""))


def _say(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        out.print(text)
