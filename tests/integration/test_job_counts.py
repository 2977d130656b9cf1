"""The store's job counts (status x kind x connection), on a real Redis: exact through every
status move (submit, start, retry, success, failure, replay, cancel, purge, an expired record
swept), rebuilt once for a store written before they existed, and read at the same cost whatever
the store holds: ``/metrics``, ``/connections`` and the dashboard's counters never intersect
indexes per read (issue 20 item 3)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers import keys
from producers.embedded import EmbeddedRedis
from producers.records import FileInfo, JobStatus, StepError
from producers.store import Filters, JobStore, NewJob
from tests import jobs

STEPS = ["get_credentials", "media_upload", "link_attachment"]
KINDS = {"acme": "assets-attachment", "awork": "awork-image-delete"}


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, retention_seconds=1)


def submit(store: JobStore, connection: str, n: int = 1) -> list[str]:
    kind = KINDS[connection]
    steps = tuple(STEPS) if connection == "acme" else ("delete_profile_image",)
    new = [NewJob(kind=kind, connection=connection, steps=steps, params={"object": "88"},
                  file=FileInfo(path="/tmp/a.pdf", name="a.pdf", size=3) if connection == "acme" else None)
           for _ in range(n)]
    return [outcome[0].id for outcome in store.create_many(new)]  # type: ignore[index]


def by_intersection(client: redis.Redis, status: str, kind: str, connection: str) -> int:
    """The count the old way: what the indexes hold (the truth the counts must equal)."""
    client.zinterstore("test:scratch", [keys.index_status(status), keys.index_kind(kind),
                                        keys.index_connection(connection)])
    return int(client.zcard("test:scratch"))


def assert_exact(store: JobStore, client: redis.Redis) -> None:
    combos = [(s.value, kind, conn) for conn, kind in KINDS.items() for s in JobStatus]
    assert store.job_counts(combos) == [by_intersection(client, *c) for c in combos]
    for conn, kind in KINDS.items():
        assert store.count(Filters(connection=conn)) == sum(by_intersection(client, s.value, kind, conn)
                                                            for s in JobStatus)


def test_counts_follow_every_status_move_exactly(store: JobStore, redis_client: redis.Redis) -> None:
    a, b, c, d = submit(store, "acme", 4)
    [w] = submit(store, "awork")
    assert_exact(store, redis_client)
    jobs.start_step(store, a, "get_credentials")
    store.retry_step(a, "get_credentials", StepError(step="get_credentials", message="503"), delay=5)
    jobs.succeed(store, b, {"ok": 1})
    jobs.start_step(store, c, "get_credentials")
    store.mark_failed(c, "get_credentials", StepError(step="get_credentials", message="400"))
    store.cancel(d, by="test")
    jobs.succeed(store, w, {"ok": 1})
    assert_exact(store, redis_client)
    assert store.job_counts([("failed", "assets-attachment", "acme")]) == [1]

    store.begin_run(c, trigger="replay", from_step="get_credentials")  # failed -> queued
    assert_exact(store, redis_client)
    store.delete(d)  # a cancelled job, purged
    assert_exact(store, redis_client)


def test_an_expired_record_leaves_the_counts_when_it_is_swept(own_redis: redis.Redis) -> None:
    # A Redis of its own: on the session's, another test's worker may sweep the record first.
    store, redis_client = JobStore(own_redis, retention_seconds=1), own_redis
    [job] = submit(store, "acme")
    jobs.succeed(store, job, {"ok": 1})  # retention 1 s
    assert store.job_counts([("succeeded", "assets-attachment", "acme")]) == [1]
    time.sleep(1.2)
    assert store.sweep() == 1 and store.sweep() == 0  # a second sweep counts nothing out twice
    assert store.job_counts([("succeeded", "assets-attachment", "acme")]) == [0]
    assert_exact(store, redis_client)


def test_a_store_from_before_the_counts_is_counted_once(store: JobStore, redis_client: redis.Redis) -> None:
    submit(store, "acme", 3)
    submit(store, "awork", 2)
    redis_client.delete(keys.job_counts())  # as a store written by an older Ferry
    assert store.job_counts([("queued", "assets-attachment", "acme"), ("queued", "awork-image-delete", "awork")]) \
        == [3, 2]
    assert redis_client.hget(keys.job_counts(), "built") == "1"
    assert_exact(store, redis_client)


def scrape_cost(store: JobStore, redis_client: redis.Redis) -> dict[str, int]:
    """What one read of every count a /metrics scrape and /connections make costs Redis."""
    def stats() -> dict[str, int]:
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in redis_client.info("commandstats").items()}
    combos = [(s.value, kind, conn) for conn, kind in KINDS.items() for s in JobStatus]
    store.job_counts(combos)  # built, if it was not
    before = stats()
    store.job_counts(combos)
    store.connection_states(list(KINDS))
    store.count(Filters(status="queued", connection="acme"))
    after = stats()
    return {name: after[name] - before.get(name, 0) for name in after
            if after[name] != before.get(name, 0) and name != "info"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """A Redis of this test's own: its command counts are this test's alone (the session's Redis
    also serves other tests' workers)."""
    server = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(server.ensure_running().url, decode_responses=True)
    yield client
    client.close()
    server.stop()


def test_reading_the_counts_costs_the_same_at_any_store_size(own_redis: redis.Redis) -> None:
    store, redis_client = JobStore(own_redis), own_redis
    submit(store, "acme", 10)
    small = scrape_cost(store, redis_client)
    for _ in range(20):
        submit(store, "acme", 500)
    submit(store, "awork", 500)
    large = scrape_cost(store, redis_client)
    assert small == large, (small, large)
    assert not {"zinterstore", "zunionstore", "zcard", "zcount"} & set(large), large
