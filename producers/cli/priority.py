"""``ferry priority ID high|normal|low`` and ``ferry batch priority ID high|normal|low``: change
what runs next while a job (or a batch's jobs) waits. Exit 0 changed, 1 the job no longer waits
(running or ended) or is unknown."""

from __future__ import annotations

import click

from producers.cli.console import connect, fail, out
from producers.cli.replay import who
from producers.errors import BatchNotFound, JobNotFound
from producers.priority import PRIORITIES


def register(cli: click.Group) -> None:
    cli.add_command(priority)
    batch = cli.commands.get("batch")
    if isinstance(batch, click.Group):
        batch.add_command(batch_priority)


@click.command()
@click.argument("job_id")
@click.argument("level", type=click.Choice(PRIORITIES))
@click.pass_context
def priority(ctx: click.Context, job_id: str, level: str) -> None:
    """Give a waiting (queued or scheduled) job another priority; a running or ended job keeps
    its own (exit 1)."""
    ferry = connect(ctx)
    try:
        changed = ferry.set_priority(job_id, level, by=who())
    except JobNotFound as exc:
        fail(str(exc), code=1)
    if not changed:
        fail(f"job {job_id} no longer waits ({ferry.status(job_id).status.value}); its priority stays", code=1)
    out.print(f"{job_id}: {level}")


@click.command("priority")
@click.argument("batch_id")
@click.argument("level", type=click.Choice(PRIORITIES))
@click.pass_context
def batch_priority(ctx: click.Context, batch_id: str, level: str) -> None:
    """Give every waiting job of a batch another priority (the ones running or ended keep theirs)."""
    try:
        changed = connect(ctx).set_batch_priority(batch_id, level, by=who())
    except BatchNotFound as exc:
        fail(str(exc), code=1)
    out.print(f"{changed} waiting job(s) of batch {batch_id}: {level}")
