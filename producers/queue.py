"""The Celery side of a producer and a worker: the app settings they share, the queues, and a
job's step messages.

A message carries the job id and nothing else; the step is the task's name. Inputs and outputs
live in the job store, so no payload and no secret ever travels through the broker. A job's steps
are a chain of Celery tasks, one per step, but no message carries the rest of the chain: a
producer publishes the first step, and the worker that ends a step publishes the next from the
kind's declaration (``StepPublisher``), in the same store call that records the step's end.

Queues per destination: a job's steps go to its connection's queue (``ferry.<service>``, or the
``queue`` its table names), so a worker can serve some destinations only and a slow or paused
one cannot hold up the others. A publisher that knows the job's connection (a worker, the reaper,
a bulk submission) names the queue; else ``JobRouter`` reads the job's connection in the store.

Broker: the job store's Redis, unless ``broker_url`` (ferry.toml) or ``$FERRY_BROKER_URL`` names
another. On RabbitMQ (``amqp://``) the queues are quorum queues (replicated, and they never hand
a message to a second consumer while the first holds it), publishes wait for the broker's
confirm, and a delayed retry waits in the broker (native delayed delivery) instead of in a
worker's memory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery, Task
from celery.utils import uuid
from kombu.common import maybe_declare
from kombu.entity import Exchange, Queue, maybe_delivery_mode
from kombu.serialization import dumps

from producers.config import ConnectionConfig, FerryConfig
from producers.embedded import RedisLocation
from producers.kinds import Kind
from producers.store import JobStore, OutboxEntry, Outgoing, RedisCommand

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

    def __init__(self, config: FerryConfig, store: JobStore) -> None:
        self.config = config
        self.store = store  # redis-py opens new connections in a forked child

    def queue_for(self, job_id: str) -> str:
        return queue_for_connection(self.config, self.store.connection_of(job_id))

    def __call__(self, name: str, args: Any, kwargs: Any, options: Any, task: Any = None,
                 **_: Any) -> dict[str, str] | None:
        if not name.startswith(TASK_PREFIX) or not args or (options or {}).get("queue"):
            return None  # a publisher that knows the job's queue said it: no read
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
        "task_routes": (JobRouter(config, JobStore(redis.Redis.from_url(location.url, decode_responses=True))),),
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # structlog writes JSON lines to stderr itself; routing them through Celery's stdout
        # proxy and logging handlers again costs CPU on every step and mangles the lines.
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        # Task events off unless someone watches: each costs the worker's main process a Redis
        # PUBLISH and its JSON (bench.profile: ~40 % of its CPU, ~8 commands per job). Flower
        # turns them on itself while it runs (its ``enable_events`` option, on by default, sends
        # the ``enable_events`` control command every few seconds), and ``ferry worker -E``
        # keeps them on. A step that failed its job ends its task as a failure
        # (worker.controls.StepFailed), so Flower shows FAILURE, not STARTED.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
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


PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5}


def queue_for_connection(config: FerryConfig, name: str | None) -> str:
    """The queue of a job on connection ``name`` (``DEFAULT_QUEUE`` for a connection the
    configuration no longer has: a default worker takes the message and drops it)."""
    conn = config.connections.get(name) if name is not None else None
    return queue_of(conn) if conn is not None else DEFAULT_QUEUE


def broker_is_store(config: FerryConfig, location: RedisLocation) -> bool:
    """Whether the broker is the job store's own Redis: a step message can then be written by
    the same Redis call as the record that leads to it."""
    return broker_url(config, location) == location.broker_url


def publish_step(app: Celery, job_id: str, step: str, *, queue: str | None = None,
                 countdown: float | None = None, retries: int = 0) -> None:
    """Publish one step's message (``queue`` None: ``JobRouter`` reads the job's connection).
    The same message ``StepMessages`` builds for a pipeline or a store transition."""
    task_id = uuid()
    # ignore_result stated, not left to whether this process happens to have the step tasks
    # registered (a worker has; a producer has not): the message is the same either way. The args
    # are a list, as JSON reads them back, so every path writes the same ``argsrepr`` (Flower).
    app.send_task(task_name(step), args=[job_id], task_id=task_id, root_id=task_id, queue=queue,
                  countdown=countdown, retries=retries, ignore_result=True, retry=True,
                  retry_policy=PUBLISH_RETRY)


def enqueue(app: Celery, job_id: str, kind: Kind, from_step: str | None = None,
            queue: str | None = None) -> None:
    """Publish the message of ``kind``'s first step (or ``from_step``) for ``job_id``. Each
    later step is published by the worker as the step before it ends (``StepPublisher``), from
    the kind's declaration: no message carries the rest of the chain."""
    publish_step(app, job_id, from_step or kind.step_names[0], queue=queue)


