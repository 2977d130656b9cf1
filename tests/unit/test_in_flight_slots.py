"""A connection's in-flight cap: a semaphore in Redis whose slots a dead worker cannot keep."""

from __future__ import annotations

import time

import fakeredis
import pytest

from worker.errors import Throttled
from worker.rate_limit import ConnectionLimiter, InFlightSlots


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def test_no_more_slots_than_the_cap_across_workers(client):
    one, other = InFlightSlots(client, "acme", 2), InFlightSlots(client, "acme", 2)
    assert one.try_take() and other.try_take()
    assert one.try_take() is None and other.try_take() is None


def test_a_released_slot_is_free_at_once(client):
    slots = InFlightSlots(client, "acme", 1)
    token = slots.try_take()
    assert token is not None
    slots.give_back(token)
    assert slots.try_take() is not None


def test_the_slots_of_a_worker_that_died_lapse(client):
    dead = InFlightSlots(client, "acme", 2, lifetime=0.3)
    assert dead.try_take() and dead.try_take()
    dead._held.clear()  # a dead worker renews nothing
    survivor = InFlightSlots(client, "acme", 2, lifetime=0.3)
    assert survivor.try_take() is None
    time.sleep(0.4)
    assert survivor.try_take() is not None


def test_a_live_worker_keeps_its_slot_for_as_long_as_its_request_runs(client):
    live = InFlightSlots(client, "acme", 1, lifetime=0.3)
    assert live.try_take() is not None
    time.sleep(0.8)  # well past the lifetime: renewed every 0.1 s meanwhile
    assert InFlightSlots(client, "acme", 1, lifetime=0.3).try_take() is None


def test_waiting_too_long_for_a_slot_parks_the_step_without_spending_an_attempt(client):
    InFlightSlots(client, "acme", 1).try_take()
    with pytest.raises(Throttled) as exc:
        InFlightSlots(client, "acme", 1).take(max_wait=0.2)
    assert exc.value.retry_after  # the task records it under the running step


def test_the_limiter_hands_out_a_slot_per_request_and_takes_it_back(client):
    limiter = ConnectionLimiter(client, "acme", per_second=None, max_in_flight=1)
    slot = limiter.acquire()
    assert slot is not None and limiter.slots is not None and limiter.slots.try_take() is None
    limiter.release(slot)
    assert limiter.slots.try_take() is not None


def test_without_a_cap_there_is_no_slot_to_release(client):
    limiter = ConnectionLimiter(client, "acme", per_second=None)
    assert limiter.acquire() is None
    limiter.release(None)


def test_a_429_pause_never_reads_back_longer_than_the_server_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock at .0006 s past a millisecond: kept to 3 decimals rounded up, a 30 s pause read
    # back as 30.0004 s; rounded down it is never longer than asked.
    monkeypatch.setattr(time, "time", lambda: 1_000.0006)
    limiter = ConnectionLimiter(fakeredis.FakeRedis(decode_responses=True), "acme", per_second=None)
    limiter.pause(30)
    with pytest.raises(Throttled) as exc:
        limiter.acquire()
    assert 29.99 < exc.value.retry_after <= 30
