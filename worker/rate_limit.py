"""One request budget per connection, shared by every worker process (in Redis).

Two things slow a connection down for everyone at once:
- its own limit (``rate_limit`` requests/s in ferry.toml), enforced with GCRA — a token bucket
  kept as one timestamp, updated atomically by a Lua script, allowing a burst of one second's worth;
- the destination's word: a 429 with a delay pauses the whole connection until then, so the
  other workers do not keep hammering a service that has just asked everyone to wait.

A short wait is slept inline; a long one becomes a RetryableError, which frees the worker slot
and parks the step for exactly that long.
"""

from __future__ import annotations

import time

import redis

from producers import keys
from worker.errors import Throttled

MAX_INLINE_WAIT = 5.0

# KEYS[1] = bucket; ARGV = interval ms, burst ms. Returns 0 (go) or the ms to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - burst - now
if wait > 0 then return wait end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, new_tat - now + burst))
return 0
"""


class ConnectionLimiter:
    def __init__(self, client: redis.Redis, connection: str, per_second: float | None) -> None:
        self.client = client
        self.bucket = keys.rate_limit(connection)
        self.pause_key = keys.rate_limit(connection) + ":pause"
        self.per_second = per_second
        self._script = client.register_script(_GCRA) if per_second else None

    def acquire(self, step: str) -> None:
        """Return when this connection may send one more request; raise to park the step if the
        wait is long."""
        waited = 0.0
        while True:
            wait = max(self._paused_for(), self._bucket_wait())
            if wait <= 0:
                return
            if waited + wait > MAX_INLINE_WAIT:
                raise Throttled(f"connection rate limit: next slot in {wait:.1f}s", step=step,
                                     retry_after=wait)
            time.sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        """The destination asked to wait: hold every worker's requests on this connection."""
        if seconds > 0:
            until = time.time() + seconds
            self.client.set(self.pause_key, f"{until:.3f}", px=int(seconds * 1000) + 1)

    def _paused_for(self) -> float:
        until = self.client.get(self.pause_key)
        return max(0.0, float(str(until)) - time.time()) if until else 0.0

    def _bucket_wait(self) -> float:
        if self._script is None or not self.per_second:
            return 0.0
        interval = 1000.0 / self.per_second
        # Tolerance for a burst of one second's worth of requests: n at once, then one per interval.
        burst = interval * max(0.0, self.per_second - 1)
        wait_ms = self._script(keys=[self.bucket], args=[int(interval), int(burst)])
        return float(wait_ms) / 1000.0
