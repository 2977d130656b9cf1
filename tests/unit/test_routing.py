"""Queues per destination and the broker choice, decided from ferry.toml and the job store."""

from __future__ import annotations

import fakeredis
import pytest

from producers.cli import _queue_options
from producers.config import parse_config
from producers.embedded import RedisLocation
from producers.errors import ConfigError
from producers.queue import DEFAULT_QUEUE, JobRouter, celery_settings, queue_names, task_name
from producers.store import JobStore
from tests import jobs

CONFIG = parse_config({"connections": {
    "acme": {"service": "atlassian", "site_url": "https://a", "api_url": "https://b", "email": "e",
             "token_env": "T"},
    "market": {"service": "marketplace", "base_url": "https://m", "email": "e", "token_env": "T"},
    "awork": {"service": "awork", "base_url": "https://w", "token_env": "T"},
    "bulk": {"service": "awork", "base_url": "https://w", "token_env": "T", "queue": "ferry.bulk"},
}})
REDIS = RedisLocation.from_url("redis://127.0.0.1:6399/0")


@pytest.fixture(autouse=True)
def no_broker_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_BROKER_URL", raising=False)


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True))


def job_on(store: JobStore, connection: str) -> str:
    record, _ = jobs.create(store, kind="awork-image-delete", connection=connection, steps=["delete_image"],
                             params={}, file=None)
    return record.id


@pytest.mark.parametrize(("connection", "queue"), [
    ("acme", "ferry.atlassian"), ("market", "ferry.marketplace"), ("awork", "ferry.awork"),
    ("bulk", "ferry.bulk"),
])
def test_a_step_goes_to_the_queue_of_its_jobs_connection(store, connection, queue):
    router = JobRouter(CONFIG, store)
    assert router(task_name("delete_image"), (job_on(store, connection),), {}, {}) == {"queue": queue}


def test_a_step_of_a_job_the_store_no_longer_has_goes_to_the_default_queue(store):
    assert JobRouter(CONFIG, store).queue_for("gone") == DEFAULT_QUEUE


def test_tasks_that_are_not_steps_are_left_to_celery(store):
    assert JobRouter(CONFIG, store)("celery.ping", (), {}, {}) is None


def test_default_workers_serve_every_configured_queue():
    assert queue_names(CONFIG) == ["ferry", "ferry.atlassian", "ferry.awork", "ferry.bulk",
                                   "ferry.marketplace"]
    settings = celery_settings(REDIS, CONFIG)
    assert [q.name for q in settings["task_queues"]] == queue_names(CONFIG)


def test_on_redis_queues_are_plain_lists_and_long_uploads_keep_their_message():
    settings = celery_settings(REDIS, CONFIG)
    assert settings["broker_url"] == REDIS.broker_url
    assert {q.exchange.type for q in settings["task_queues"]} == {"direct"}
    assert settings["broker_transport_options"]["visibility_timeout"] >= 12 * 3600


def test_on_rabbitmq_quorum_queues_confirmed_publishes_and_broker_delayed_retries():
    config = CONFIG.model_copy(update={"broker_url": "amqp://guest:guest@rabbit:5672//"})
    settings = celery_settings(REDIS, config)
    assert settings["broker_url"] == "amqp://guest:guest@rabbit:5672//"
    assert all(q.queue_arguments == {"x-queue-type": "quorum"} for q in settings["task_queues"])
    assert {q.exchange.type for q in settings["task_queues"]} == {"topic"}  # delayed delivery needs it
    assert settings["broker_native_delayed_delivery_queue_type"] == "quorum"
    assert settings["broker_transport_options"] == {"confirm_publish": True}  # no visibility timeout
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]


def test_ferry_broker_url_in_the_environment_wins_over_ferry_toml(monkeypatch):
    monkeypatch.setenv("FERRY_BROKER_URL", "amqp://elsewhere//")
    config = CONFIG.model_copy(update={"broker_url": "amqp://rabbit//"})
    assert celery_settings(REDIS, config)["broker_url"] == "amqp://elsewhere//"


def test_a_queue_name_must_be_a_plain_name():
    with pytest.raises(ConfigError, match="queue"):
        parse_config({"connections": {"x": {"service": "awork", "base_url": "https://w", "token_env": "T",
                                            "queue": "no spaces please"}}})


@pytest.mark.parametrize(("args", "queues"), [
    (["-Q", "ferry.awork"], ["ferry.awork"]),
    (["-c", "2", "-Qferry.awork,ferry.atlassian"], ["ferry.awork", "ferry.atlassian"]),
    (["--queues=ferry.awork", "-X", "ferry"], ["ferry.awork", "ferry"]),
    (["-c", "4", "--pool", "threads"], []),
])
def test_the_worker_command_reads_the_queue_options_celery_takes(args, queues):
    assert _queue_options(args) == queues
