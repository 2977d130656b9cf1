"""The Celery side of a producer: the app settings shared with the worker, and the chain of a job.

A message carries the job id and nothing else; the step is the task's name. Inputs and outputs
live in the job store, so no payload and no secret ever travels through the broker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Signature, chain
from celery.utils import uuid
from kombu.common import maybe_declare
from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps

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


# ---- many jobs at once ---------------------------------------------------------------------------
# `enqueue` publishes through `chain.apply_async`, one Redis round trip and ~1 ms of Celery per job,
# and Celery's chain drops any `producer=` it is given, so kombu's publish batch cannot group those.
# A bulk submission instead builds each job's first message with Celery's own task-message builder
# (`app.amqp.as_task_v2`, what `send_task` uses) carrying the rest of the chain exactly as `chain`
# does, and lets kombu's Redis channel turn it into its final Redis commands (LPUSH of the JSON
# envelope onto the queue's list, PEXPIRE for expiring queues). The caller runs those commands in
# its own pipeline, in the same MULTI as the job records. tests/unit/test_submit_many.py checks that
# the result is the message `enqueue` publishes, field by field.
RedisCommand = tuple[str, tuple[Any, ...]]


class _Collected:
    """kombu's Redis publish-batch protocol (``Channel._put(..., _publish_batch=...)``): the
    transport hands over the Redis commands of one message instead of running them."""

    def __init__(self) -> None:
        self.commands: list[RedisCommand] = []

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))


class ChainMessages:
    """The Redis commands that publish a job's chain, as ``enqueue`` would, for another pipeline."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._connection: Any = None
        self._routes: dict[str, tuple[str, str, int | None, int]] = {}
        self._templates: dict[str, Signature] = {}

    @property
    def channel(self) -> Any:
        if self._connection is None:
            self._connection = self.app.connection_for_write()
            # Declared once, as the first publish of a producer would (the binding the worker reads).
            maybe_declare(self.app.amqp.default_queue, self._connection.default_channel)  # type: ignore[no-untyped-call]
        return self._connection.default_channel

    def commands(self, job_id: str, kind: Kind, from_step: str | None = None) -> list[RedisCommand]:
        names = kind.step_names
        names = names[names.index(from_step):] if from_step else names
        task_id, name = uuid(), task_name(names[0])
        headers, properties, body, _ = self.app.amqp.as_task_v2(
            task_id, name, (job_id,), {}, chain=self._rest_of_chain(job_id, names), root_id=task_id,
            reply_to=self.app.thread_oid, ignore_result=None)
        exchange, routing_key, priority, delivery_mode = self._route(name)
        content_type, content_encoding, data = dumps(  # type: ignore[no-untyped-call]
            body, serializer=self.app.conf.task_serializer)
        channel = self.channel
        message = channel.prepare_message(data, priority, content_type, content_encoding, headers,
                                          {**properties, "delivery_mode": delivery_mode})
        collected = _Collected()
        channel.basic_publish(message, exchange, routing_key, _publish_batch=collected)
        return collected.commands

    def _rest_of_chain(self, job_id: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """The steps after the first, last first, as ``chain`` puts them in the first message:
        frozen signatures (a task id and reply_to each). Celery builds and freezes one template
        per step; each job gets a copy with its own id and task id (a signature is a dict)."""
        rest = []
        for step in reversed(names[1:]):
            template = self._templates.get(step)
            if template is None:
                template = self.app.signature(task_name(step), args=("",), immutable=True)
                template.freeze()
                self._templates[step] = template
            rest.append({**template, "args": [job_id], "options": {**template["options"], "task_id": uuid()}})
        return rest

    def _route(self, name: str) -> tuple[str, str, int | None, int]:
        """Exchange, routing key, priority and delivery mode of a task, as ``send_task_message``
        derives them from Celery's router (task_routes, else the default queue)."""
        if name not in self._routes:
            options = self.app.amqp.router.route({}, name, (), {})
            queue = options["queue"]
            exchange = options.get("exchange")
            routing_key = options.get("routing_key")
            if (not exchange or not routing_key) and queue.exchange.type == "direct":
                exchange, routing_key = "", queue.name  # Celery's anon-exchange conversion
            else:
                exchange = exchange or queue.exchange.name
                routing_key = routing_key or queue.routing_key
            mode = queue.exchange.delivery_mode or self.app.conf.task_default_delivery_mode
            delivery_mode = maybe_delivery_mode(mode)  # type: ignore[no-untyped-call]
            self._routes[name] = (getattr(exchange, "name", exchange), routing_key,
                                  options.get("priority"), delivery_mode)
        return self._routes[name]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
            self._connection = None
