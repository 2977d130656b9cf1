"""What RabbitMQ as broker promises beyond the flows that run on both brokers: replicated
(quorum) queues, and retries that wait in the broker rather than in a worker's memory."""

from __future__ import annotations

import time
from collections.abc import Iterator

import amqp
import pytest
from kombu import Connection

from producers.queue import queue_of
from producers.records import StepStatus
from tests.fixtures.worker import FerryEnv
from tests.integration.helpers import png
from worker.processes import WorkerProcess

pytestmark = [pytest.mark.rabbitmq, pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)]


@pytest.fixture
def rabbit_env(ferry_env: FerryEnv, tmp_path) -> FerryEnv:
    return ferry_env.isolated(tmp_path, db=6)


@pytest.fixture
def channel(rabbit_env: FerryEnv) -> Iterator[amqp.Channel]:
    with Connection(rabbit_env.broker.url) as conn:
        yield conn.channel()


def retries_waiting(url: str, queue: str) -> list[int]:
    """The ``retries`` header of each message ready in ``queue``. Read on a channel of its own,
    never acknowledged: closing it puts them back."""
    with Connection(url) as conn:
        channel = conn.channel()
        found = []
        while (message := channel.basic_get(queue)) is not None:
            found.append(int(message.headers.get("retries") or 0))
        return found


def test_the_queues_are_quorum_queues(rabbit_env, channel, tmp_path):
    WorkerProcess(rabbit_env.env, tmp_path / "w.log").wait_ready().stop()  # declares them
    queue = queue_of(rabbit_env.config().connection("acme"))
    with pytest.raises(amqp.exceptions.PreconditionFailed, match="x-queue-type"):
        channel.queue_declare(queue=queue, durable=True, auto_delete=False,
                              arguments={"x-queue-type": "classic"})


def test_a_delayed_retry_waits_in_the_broker_not_in_a_worker(rabbit_env, sandbox, tmp_path):
    users = sandbox.seed()["awork"]["users"]
    sandbox.add_fault(path="/files/images/users", status=503, retry_after=20, times=1)
    worker = WorkerProcess(rabbit_env.env, tmp_path / "first.log").wait_ready()
    ferry = rabbit_env.ferry()
    job = ferry.submit("awork-image", connection="awork", file=str(png(tmp_path / "u.png")),
                       params={"entity": "users", "id": users})
    deadline = time.monotonic() + 30
    while ferry.status(job.id).steps[0].status != StepStatus.RETRYING:
        assert time.monotonic() < deadline, ferry.status(job.id)
        time.sleep(0.05)
    worker.stop()  # a warm shutdown: the step ends, publishing its retry, before the worker exits
    queue = queue_of(rabbit_env.config().connection("awork"))
    # Its first delivery may be back (the worker's acknowledgement can be cut off by the
    # shutdown); the retry is not: a worker holding it until its ETA would have handed it back.
    assert 1 not in retries_waiting(rabbit_env.broker.url, queue)
    while 1 not in retries_waiting(rabbit_env.broker.url, queue):  # the broker delivers it in time
        assert time.monotonic() < deadline + 60, "the delayed retry never came back"
        time.sleep(0.2)
    second = WorkerProcess(rabbit_env.env, tmp_path / "second.log").wait_ready()
    try:
        done = ferry.wait(job.id, timeout=60)
    finally:
        second.stop()
    assert done.status == "succeeded"