# ---- messages written by other Redis calls ---------------------------------------------------
# `publish_step` costs a Redis round trip and ~1 ms of Celery per message. A bulk submission and
# a worker ending a step instead build the message with Celery's own task-message builder
# (`app.amqp.as_task_v2`, what `send_task` uses) and let kombu's Redis channel turn it into its
# final Redis commands (LPUSH of the JSON envelope onto the queue's list, PEXPIRE for expiring
# queues). The caller runs those commands in its own pipeline or Lua script: the same MULTI as a
# new job's record, the same script as the step's end. tests/unit/test_submit_many.py checks the
# result is the message `enqueue` publishes, field by field. Only for a Redis broker that is the
# job store's own Redis (``broker_is_store``); elsewhere the message goes through an outbox.
class _Collected:
    """kombu's Redis publish-batch protocol (``Channel._put(..., _publish_batch=...)``): the
    transport hands over the Redis commands of one message instead of running them."""

    def __init__(self) -> None:
        self.commands: list[RedisCommand] = []

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))


# A uuid4's variant nibble (8, 9, a or b) from any hex digit, as ``uuid.uuid4()`` sets it.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


class _Template:
    """One step's message to one queue with its ids left out, built once per (step, queue) by
    Celery's builder and kombu's channel and then slimmed; each message is the template with a
    new task id, delivery tag and job id put in.

    Slimmed to what a worker reads, a third of the bytes a backlog holds: the headers Celery's
    worker requires (``task``, ``id``) plus ``argsrepr`` (Flower and the "received" log line show
    the job id); the rest it reads with defaults (no eta, expiry, group, parent, time limit or
    stamps; 0 retries; ``ignore_result`` from the task). The body is plain JSON instead of
    base64 (kombu decodes a body only when ``body_encoding`` names a codec; without a
    ``content-encoding`` it reads UTF-8, the JSON serializer's) with an empty embed
    (no callbacks, errbacks, chain or chord: Celery reads each with ``.get``). Properties: the
    ``delivery_info`` kombu's Redis transport needs to restore an unacked message, and the
    ``delivery_tag``. Messages with an eta or retries (a step retried) keep Celery's full form."""

    TASK, TAG, JOB = "@ferry-task-id@", "@ferry-delivery-tag@", "@ferry-job-id@"

    def __init__(self, commands: list[RedisCommand]) -> None:
        [(command, (self.list, payload))] = commands  # kombu's Redis transport: one LPUSH
        if command != "lpush":
            raise ValueError(f"unexpected publish command {command}")
        full = json.loads(payload)
        headers, properties = full["headers"], full["properties"]
        args, kwargs, _ = json.loads(base64.b64decode(full["body"]))
        slim = {"body": json.dumps([args, kwargs, {}], separators=(",", ":")), "content-type": full["content-type"],
                "headers": {name: headers[name] for name in ("task", "id", "argsrepr")},
                "properties": {"delivery_info": properties["delivery_info"], "delivery_tag": self.TAG}}
        # The pieces between the placeholders, and which placeholder follows each.
        self.parts = re.split("(" + "|".join(map(re.escape, (self.TASK, self.TAG, self.JOB))) + ")",
                              json.dumps(slim, separators=(",", ":")))

    def payload(self, job_id: str) -> str:
        # kombu's tag is a uuid4 too; any unique string serves (the key of the unacked entry).
        # One read of the OS's random source for both (a read each cost more than the rest).
        random = os.urandom(32).hex()
        task = f"{random[:8]}-{random[8:12]}-4{random[13:16]}-{_VARIANT[random[16]]}{random[17:20]}-{random[20:32]}"
        values = {self.TASK: task, self.TAG: random[32:], self.JOB: job_id}
        parts = self.parts
        return parts[0] + "".join(values[parts[i]] + parts[i + 1] for i in range(1, len(parts), 2))


