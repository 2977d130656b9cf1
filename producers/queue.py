"""The Celery side of a producer: the app settings shared with the worker, the queues, and the
chain of a job.

A message carries the job id and nothing else; the step is the task's name. Inputs and outputs
live in the job store, so no payload and no secret ever travels through the broker.

Queues per destination: a job's steps go to its connection's queue (``ferry.<service>``, or the
``queue`` its table names), so a worker can serve some destinations only and a slow or paused
one cannot hold up the others. ``JobRouter`` makes that decision at every publish — a producer's
submit or replay, the reaper, a worker passing the chain on or retrying a step — from the job's
connection in the store, so no message carries it.

Broker: the job store's Redis, unless ``broker_url`` (ferry.toml) or ``$FERRY_BROKER_URL`` names
another. On RabbitMQ (``amqp://``) the queues are quorum queues (replicated, and they never hand
a message to a second consumer while the first holds it), publishes wait for the broker's
confirm, and a delayed retry waits in the broker (native delayed delivery) instead of in a
worker's memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery, Task, chain
from kombu.entity import Exchange, Queue

from producers import keys
from producers.config import ConnectionConfig, FerryConfig
from producers.embedded import RedisLocation
from producers.kinds import Kind

TASK_PREFIX = "ferry.step."
# Where a step goes when the store no longer knows its job (purged meanwhile): default workers
# consume it and drop the message. Also the queue of messages published before queues per
# destination existed.
DEFAULT_QUEUE = "ferry"
EXCHANGE = "ferry"
# Longer than the longest upload we expect: a message whose worker is still uploading must not be
# handed to a second worker. Crash recovery does not wait for it: see worker.tasks (leases).
VISIBILITY_TIMEOUT = 12 * 3600
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def queue_of(conn: ConnectionConfig) -> str:
    return conn.queue or f"ferry.{conn.service}"


def queue_names(config: FerryConfig) -> list[str]:
    """Every queue this configuration publishes to: the default one, then one per destination."""
    return [DEFAULT_QUEUE, *sorted({queue_of(c) for c in config.connections.values()} - {DEFAULT_QUEUE})]


def broker_url(config: FerryConfig, location: RedisLocation) -> str:
    return os.environ.get("FERRY_BROKER_URL") or config.broker_url or location.broker_url


def is_rabbitmq(url: str) -> bool:
    return url.startswith(AMQP_SCHEMES)


def exchange_type(rabbitmq: bool) -> str:
    # RabbitMQ's native delayed delivery cannot route through a direct exchange. On Redis a
    # direct exchange publishes straight to the queue's list, needing no binding key in Redis
    # (a topic binding is a key that a flushed or restarted-empty Redis would lose, silently
    # dropping every message published after that).
    return "topic" if rabbitmq else "direct"


def declared_queues(names: Iterable[str], *, rabbitmq: bool) -> list[Queue]:
    exchange = Exchange(EXCHANGE, type=exchange_type(rabbitmq))  # type: ignore[no-untyped-call]
    arguments = {"x-queue-type": "quorum"} if rabbitmq else None
    return [Queue(name, exchange, routing_key=name, queue_arguments=arguments)  # type: ignore[no-untyped-call]
            for name in names]


class JobRouter:
    """A Celery router: each step of a job goes to the queue of the job's connection."""

    def __init__(self, config: FerryConfig, client: redis.Redis) -> None:
        self.config = config
        self.redis = client  # redis-py opens new connections in a forked child

    def queue_for(self, job_id: str) -> str:
        meta = self.redis.hget(keys.job(job_id), "meta")
        name = json.loads(meta).get("connection") if meta else None
        conn = self.config.connections.get(name) if isinstance(name, str) else None
        return queue_of(conn) if conn is not None else DEFAULT_QUEUE

    def __call__(self, name: str, args: Any, kwargs: Any, options: Any, task: Any = None,
                 **_: Any) -> dict[str, str] | None:
        if not name.startswith(TASK_PREFIX) or not args:
            return None
        return {"queue": self.queue_for(str(args[0]))}


class RoutedTask(Task):  # type: ignore[misc]
    """A step retried goes where the router sends its job, not back along the route its last
    delivery took (after a broker-delayed retry that is the delay exchange's routing key)."""

    def signature_from_request(self, request: Any = None, args: Any = None, kwargs: Any = None,
                               queue: str | None = None, **extra: Any) -> Any:
        request = self.request if request is None else request
        job_args = request.args if args is None else args
        routers = [r for r in self.app.conf.task_routes or () if isinstance(r, JobRouter)]
        if queue is None and job_args and routers:
            queue = routers[0].queue_for(str(job_args[0]))
        return super().signature_from_request(request, args, kwargs, queue=queue, **extra)


def celery_settings(location: RedisLocation, config: FerryConfig) -> dict[str, Any]:
    url = broker_url(config, location)
    rabbitmq = is_rabbitmq(url)
    settings: dict[str, Any] = {
        "broker_url": url,
        "result_backend": None,  # the job store is the only truth; no AsyncResult.get() hangs
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_queues": declared_queues(queue_names(config), rabbitmq=rabbitmq),
        "task_default_queue": DEFAULT_QUEUE,
        "task_default_exchange": EXCHANGE,
        "task_default_exchange_type": exchange_type(rabbitmq),
        "task_default_routing_key": DEFAULT_QUEUE,
        "task_routes": (JobRouter(config, redis.Redis.from_url(location.url, decode_responses=True)),),
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # structlog writes JSON lines to stderr itself; routing them through Celery's stdout
        # proxy and logging handlers again costs CPU on every step and mangles the lines.
        "worker_redirect_stdouts": False,
        "enable_utc": True,
    }
    settings.update(_rabbitmq_settings() if rabbitmq else _redis_settings())
    return settings


def _redis_settings() -> dict[str, Any]:
    return {"broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT}}


def _rabbitmq_settings() -> dict[str, Any]:
    # An unacknowledged message returns to its queue only when its consumer's connection closes:
    # no visibility timeout re-delivers a long upload to a second worker. Global QoS is off with
    # quorum queues (Celery detects them), so prefetch 1 holds per consumer.
    return {
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        "broker_native_delayed_delivery_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        # publish() returns once the broker has the message, so a submitted job is never lost
        # in a connection that dies right after.
        "broker_transport_options": {"confirm_publish": True},
    }


def make_celery(location: RedisLocation, config: FerryConfig, name: str = "ferry") -> Celery:
    app = Celery(name, task_cls=RoutedTask)
    app.conf.update(celery_settings(location, config))
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
