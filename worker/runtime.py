"""What a worker process holds between tasks: config, the job store, one HTTP session per
connection (pooled keep-alive), and the client factory. Built lazily, once per process (after
the prefork fork, so no socket is shared between processes)."""

from __future__ import annotations

import os
import threading
from functools import cached_property

import redis
import requests
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.retry import Retry

from producers.archive import open_archive, uses_embedded_redis
from producers.config import ConnectionConfig, FerryConfig, load_config
from producers.embedded import resolve_redis
from producers.queue import StepPublisher
from producers.store import JobStore
from worker.clients.assets import AssetsClient
from worker.clients.awork import AworkClient
from worker.clients.jira_avatars import JiraAvatarsClient
from worker.clients.marketplace import MarketplaceClient
from worker.clients.media import MediaClient
from worker.http import BearerAuth, Destination, Limiter, new_session
from worker.rate_limit import ConnectionLimiter
from worker.settings import credentials_for


class Clients:
    """The destination clients of one connection, built on first use."""

    def __init__(self, conn: ConnectionConfig, session: requests.Session, limiter: Limiter | None = None) -> None:
        self.conn = conn
        self.session = session
        self.limiter = limiter  # None for one-off reads from the CLI: no Redis there

    def _basic(self) -> tuple[str, str]:
        creds = credentials_for(self.conn)
        return (creds.email or "", creds.token)

    def destination(self, base_url: str | None) -> Destination:
        return Destination(self.session, base_url or "", auth=self._basic(), limiter=self.limiter)

    @cached_property
    def assets(self) -> AssetsClient:
        return AssetsClient(self.destination(self.conn.site_url), self.destination(self.conn.api_url))

    @cached_property
    def media(self) -> MediaClient:
        return MediaClient(self.session, self.limiter)

    @cached_property
    def jira_avatars(self) -> JiraAvatarsClient:
        return JiraAvatarsClient(self.destination(self.conn.site_url))

    @cached_property
    def marketplace(self) -> MarketplaceClient:
        return MarketplaceClient(self.destination(self.conn.base_url))

    @cached_property
    def awork(self) -> AworkClient:
        token = credentials_for(self.conn).token
        return AworkClient(Destination(self.session, self.conn.base_url or "", auth=BearerAuth(token),
                                       limiter=self.limiter))


REDIS_RETRIES = 20


def redis_retry() -> Retry:
    """How a worker's Redis calls ride out a Redis restart (kill, failover, an AOF being loaded):
    retried for ~30 s before a step gives up, so a restart costs time, not a failed or lost step.
    Retrying a transition is safe: its Lua script checks the lease it holds (``producers.store``)."""
    return Retry(ExponentialBackoff(cap=2.0, base=0.05), REDIS_RETRIES)


class Runtime:
    def __init__(self, config: FerryConfig | None = None) -> None:
        self.config = config or load_config()
        self.location = resolve_redis(self.config.redis_url)
        client = redis.Redis.from_url(self.location.url, decode_responses=True, retry=redis_retry(),
                                      retry_on_error=[BusyLoadingError])
        self.store = JobStore(client, retention_seconds=self.config.retention_seconds,
                              idempotency_seconds=self.config.idempotency_seconds,
                              events_max_length=self.config.events.max_length)
        # The archive of ended jobs (SQL), when there is one: reads span it, the archiver fills it.
        self.archive = open_archive(self.config, embedded=uses_embedded_redis(self.config))
        self.store.archive = self.archive
        # Per connection, its pooled session and its limiter, made together under the lock: the
        # threads pool's first steps ask for a connection at once, and a session seen without its
        # limiter was a KeyError (a step failed "internal error: KeyError: 'acme'").
        self._connections: dict[str, tuple[requests.Session, ConnectionLimiter]] = {}
        self._connections_lock = threading.Lock()
        self._publisher: StepPublisher | None = None

    def publisher(self, app: Celery) -> StepPublisher:
        """How this process publishes step messages (built on first use, after the fork)."""
        if self._publisher is None or self._publisher.app is not app:
            self._publisher = StepPublisher(app, self.config, self.location)
        return self._publisher

    def note_pause(self, connection: str, until: str | None) -> None:
        """The connection's pause, as the step's start read it (the limiter need not read it)."""
        self._connection(connection)[1].known_pause(until)

    def clients(self, connection: str) -> Clients:
        session, limiter = self._connection(connection)
        return Clients(self.config.connection(connection), session, limiter)

    def _connection(self, connection: str) -> tuple[requests.Session, ConnectionLimiter]:
        made = self._connections.get(connection)
        if made is not None:
            return made
        conn = self.config.connection(connection)
        with self._connections_lock:
            if connection not in self._connections:
                limiter = ConnectionLimiter(self.store.client(), connection, conn.rate_limit, conn.max_in_flight)
                self._connections[connection] = (new_session(self.config.stall_seconds_of(connection)), limiter)
            return self._connections[connection]


_runtime: tuple[int, Runtime] | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        _runtime = (os.getpid(), Runtime())
    return _runtime[1]
