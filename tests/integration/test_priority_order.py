"""What runs next, end to end on both brokers with a real worker: on a connection limited to 4
requests/s (its window: 4 jobs in its run), a high job submitted after ten low ones is released
from Ferry's ready sets ahead of the low ones still waiting, and every job runs once."""

from __future__ import annotations

from tests.fixtures.broker import both_brokers
from tests.integration.helpers import png


@both_brokers
def test_a_high_job_goes_ahead_of_the_low_ones_waiting_on_a_limited_connection(ferry, sandbox, tmp_path):
    users = sandbox.seed()["awork"]["users"]
    image = str(png(tmp_path / "u.png"))
    ferry.pause("awork-slow")  # the run's first four wait (parked): nothing ends before the high job exists
    try:
        lows = [ferry.submit("awork-image", connection="awork-slow", file=image, priority="low",
                             params={"entity": "users", "id": users}) for _ in range(10)]
        high = ferry.submit("awork-image", connection="awork-slow", file=image, priority="high",
                            params={"entity": "users", "id": users})
        assert ferry.store.ready_count(["awork-slow"]) == {"awork-slow": 7}  # the window: 4 in the run
    finally:
        ferry.resume("awork-slow")
    assert high.priority == "high" and {j.priority for j in lows} == {"low"}
    done_high = ferry.wait(high.id, timeout=60)
    done_lows = [ferry.wait(j.id, timeout=60) for j in lows]
    assert done_high.status == "succeeded" and all(d.status == "succeeded" for d in done_lows)
    after = [d for d in done_lows if d.steps[0].started_at > done_high.steps[0].started_at]
    # Released before every low one still waiting (first in, first out: none after it). The low
    # one released next, by the same top-up or the next end, may start on the worker's other
    # process within the same milliseconds, so one of the six may stamp its start first.
    assert len(after) >= 5, [(d.id, d.steps[0].started_at) for d in done_lows]
    assert len(sandbox.requests(path_contains="/files/images/users")) == 11  # each job ran once
    assert ferry.store.ready_count(["awork-slow"]) == {"awork-slow": 0}
