"""The worker's Celery app: ``celery -A worker.celery_app worker`` (or ``ferry worker``).

Settings come from ``producers.queue.celery_settings`` so producers and workers cannot disagree:
JSON only, acks late, reject on worker loss, prefetch 1, no result backend, task events off until
Flower (or ``-E``) turns them on.

The signals below start what runs beside the tasks: the reaper, the heartbeats (the main process
and, under prefork, each pool process) and, with ``$FERRY_METRICS_PORT`` (``ferry worker
--metrics-port``), the Prometheus endpoint; a worker process started by ``ferry worker``'s
supervisor (worker/supervisor.py) tells it when it is ready.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import __version__ as celery_version
from celery.apps.worker import Worker as CeleryWorker
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from producers.config import load_config
from producers.embedded import resolve_redis
from producers.queue import TASK_PREFIX, make_celery
from worker import heartbeat, metrics, supervisor, telemetry
from worker.log import configure_logging, get_logger
from worker.notify import register_notify, start_dispatcher
from worker.recovery import start_reaper
from worker.runtime import runtime
from worker.schedule import start_releaser
from worker.tasks import register_tasks


class JsonLinesWorker(CeleryWorker):  # type: ignore[misc]
    """Celery's worker program with its start-up banner as one JSON log line: Celery prints ~30
    plain-text lines (ASCII art, broker, queues) on stdout, where the log is JSON lines only."""

    def emit_banner(self) -> None:
        pool = self.pool_cls if isinstance(self.pool_cls, str) else self.pool_cls.__module__
        queues = self.app.amqp.queues.consume_from or {}
        get_logger().info("worker starting", hostname=self.hostname, celery=celery_version,
                          broker=self.app.connection().as_uri(),  # without its password
                          pool=pool.rsplit(".", 1)[-1], concurrency=self.concurrency,
                          task_events=bool(self.task_events), queues=sorted(queues))


configure_logging()
_config = load_config()
app = make_celery(resolve_redis(_config.redis_url), _config)
app.Worker = app.subclass_with_self(JsonLinesWorker)  # what `celery worker` and `ferry worker` build
register_tasks(app)
register_notify(app)


@setup_logging.connect  # type: ignore[untyped-decorator]
def _json_lines(loglevel: int | None = None, logfile: str | None = None, **_: object) -> None:
    """Celery's own records go through our JSON handler too (a receiver here means Celery adds no
    handler of its own). The pool's children are forked after this and inherit it."""
    configure_logging(loglevel or logging.INFO, logfile)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _recover_orphans(sender: Any = None, **_: object) -> None:
    start_reaper(app, runtime().store)
    start_dispatcher(app, runtime().store)  # webhook deliveries that are due
    start_releaser(app, runtime().store)  # scheduled jobs whose not_before has come
    controller = getattr(sender, "controller", None)
    pool = getattr(getattr(controller, "pool_cls", None), "__module__", "").rsplit(".", 1)[-1]
    heartbeat.start(runtime().store, name=getattr(sender, "hostname", None), parent=None,
                    pool=pool or "unknown", slots=getattr(controller, "concurrency", None),
                    queues=sorted(q.name for q in app.amqp.queues.consume_from.values())
                    if app.amqp.queues.consume_from else [],
                    supervisor=int(os.environ.get(supervisor.SUPERVISOR_ENV) or 0) or None,
                    config=_config_in_use())
    port = os.environ.get(metrics.PORT_ENV)
    if port:
        metrics.serve(int(port))
    supervisor.notify_ready()  # under `ferry worker`'s supervisor: this process is ready


def _config_in_use() -> str | None:
    """The ferry.toml this worker read, as an absolute path (``ferry workers`` shows it: a worker
    started in another folder serves other connections, or another Redis)."""
    path = runtime().config.path
    return str(Path(path).resolve()) if path else None


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _child_heartbeat(**_: object) -> None:
    """A prefork pool process: beats for itself, so the steps it runs show under its worker."""
    heartbeat.start(runtime().store, parent=os.getppid(), pool="prefork-child")


@worker_shutdown.connect  # type: ignore[untyped-decorator]
@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _last_beat(**_: object) -> None:
    beat = heartbeat.current()
    if beat is not None:
        beat.stop()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _flush_spans(**_: object) -> None:
    telemetry.shutdown()


@task_prerun.connect  # type: ignore[untyped-decorator]
def _step_began(task_id: str = "", task: Any = None, args: Any = None, **_: object) -> None:
    beat = heartbeat.current()
    if beat is not None and task is not None and task.name.startswith(TASK_PREFIX) and args:
        beat.step_started(task_id, str(args[0]), task.name.removeprefix(TASK_PREFIX))


@task_postrun.connect  # type: ignore[untyped-decorator]
def _step_ended(task_id: str = "", state: str | None = None, **_: object) -> None:
    metrics.end_step(state)
    beat = heartbeat.current()
    if beat is not None:
        beat.step_ended(task_id)
