"""One reader of the job event stream for every open ``GET /events``, fanning out what it reads.

A stream holding a Redis connection in a blocking read of its own took one connection of the
API's pool each: about 100 open streams (dashboard tabs) left ``/healthz``, ``POST /jobs`` and
``/login`` none. Here the streams share one blocking ``XREAD`` on a connection pool of their own
(``READERS + 1`` connections), so they never touch the API's pool, however many are open:

- The hub's reader thread runs while a stream is subscribed. Each batch it reads goes, on the
  event loop, into every subscription's queue (``MAX_PENDING`` batches; a subscription whose
  client reads too slowly is marked ``lagged`` instead of growing without bound).
- A stream starts from its own position (``Last-Event-ID``, or the newest event): it subscribes
  first, then catches up with non-blocking reads until the stream has nothing newer, then
  takes the live batches, skipping what it already sent (ids only grow). Nothing between the
  catch-up and the live batches is lost: whatever the reader had not read when the stream
  subscribed reaches its queue, and whatever it had read was in Redis for the catch-up. A
  lagged stream catches up the same way. At most ``READERS`` catch-up reads run at once, each on
  a worker thread of the hub's own limiter (never the API's threadpool).
- ``max_streams`` subscriptions at most; ``subscribe`` answers None beyond (the route says 503).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TypeVar

import anyio
import redis

from producers import events

READERS = 8  # catch-up reads at once (each holds one connection of the hub's pool while it runs)
READ_BLOCK_MS = 1000  # the reader's blocking read; also how soon it stops once the last stream left
MAX_PENDING = 256  # batches queued for one stream before it is marked lagged
RETRY_SECONDS = 1.0  # after a failed read (Redis down): the streams stay open, quiet

T = TypeVar("T")


class Subscription:
    """One open stream's share of what the hub reads."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[list[events.Event]] = asyncio.Queue(MAX_PENDING)
        self.lagged = False

    def offer(self, batch: list[events.Event]) -> None:
        if self.lagged:
            return
        try:
            self.batches.put_nowait(batch)
        except asyncio.QueueFull:
            self.lagged = True  # it catches up from Redis, where the batch is too

    def take_lag(self) -> bool:
        """Whether this stream fell behind (its queue is emptied: the catch-up reads it all)."""
        if not self.lagged:
            return False
        while not self.batches.empty():
            self.batches.get_nowait()
        self.lagged = False
        return True


class EventHub:
    def __init__(self, client: redis.Redis, max_streams: int) -> None:
        """``client``: the API's Redis client, whose address and settings the hub's own pool takes."""
        self.client = _own_pool(client, READERS + 1)
        self.max_streams = max_streams
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self._reading = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def open_streams(self) -> int:
        return len(self._subscriptions)

    def subscribe(self) -> Subscription | None:
        """A new stream's subscription (on the event loop), or None: ``max_streams`` are open."""
        with self._lock:
            if len(self._subscriptions) >= self.max_streams:
                return None
            self._loop = asyncio.get_running_loop()
            subscription = Subscription()
            self._subscriptions.add(subscription)
            if not self._reading:
                self._reading = True
                threading.Thread(target=self._read, name="ferry-events-hub", daemon=True).start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)

    def close(self) -> None:
        """The app stops (or its event loop is gone): forget every stream; the reader ends
        within one read."""
        with self._lock:
            self._subscriptions.clear()

    async def run(self, call: Callable[[], T]) -> T:
        """A short Redis read of one stream (the catch-up, the newest id) on the hub's threads."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(READERS)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def catch_up(self, position: str, filters: events.EventFilters) -> AsyncIterator[events.Batch]:
        """Every batch after ``position`` that Redis holds now; the last one is empty."""
        while True:
            batch = await self.run(partial(events.read, self.client, position, filters))
            yield batch
            if batch.position == position:
                return
            position = batch.position

    # ---- the reader thread -------------------------------------------------------------------
    def _read(self) -> None:
        position: str | None = None
        while self._still_wanted():
            try:
                position = position or events.latest_id(self.client)
                batch = events.read(self.client, position, block_ms=READ_BLOCK_MS)
            except redis.RedisError:
                time.sleep(RETRY_SECONDS)
                continue
            position = batch.position
            if batch.events and self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._fan_out, batch.events)
                except RuntimeError:  # the loop is closed: the server stopped without telling us
                    self.close()
        self.client.connection_pool.disconnect(inuse_connections=False)  # idle ones; a catch-up may run

    def _still_wanted(self) -> bool:
        with self._lock:
            self._reading = bool(self._subscriptions)
            return self._reading

    def _fan_out(self, batch: list[events.Event]) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(batch)


def newer(event_id: str, than: str) -> bool:
    """Whether stream id ``event_id`` comes after ``than`` (``<ms>-<seq>``, or ``<ms>``)."""
    return _key(event_id) > _key(than)


def _key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _own_pool(client: redis.Redis, size: int) -> redis.Redis:
    """A client on the same Redis as ``client`` with a pool of ``size`` connections of its own
    (waiting for a free one rather than failing)."""
    pool = client.connection_pool
    own = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        connection_class=pool.connection_class, max_connections=size, timeout=30, **pool.connection_kwargs)
    return redis.Redis(connection_pool=own)
