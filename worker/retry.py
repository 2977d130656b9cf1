"""When to try again: the server's word if it gave one, else exponential backoff with jitter.
Both are pure functions of their inputs (time and randomness are parameters)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The statuses that say "not processed": only these are retried for a request that cannot be
# repeated safely (a gateway 500/502/504 may follow a create that took effect).
NOT_PROCESSED_STATUSES = frozenset({429, 503})
MAX_SERVER_DELAY = 3600.0  # never park a message longer than this, whatever a header says


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 300.0,
                  rand: Callable[[], float] = random.random) -> float:
    """Delay before attempt ``attempt + 1``: base·2^(attempt-1) capped, with "equal jitter" (the
    delay lands in [half, full] of the exponential value), so a herd of retries spreads out but
    never retries sooner than half the nominal delay."""
    exp = min(cap, base * 2.0 ** max(0, attempt - 1))
    return exp / 2 + rand() * exp / 2


def server_retry_delay(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, from the headers each destination uses:
    ``Retry-After`` (seconds or HTTP date; Jira, Assets sometimes), Jira's ``X-RateLimit-Reset``
    (ISO timestamp) and awork's ``RateLimit-Reset`` (seconds until the window resets).
    An ``X-RateLimit-Reset`` already in the past says nothing (it has minute precision, so it is
    often stale when read): the next header, else the caller's backoff, decides."""
    now = now or datetime.now(UTC)
    lowered = {k.lower(): v for k, v in headers.items()}
    for parse, name in (
        (_seconds_or_date, "retry-after"),
        (_iso_timestamp, "x-ratelimit-reset"),
        (_seconds, "ratelimit-reset"),
    ):
        value = lowered.get(name)
        if value is None:
            continue
        delay = parse(value.strip(), now)
        if delay is not None and name == "x-ratelimit-reset" and delay <= 0:
            continue
        if delay is not None:
            return min(max(delay, 0.0), MAX_SERVER_DELAY)
    return None


def _seconds(value: str, now: datetime) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _seconds_or_date(value: str, now: datetime) -> float | None:
    seconds = _seconds(value, now)
    if seconds is not None:
        return seconds
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - now).total_seconds()


def _iso_timestamp(value: str, now: datetime) -> float | None:
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - now).total_seconds()
