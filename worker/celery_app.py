"""The worker's Celery app: ``celery -A worker.celery_app worker`` (or ``ferry worker``).

Settings come from ``producers.queue.celery_settings`` so producers and workers cannot disagree:
JSON only, acks late, reject on worker loss, prefetch 1, no result backend.
"""

from __future__ import annotations

import logging

from celery.signals import setup_logging, worker_ready

from producers.config import load_config
from producers.embedded import resolve_redis
from producers.queue import make_celery
from worker.log import configure_logging
from worker.notify import register_notify, start_dispatcher
from worker.recovery import start_reaper
from worker.runtime import runtime
from worker.tasks import register_tasks

configure_logging()
_config = load_config()
app = make_celery(resolve_redis(_config.redis_url), _config)
register_tasks(app)
register_notify(app)


@setup_logging.connect  # type: ignore[untyped-decorator]
def _json_lines(loglevel: int | None = None, logfile: str | None = None, **_: object) -> None:
    """Celery's own records go through our JSON handler too (a receiver here means Celery adds no
    handler of its own). The pool's children are forked after this and inherit it."""
    configure_logging(loglevel or logging.INFO, logfile)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _recover_orphans(**_: object) -> None:
    start_reaper(app, runtime().store)
    start_dispatcher(app, runtime().store)  # webhook deliveries that are due
