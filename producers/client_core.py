"""What every part of the Python API (``producers.client.Ferry``) shares: its ferry.toml, the
job store and its Redis, and the broker, which is only looked up when the first job is published."""

from __future__ import annotations

import redis
from celery import Celery

from producers import queue
from producers.archive import open_archive, uses_embedded_redis
from producers.config import FerryConfig, load_config
from producers.embedded import RedisLocation, resolve_redis
from producers.store import JobStore


class ClientCore:
    def __init__(
        self,
        redis_url: str | None = None,
        *,
        config: FerryConfig | None = None,
        config_path: str | None = None,
        redis_client: redis.Redis | None = None,
    ) -> None:
        """``redis_client``: the job store's connection, when the caller has one (a test's
        fakeredis); jobs are then still published to ``redis_url`` / ferry.toml / the embedded
        Redis, which is only looked up when the first job is published."""
        self.config = config if config is not None else load_config(config_path)
        self._redis_url = redis_url
        self._location: RedisLocation | None = None
        self.redis = redis_client if redis_client is not None else redis.Redis.from_url(
            self.location.url, decode_responses=True)
        self.store = JobStore(
            self.redis,
            retention_seconds=self.config.retention_seconds,
            idempotency_seconds=self.config.idempotency_seconds,
            events_max_length=self.config.events.max_length,
        )
        # The archive of ended jobs (``producers.archive``): every read spans it and Redis. A
        # client handed a Redis connection (a test's) has none unless ferry.toml names one.
        self.store.archive = open_archive(
            self.config, embedded=redis_client is None and uses_embedded_redis(self.config, redis_url))
        self._celery: Celery | None = None
        self._chain_messages: queue.ChainMessages | None = None

    @property
    def location(self) -> RedisLocation:
        """Where the broker (and, without a ``redis_client``, the store) is."""
        if self._location is None:
            self._location = (RedisLocation.from_url(self._redis_url) if self._redis_url
                              else resolve_redis(self.config.redis_url))
        return self._location

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = queue.make_celery(self.location, self.config, name="ferry-producer")
        return self._celery
