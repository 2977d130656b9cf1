"""One request budget per connection, shared by every worker process (in Redis).

Three things hold a connection's requests back, for every worker at once:
- its own rate (``rate_limit`` requests/s in ferry.toml), enforced with GCRA — a token bucket
  kept as one timestamp, updated atomically by a Lua script, allowing a burst of one second's worth;
  a request whose wait is short has its place reserved, so waiting requests go in the order they asked;
- its own concurrency (``max_in_flight``): a semaphore of that many slots, each a token in a
  sorted set scored by when it expires. A worker renews the slots it holds while their requests
  run; a worker that dies stops renewing, and its slots lapse instead of being lost for good;
- the destination's word: a 429 with a delay pauses the whole connection until then, so the
  other workers do not keep hammering a service that has just asked everyone to wait.

A short wait is slept inline; a long one becomes ``Throttled``, which frees the worker slot and
parks the step for that long without spending its attempt budget.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
import uuid
from pathlib import Path
from typing import cast

import redis

from producers import keys
from producers.store.loader import Scripts
from worker import metrics
from worker.errors import Throttled

MAX_INLINE_WAIT = 5.0
PAUSED_RECHECK = 2.0  # a step meeting an operator's pause mid-way comes back this soon (and is parked)
KNOWN_PAUSE_SECONDS = 1.0  # how long a pause read with the step's start stands for a request

# The limiter's Lua scripts (gcra, take_slot, renew_slots), each file's header says its KEYS and ARGV.
LUA = Path(__file__).resolve().parent / "lua"

SLOT_SECONDS = 60.0  # a dead worker's slot is free again after this; live ones renew every third


class InFlightSlots:
    """At most ``capacity`` requests on one connection at once, across every worker."""

    def __init__(self, client: redis.Redis, connection: str, capacity: int,
                 lifetime: float = SLOT_SECONDS) -> None:
        self.client = client
        self.connection = connection
        self.key = keys.in_flight_slots(connection)
        self.capacity = capacity
        self.lifetime_ms = max(1, int(lifetime * 1000))
        self._lua = Scripts(client, LUA)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def try_take(self) -> str | None:
        """A slot's token, or None when all are taken."""
        token = uuid.uuid4().hex
        if not self._lua.run("take_slot", [self.key], [self.capacity, self.lifetime_ms, token]):
            return None
        with self._lock:
            self._held.add(token)
        self._keep_renewing()
        return token

    def take(self, max_wait: float) -> str:
        """Wait up to ``max_wait`` seconds for a slot; past that, park the step (``Throttled``)."""
        began = time.monotonic()
        deadline = began + max_wait
        pause = 0.02
        while (token := self.try_take()) is None:
            if time.monotonic() + pause > deadline:
                metrics.waited(self.connection, time.monotonic() - began)
                raise Throttled(f"connection at its limit of {self.capacity} requests in flight",
                                retry_after=1.0 + random.random() * 2)
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.25)
        metrics.waited(self.connection, time.monotonic() - began)
        return token

    def give_back(self, token: str) -> None:
        with self._lock:
            self._held.discard(token)
        self.client.zrem(self.key, token)

    def _keep_renewing(self) -> None:
        # Started on first use, i.e. in the process that holds the slots (after a prefork fork).
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(target=self._renew_loop, name="ferry-slots", daemon=True)
            self._renewer.start()

    def _renew_loop(self) -> None:
        while True:
            time.sleep(self.lifetime_ms / 3000)
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            # A failed round is tried again next time; a lapsed slot only lets one more request in.
            with contextlib.suppress(redis.RedisError):
                self._lua.run("renew_slots", [self.key], [self.lifetime_ms, *held])


