"""A connection's request budget is shared by every worker, and a 429 slows everyone down."""

from __future__ import annotations

import time

import pytest

from tests.integration.helpers import png
from worker.errors import Throttled
from worker.rate_limit import ConnectionLimiter


def test_the_budget_allows_a_one_second_burst_then_spaces_requests(redis_client):
    limiter = ConnectionLimiter(redis_client, "acme", per_second=20)
    started = time.monotonic()
    for _ in range(30):
        limiter.acquire()
    assert time.monotonic() - started >= 0.45  # 20 at once, the next 10 at 50 ms each


def test_two_limiters_share_one_budget(redis_client):
    a = ConnectionLimiter(redis_client, "acme", per_second=10)
    b = ConnectionLimiter(redis_client, "acme", per_second=10)
    started = time.monotonic()
    for _ in range(10):
        a.acquire()
        b.acquire()
    assert time.monotonic() - started >= 0.9


def test_a_429_pauses_the_whole_connection(redis_client):
    ConnectionLimiter(redis_client, "acme", per_second=None).pause(1.0)
    other_worker = ConnectionLimiter(redis_client, "acme", per_second=None)
    started = time.monotonic()
    other_worker.acquire()
    assert time.monotonic() - started >= 0.9


def test_a_long_wait_parks_the_step_instead_of_blocking_the_worker(redis_client):
    ConnectionLimiter(redis_client, "acme", per_second=None).pause(30)
    with pytest.raises(Throttled) as exc:
        ConnectionLimiter(redis_client, "acme", per_second=None).acquire()
    assert 25 < exc.value.retry_after <= 30


def test_jobs_on_a_limited_connection_are_spaced_across_workers(ferry, sandbox, tmp_path):
    users = sandbox.seed()["awork"]["users"]
    image = png(tmp_path / "u.png")
    jobs = [ferry.submit("awork-image", connection="awork-slow", file=str(image),
                         params={"entity": "users", "id": users}) for _ in range(8)]
    done = [ferry.wait(j.id, timeout=60) for j in jobs]
    assert all(d.status == "succeeded" for d in done)
    hits = sorted(r["time"] for r in sandbox.requests(path_contains="/files/images/users"))
    assert len(hits) == 8
    span = _seconds(hits[-1]) - _seconds(hits[0])
    assert span >= 0.9  # 4 per second with a 4-request burst: the last 4 wait about a second


def test_awork_429_with_ratelimit_reset_is_waited_out(ferry, sandbox, tmp_path):
    users = sandbox.seed()["awork"]["users"]
    sandbox.set_rate_limit(per_second=1)
    image = png(tmp_path / "v.png")
    jobs = [ferry.submit("awork-image", connection="awork", file=str(image),
                         params={"entity": "users", "id": users}) for _ in range(3)]
    done = [ferry.wait(j.id, timeout=90) for j in jobs]
    assert all(d.status == "succeeded" for d in done), [d.error for d in done]
    assert any(d.steps[0].attempts > 1 for d in done)
    statuses = [r["status"] for r in sandbox.requests(path_contains="/files/images/users")]
    assert statuses.count(429) <= 6  # the pause stops a herd of retries hammering the service


def _seconds(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