class StepMessages:
    """The Redis commands that publish one step's message, as ``publish_step`` would."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._connection: Any = None
        self._routes: dict[str, tuple[str, str, int]] = {}
        self._templates: dict[tuple[str, str], _Template] = {}

    def first(self, job_id: str, kind: Kind, queue: str) -> tuple[str, str]:
        """A new job's first message: (the queue's list, the message), from a template per step
        and queue (``_Template``): a bulk submission builds thousands of these."""
        template = self._template(kind.step_names[0], queue)
        return template.list, template.payload(job_id)

    def _template(self, step: str, queue: str) -> _Template:
        template = self._templates.get((step, queue))
        if template is None:
            template = _Template(self._build(_Template.JOB, step, queue, task_id=_Template.TASK))
            self._templates[(step, queue)] = template
        return template

    @property
    def channel(self) -> Any:
        if self._connection is None:
            self._connection = self.app.connection_for_write()
            # Declared once, as the first publish of a producer would (the binding the worker reads).
            maybe_declare(self.app.amqp.default_queue, self._connection.default_channel)  # type: ignore[no-untyped-call]
        return self._connection.default_channel

    def commands(self, job_id: str, kind: Kind, queue: str, from_step: str | None = None) -> list[RedisCommand]:
        """The first message of a job (``enqueue``'s). ``queue``: the job's connection's queue
        (``queue_of``), which ``JobRouter`` would pick from the record (not stored yet)."""
        return self.step(job_id, from_step or kind.step_names[0], queue)

    def step(self, job_id: str, step: str, queue: str, countdown: float | None = None,
             retries: int = 0) -> list[RedisCommand]:
        if countdown is None and not retries:
            template = self._template(step, queue)
            return [("lpush", (template.list, template.payload(job_id)))]
        return self._build(job_id, step, queue, countdown, retries)

    def _build(self, job_id: str, step: str, queue: str, countdown: float | None = None,
               retries: int = 0, task_id: str | None = None) -> list[RedisCommand]:
        task_id = task_id or uuid()
        headers, properties, body, _ = self.app.amqp.as_task_v2(
            task_id, task_name(step), [job_id], {}, countdown=countdown, retries=retries, root_id=task_id,
            reply_to=self.app.thread_oid, ignore_result=True)
        exchange, routing_key, delivery_mode = self._route(queue)
        content_type, content_encoding, data = dumps(  # type: ignore[no-untyped-call]
            body, serializer=self.app.conf.task_serializer)
        channel = self.channel
        message = channel.prepare_message(data, None, content_type, content_encoding, headers,
                                          {**properties, "delivery_mode": delivery_mode})
        collected = _Collected()
        channel.basic_publish(message, exchange, routing_key, _publish_batch=collected)
        return collected.commands

    def _route(self, queue_name: str) -> tuple[str, str, int]:
        """Exchange, routing key and delivery mode of a queue, as ``send_task_message`` derives
        them: a direct exchange becomes the anonymous one (the message goes straight to the list)."""
        if queue_name not in self._routes:
            queue = self.app.amqp.queues[queue_name]
            if queue.exchange.type == "direct":
                exchange, routing_key = "", queue.name  # Celery's anon-exchange conversion
            else:
                exchange, routing_key = queue.exchange.name, queue.routing_key
            mode = queue.exchange.delivery_mode or self.app.conf.task_default_delivery_mode
            self._routes[queue_name] = (exchange, routing_key,
                                        maybe_delivery_mode(mode))  # type: ignore[no-untyped-call]
        return self._routes[queue_name]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
            self._connection = None


ChainMessages = StepMessages  # the name Ferry.submit_many knows it by


class StepPublisher:
    """A worker's step messages (the next step, a delayed retry), routed by the job's
    connection, which the worker has already read: no ``JobRouter`` read per publish.

    ``outgoing`` says what the store transition writes along with the record: on the store's
    own Redis the message itself, so the record and the message exist together or not at all;
    on another broker an outbox entry, which ``deliver`` publishes and then deletes (if the
    worker or the broker dies in between, the reaper publishes it: worker.recovery)."""

    def __init__(self, app: Celery, config: FerryConfig, location: RedisLocation) -> None:
        self.app = app
        self.config = config
        self.same_redis = broker_is_store(config, location)
        self._messages: StepMessages | None = None

    def outgoing(self, job_id: str, connection: str, step: str, countdown: float | None = None,
                 retries: int = 0) -> Outgoing:
        """The message of ``step`` (after ``countdown`` seconds; ``retries``: Celery's header)."""
        queue = queue_for_connection(self.config, connection)
        if self.same_redis:
            if self._messages is None:
                self._messages = StepMessages(self.app)
            return Outgoing(commands=tuple(self._messages.step(job_id, step, queue, countdown, retries)))
        eta = time.time() + countdown if countdown else None
        return Outgoing(outbox=OutboxEntry(job_id, step, queue, eta, retries))

    def deliver(self, outgoing: Outgoing, store: JobStore) -> None:
        """After the transition: publish its outbox entry, if it wrote one."""
        if outgoing.outbox is not None:
            self.deliver_entry(outgoing.outbox, store)

    def deliver_entry(self, entry: OutboxEntry, store: JobStore) -> None:
        """Publish an outbox entry's message, then delete the entry (a crash in between
        publishes it twice, which the store makes harmless: the step runs once)."""
        countdown = max(0.0, entry.eta - time.time()) if entry.eta else None
        publish_step(self.app, entry.job_id, entry.step, queue=entry.queue, countdown=countdown or None,
                     retries=entry.retries)
        store.outbox_done(entry)