class ConnectionLimiter:
    def __init__(self, client: redis.Redis, connection: str, per_second: float | None,
                 max_in_flight: int | None = None) -> None:
        self.client = client
        self.connection = connection
        self.bucket = keys.rate_limit(connection)
        self.pause_key = keys.rate_limit_pause(connection)
        self.operator_pause_key = keys.connection_paused(connection)
        self._known = threading.local()
        self.per_second = per_second
        self._lua = Scripts(client, LUA)
        self.slots = InFlightSlots(client, connection, max_in_flight) if max_in_flight else None

    def acquire(self) -> str | None:
        """Return when this connection may send one more request (with the in-flight slot to
        ``release`` after it, if the connection has a cap); raise to park the step if the wait
        is long (``Throttled``, which the task running the step records under its name)."""
        slot = self.slots.take(MAX_INLINE_WAIT) if self.slots is not None else None
        try:
            self._wait_for_budget()
        except BaseException:
            self.release(slot)
            raise
        return slot

    def release(self, slot: str | None) -> None:
        """The request ended (answered or failed): its in-flight slot is free again."""
        if slot is not None and self.slots is not None:
            self.slots.give_back(slot)

    def _wait_for_budget(self) -> None:
        """Wait out the destination's 429 pause, then take this request's place in the rate
        (reserved: the waiting requests go in the order they asked) and wait for it."""
        waited = 0.0
        while (paused := self._paused_for()) > 0:
            if waited + paused > MAX_INLINE_WAIT:
                raise Throttled(f"connection rate limit: next slot in {paused:.1f}s", retry_after=paused)
            time.sleep(paused)
            metrics.waited(self.connection, paused)
            waited += paused
        wait = self._bucket_wait(MAX_INLINE_WAIT - waited)
        if wait > 0:
            time.sleep(wait)
            metrics.waited(self.connection, wait)

    def pause(self, seconds: float) -> None:
        """The destination asked to wait: hold every worker's requests on this connection."""
        if seconds > 0:
            # Kept to the millisecond, rounded down: rounding up made the pause read back a
            # fraction longer than the destination asked for (30.00008 s for a 30 s Retry-After).
            until = math.floor((time.time() + seconds) * 1000) / 1000
            self.client.set(self.pause_key, f"{until:.3f}", px=int(seconds * 1000) + 1)

    def known_pause(self, until: str | None) -> None:
        """The 429 pause as the step's start has just read it (``JobStore.begin_step``, which
        also found no operator's pause, or the step would not have started): this thread's next
        request goes by it instead of reading both again."""
        self._known.reading = (until or "", time.monotonic())

    def _paused_for(self) -> float:
        """Seconds the destination's 429 pause has left. Read with an operator's pause (then
        nothing is sent, and the step comes back soon to be parked), except for the first request
        after the step's start, which read both a moment ago (``known_pause``)."""
        known, read_at = getattr(self._known, "reading", (None, 0.0))
        self._known.reading = None, 0.0
        if known is not None and time.monotonic() - read_at < KNOWN_PAUSE_SECONDS:
            until: str | None = known
        else:
            until, paused = cast(list[str | None], self.client.mget([self.pause_key, self.operator_pause_key]))
            if paused:
                raise Throttled(f"connection {self.connection} is paused by an operator",
                                retry_after=PAUSED_RECHECK)
        return max(0.0, float(str(until)) - time.time()) if until else 0.0

    def _bucket_wait(self, max_wait: float) -> float:
        """Seconds until this request's reserved place in the rate; ``Throttled`` when that is
        more than ``max_wait`` away (nothing reserved)."""
        if not self.per_second:
            return 0.0
        interval = 1000.0 / self.per_second
        # Tolerance for a burst of one second's worth of requests: n at once, then one per interval.
        burst = interval * max(0.0, self.per_second - 1)
        reserved, wait_ms = self._lua.run("gcra", [self.bucket], [int(interval), int(burst), int(max_wait * 1000)])
        wait = float(wait_ms) / 1000.0
        if not reserved:
            raise Throttled(f"connection rate limit: next slot in {wait:.1f}s", retry_after=wait)
        return wait
