"""The Celery side of a producer: the app settings shared with the worker, and the chain of a job.

A message carries the job id and nothing else; the step is the task's name. Inputs and outputs
live in the job store, so no payload and no secret ever travels through the broker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain

from producers.embedded import RedisLocation
from producers.kinds import Kind

QUEUE = "ferry"
TASK_PREFIX = "ferry.step."
# Longer than the longest upload we expect: a message whose worker is still uploading must not be
# handed to a second worker. Crash recovery does not wait for it: see worker.tasks (leases).
VISIBILITY_TIMEOUT = 12 * 3600


def celery_settings(location: RedisLocation) -> dict[str, Any]:
    return {
        "broker_url": location.broker_url,
        "result_backend": None,  # the job store is the only truth; no AsyncResult.get() hangs
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": QUEUE,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # worker.log sends structlog's events and every stdlib record (Celery's own included)
        # through one JSON-lines handler on stderr; Celery's stdout proxy would only add a hop.
        "worker_redirect_stdouts": False,
        "enable_utc": True,
    }


def make_celery(location: RedisLocation, name: str = "ferry") -> Celery:
    app = Celery(name)
    app.conf.update(celery_settings(location))
    return app


def task_name(step: str) -> str:
    return TASK_PREFIX + step


def enqueue(app: Celery, job_id: str, kind: Kind, from_step: str | None = None) -> None:
    """Publish the chain of ``kind``'s steps for ``job_id``, starting at ``from_step``."""
    names = kind.step_names
    start = names.index(from_step) if from_step else 0
    signatures = [app.signature(task_name(n), args=(job_id,), immutable=True) for n in names[start:]]
    chain(*signatures).apply_async(
        retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5}
    )
