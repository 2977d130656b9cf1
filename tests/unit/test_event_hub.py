"""``GET /events``' hub: one reader for every open stream, each stream sent every event once and in
order, a stream that falls behind caught up from Redis, and a cap on open streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import fakeredis
import pytest

from producers import events
from producers.web import events as web_events
from producers.web import hub as hub_module
from producers.web.hub import EventHub, newer

EVENTS = 30


def append(client: fakeredis.FakeRedis, n: int) -> None:
    events.append(client, events.new(events.QUEUED, job=f"job-{n}", kind="awork-image", connection="awork",
                                     status="queued"))


async def event_ids(frames: AsyncIterator[str], count: int) -> list[str]:
    """The ids of the next ``count`` events a stream sends (heartbeats and the retry line skipped)."""
    ids: list[str] = []
    while len(ids) < count:
        frame = await asyncio.wait_for(anext(frames), 30)
        if frame.startswith("id: "):
            ids.append(frame.split("\n", 1)[0].removeprefix("id: "))
    return ids


def test_every_stream_gets_every_event_once_in_order_a_lagging_one_from_redis(monkeypatch) -> None:
    monkeypatch.setattr(hub_module, "MAX_PENDING", 1)
    monkeypatch.setattr(hub_module, "READ_BLOCK_MS", 50)
    client = fakeredis.FakeRedis(decode_responses=True)
    append(client, -1)  # before the streams: only one resuming from the start sees it
    hub = EventHub(client, max_streams=5)

    async def scenario() -> tuple[list[str], list[str]]:
        live, resumed = hub.subscribe(), hub.subscribe()
        assert live is not None and resumed is not None
        now = events.latest_id(client)
        fast = web_events._frames(hub, live, now, events.EventFilters())
        slow = web_events._frames(hub, resumed, events.START, events.EventFilters())
        assert await anext(fast) == "retry: 2000\n\n"
        before = await event_ids(slow, 1)  # caught up from Redis; now it waits for live batches
        for n in range(EVENTS):
            append(client, n)
        resumed.offer([])
        resumed.offer([])  # batches come faster than its client reads: it lags
        assert resumed.lagged
        try:
            return await event_ids(fast, EVENTS), before + await event_ids(slow, EVENTS)
        finally:
            hub.close()
            await fast.aclose()
            await slow.aclose()

    fast_ids, slow_ids = asyncio.run(scenario())
    stored = [e.id for e in events.read(client, events.START, count=1000).events]
    assert slow_ids == stored and fast_ids == stored[1:]


def test_streams_past_the_cap_are_refused_until_one_leaves() -> None:
    hub = EventHub(fakeredis.FakeRedis(decode_responses=True), max_streams=2)

    async def scenario() -> None:
        first, second = hub.subscribe(), hub.subscribe()
        assert first is not None and second is not None
        assert hub.subscribe() is None
        hub.unsubscribe(first)
        assert hub.subscribe() is not None
        hub.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("later", "earlier"), [("2-0", "1-5"), ("1-10", "1-9"), ("5", "4-99"), ("10-0", "9-0")])
def test_stream_ids_compare_as_numbers(later: str, earlier: str) -> None:
    assert newer(later, earlier) and not newer(earlier, later) and not newer(later, later)
