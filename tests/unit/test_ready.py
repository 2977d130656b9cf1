"""What runs next on a connection with a window: jobs past it wait in Ferry's ready sets with no
message, and the dispatcher releases them as the run frees room — strict order between
priorities with aging, tenant turns within one, a started job's next step at once, a cancelled
job never, a job whose priority changed while it waited at its new place.

Runs on the session's real redis-server, in a database of its own (no worker consumes there),
so the messages can be read back from the queue list. A job "ends" here through the store
calls a worker makes (``tests.jobs``)."""

from __future__ import annotations

import contextlib
import json
import time
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import keys, queue
from producers.client import Ferry, JobRequest
from producers.config import parse_config
from producers.embedded import RedisLocation
from producers.records import JobStatus
from tests import jobs
from worker import dispatch

DB = 14  # other tests use 0 and 3-13
PDF = b"%PDF-1.4\n" + b"x" * 200 + b"\n%%EOF\n"
FIRST = "ferry.step.get_credentials"


def producer(location: RedisLocation, root: Path, **scheduling: Any) -> Ferry:
    config = parse_config({"connections": {"acme": {
        "service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
        "email": "a@b.c", "token_env": "X"}}, "files": {"roots": [str(root)]},
        "scheduling": {"window": 2, **scheduling}})
    return Ferry(location.url, config=config)


@pytest.fixture
def env(module_db: tuple[RedisLocation, redis.Redis], tmp_path: Path) -> Iterator[tuple[Any, ...]]:
    (tmp_path / "doc.pdf").write_bytes(PDF)
    made: list[Ferry] = []

    def make(**scheduling: Any) -> tuple[Ferry, queue.StepPublisher]:
        ferry = producer(module_db[0], tmp_path, **scheduling)
        made.append(ferry)
        return ferry, queue.StepPublisher(ferry.celery, ferry.config, module_db[0])

    yield make, module_db[1], tmp_path
    for ferry in made:
        with contextlib.suppress(Exception):
            ferry.close()


def submit(ferry: Ferry, tmp_path: Path, **extra: str) -> str:
    return ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                        params={"object": "88"}, **extra).id  # type: ignore[arg-type]


def messages(db: redis.Redis) -> list[tuple[str, str]]:
    """(task, job id) of each message in the acme queue, in the order a worker takes them."""
    found = []
    for raw in reversed(db.lrange("ferry.atlassian", 0, -1)):
        message = json.loads(raw)
        body = message["body"]  # the store's slim messages: JSON; Celery's own (a release): base64
        found.append((message["headers"]["task"], json.loads(body if body.startswith("[") else b64decode(body))[0][0]))
    return found


def taken(db: redis.Redis) -> list[str]:
    """The first-step jobs in the queue, in order; the queue emptied (a worker took them)."""
    found = [job for task, job in messages(db) if task == FIRST]
    db.delete("ferry.atlassian")
    return found


def end(ferry: Ferry, job_id: str) -> None:
    jobs.succeed(ferry.store, job_id, {"done": True})


def release_all(ferry: Ferry, publisher: queue.StepPublisher, db: redis.Redis, first: list[str]) -> list[str]:
    """Run the connection: each job taken ends, and its place goes to the next (as a worker's
    end of a job does); the order jobs reached the broker in."""
    order, running = list(first), list(first)
    while running:
        end(ferry, running.pop(0))
        dispatch.top_up(ferry.store, publisher, ferry.config, "acme")
        found = taken(db)
        order += found
        running += found
    return order


def test_jobs_past_the_window_wait_with_no_message_then_go_by_priority(env):
    make, db, tmp_path = env
    ferry, publisher = make()
    low = [submit(ferry, tmp_path, priority="low") for _ in range(3)]
    normal = submit(ferry, tmp_path)
    high = submit(ferry, tmp_path, priority="high")
    assert taken(db) == low[:2]  # the window: 2 in the run, the rest wait in the store
    assert ferry.store.ready_count(["acme"]) == {"acme": 3}
    assert {ferry.status(j).status for j in (low[2], normal, high)} == {JobStatus.QUEUED}
    assert any("waits its turn" in r for r in ferry.why_waiting(ferry.status(high)))
    assert not any("waits its turn" in r for r in ferry.why_waiting(ferry.status(low[0])))
    assert dispatch.top_up(ferry.store, publisher, ferry.config, "acme") == 0  # the run is full
    assert release_all(ferry, publisher, db, low[:2]) == [*low[:2], high, normal, low[2]]
    assert ferry.store.ready_count(["acme"]) == {"acme": 0} and db.zcard(keys.outbox()) == 0


def test_a_job_waiting_aging_seconds_per_level_goes_before_a_newer_high_one(env):
    make, db, tmp_path = env
    ferry, publisher = make(window=1, aging_seconds=0.2)
    first = submit(ferry, tmp_path, priority="low")
    old_low = submit(ferry, tmp_path, priority="low")
    time.sleep(0.5)  # two levels' worth of aging and more: ranks with a high job submitted now
    high = submit(ferry, tmp_path, priority="high")
    newer_low = submit(ferry, tmp_path, priority="low")
    assert release_all(ferry, publisher, db, taken(db)) == [first, old_low, high, newer_low]


def test_without_aging_yet_a_high_job_goes_first(env):
    make, db, tmp_path = env
    ferry, publisher = make(window=1, aging_seconds=60)
    first = submit(ferry, tmp_path, priority="low")
    low = submit(ferry, tmp_path, priority="low")
    high = submit(ferry, tmp_path, priority="high")
    assert release_all(ferry, publisher, db, taken(db)) == [first, high, low]


def test_tenants_take_turns_within_one_priority(env):
    make, db, tmp_path = env
    ferry, publisher = make(window=1)
    a = [submit(ferry, tmp_path, tenant="a") for _ in range(12)]
    b = [submit(ferry, tmp_path, tenant="b") for _ in range(3)]
    order = release_all(ferry, publisher, db, taken(db))
    assert sorted(order) == sorted(a + b)
    # b's three go among the next six: no more than one of a's per turn ahead of each
    assert max(order.index(j) for j in b) <= 6, order
    assert [j for j in order if j in a] == a  # each tenant's own jobs in order


def test_a_tenant_arriving_behind_a_backlog_goes_before_the_backlog_s_next_jobs(env):
    """Its first window's worth of jobs take the turns of the jobs now in the run: a's backlog
    delays them by no more than the run itself."""
    make, db, tmp_path = env
    ferry, publisher = make(window=3)
    a = [submit(ferry, tmp_path, tenant="a") for _ in range(20)]
    order = taken(db)
    running = list(order)
    for _ in range(5):  # a's backlog runs a while: the turn now moves on
        end(ferry, running.pop(0))
        dispatch.top_up(ferry.store, publisher, ferry.config, "acme")
        running += taken(db)
    b = [submit(ferry, tmp_path, tenant="b") for _ in range(3)]
    end(ferry, running.pop(0))
    dispatch.top_up(ferry.store, publisher, ferry.config, "acme")
    assert taken(db) == [b[0]]
    assert release_all(ferry, publisher, db, running)[len(running):len(running) + 2] == b[1:]
    assert ferry.store.ready_count(["acme"]) == {"acme": 0} and len(a) == 20


def run_a_while(ferry: Ferry, publisher: queue.StepPublisher, db: redis.Redis, running: list[str], n: int) -> None:
    """n of the run's jobs end, each place going to the next waiting job (the turn moves on)."""
    for _ in range(n):
        end(ferry, running.pop(0))
        dispatch.top_up(ferry.store, publisher, ferry.config, "acme")
        running += taken(db)


def b_behind_a(env: tuple[Any, ...], a_jobs: int, b_jobs: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """Tenant a's backlog runs a while (window 3), then tenant b submits: a's and b's jobs, a's
    run when b came, and the order jobs reached the broker in from then on."""
    make, db, tmp_path = env
    ferry, publisher = make(window=3)
    a = [submit(ferry, tmp_path, tenant="a") for _ in range(a_jobs)]
    running = taken(db)
    run_a_while(ferry, publisher, db, running, 5)
    b = [submit(ferry, tmp_path, tenant="b") for _ in range(b_jobs)]
    return a, b, list(running), release_all(ferry, publisher, db, list(running))[len(running):]


def test_a_tenant_s_handful_behind_another_s_backlog_waits_only_for_the_run(env):
    """Issue 25's figure: B's 20 jobs after A's backlog finish within twice their time alone.
    They go before every waiting job of A's; only A's jobs already in the run are ahead."""
    a, b, run, order = b_behind_a(env, 60, 20)
    assert order[:20] == b
    assert sorted(run + order[20:]) == sorted(a[5:])


def test_a_tenant_with_a_backlog_of_its_own_gets_a_head_start_then_takes_turns(env):
    """A second big tenant does not take the connection over: past its head start (32 jobs)
    the two alternate, one job each per turn."""
    a, b, run, order = b_behind_a(env, 100, 60)
    assert order[:32] == b[:32]
    tail = order[32:72]  # then one of each per turn
    assert sum(j in b for j in tail) in range(19, 22), tail
    assert [j for j in order if j in a] == a[5 + len(run):] and len(set(order)) == len(order)


def test_a_batch_s_tenant_and_priority_apply_and_its_jobs_wait_low(env):
    make, db, tmp_path = env
    ferry, publisher = make(window=1)
    first = submit(ferry, tmp_path)
    requests = [JobRequest(kind="assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
                           params={"object": "88"}) for _ in range(2)]
    batch = [o[0].id for o in ferry.submit_many(requests, tenant="t")]  # type: ignore[index]
    single = submit(ferry, tmp_path)
    assert release_all(ferry, publisher, db, taken(db)) == [first, single, *batch]


def test_a_cancelled_waiting_job_leaves_and_is_never_released(env):
    make, db, tmp_path = env
    ferry, publisher = make(window=1)
    first = submit(ferry, tmp_path)
    gone, kept = submit(ferry, tmp_path), submit(ferry, tmp_path)
    assert ferry.cancel(gone).outcome == "cancelled"
    assert ferry.store.ready_count(["acme"]) == {"acme": 1}
    assert release_all(ferry, publisher, db, taken(db)) == [first, kept]
    assert ferry.status(gone).status == JobStatus.CANCELLED


def test_a_waiting_job_whose_priority_changes_moves_to_its_new_place(env):
    make, db, tmp_path = env
    ferry, publisher = make(window=1)
    first = submit(ferry, tmp_path)
    normal = submit(ferry, tmp_path)
    low = submit(ferry, tmp_path, priority="low")
    assert ferry.set_priority(low, "high")
    assert ferry.set_batch_priority  # (per batch: the same move, tests/unit/test_priority.py)
    assert release_all(ferry, publisher, db, taken(db)) == [first, low, normal]


def test_a_started_job_s_next_step_is_published_at_once_behind_no_waiting_job(env):
    """Finish what was begun: the step's end publishes the next step itself; the jobs waiting in
    the ready sets do not hold it back."""
    make, db, tmp_path = env
    ferry, _ = make(window=1)
    started = submit(ferry, tmp_path)
    waiting = [submit(ferry, tmp_path) for _ in range(3)]
    assert taken(db) == [started] and ferry.store.ready_count(["acme"]) == {"acme": 3}
    jobs.start_step(ferry.store, started, "get_credentials")
    publisher = queue.StepPublisher(ferry.celery, ferry.config, ferry.location)
    then = publisher.outgoing(started, "acme", "upload")
    assert ferry.store.finish_step(started, "get_credentials", {}, then=then)
    assert messages(db) == [("ferry.step.upload", started)]
    assert ferry.store.ready_count(["acme"]) == {"acme": 3} and all(
        ferry.status(j).status == JobStatus.QUEUED for j in waiting)


def test_a_connection_without_limits_still_puts_a_high_job_before_a_migration(module_db, tmp_path):
    """Issue 25's first case on a connection with neither rate_limit nor max_in_flight: its
    window is 512 jobs, so a high job submitted behind a bigger migration waits for the run only."""
    (tmp_path / "doc.pdf").write_bytes(PDF)
    with contextlib.closing(jobs.producer(module_db[0], tmp_path)) as ferry:
        assert ferry.config.window_of("acme") == 512
        migration = [o[0].id for o in ferry.submit_many([JobRequest(  # type: ignore[union-attr]
            kind="assets-attachment", connection="acme", file=str(tmp_path / "doc.pdf"),
            params={"object": "88"}) for _ in range(520)])]
        high = submit(ferry, tmp_path, priority="high")
        assert taken(module_db[1]) == migration[:512]
        assert ferry.store.ready_count(["acme"]) == {"acme": 9}
        publisher = queue.StepPublisher(ferry.celery, ferry.config, module_db[0])
        end(ferry, migration[0])
        dispatch.top_up(ferry.store, publisher, ferry.config, "acme")
        assert taken(module_db[1]) == [high]
        for job_id in migration[1:9]:
            end(ferry, job_id)
        dispatch.top_up(ferry.store, publisher, ferry.config, "acme")
        assert taken(module_db[1]) == migration[512:]


def test_the_window_defaults_to_half_a_second_of_the_rate_limit_or_twice_max_in_flight_else_512():
    base = {"service": "atlassian", "site_url": "https://a.example", "api_url": "https://b.example",
            "email": "a@b.c", "token_env": "X"}
    config = parse_config({"connections": {"fast": {**base, "rate_limit": 20}, "slow": {**base, "rate_limit": 1},
                                            "capped": {**base, "max_in_flight": 3}, "open": base}})
    assert [config.window_of(n) for n in ("fast", "slow", "capped", "open")] == [10, 4, 6, 512]
    assert config.window_of("not configured") is None
    assert parse_config({"scheduling": {"window": 7}}).window_of("anything") == 7


def test_a_typo_in_the_scheduling_table_is_refused():
    from producers.errors import ConfigError

    with pytest.raises(ConfigError, match="windw"):
        parse_config({"scheduling": {"windw": 3}})
    with pytest.raises(ConfigError, match="aging_seconds"):
        parse_config({"scheduling": {"aging_seconds": 0}})


def test_scheduled_jobs_released_onto_a_full_run_wait_their_turn(env):
    """A mass of jobs due at once does not fill the broker: past the window they join the ready
    sets, and a high job waiting there goes first."""
    from producers.records import utc_at
    from worker import schedule

    make, db, tmp_path = env
    ferry, publisher = make(window=1)
    first = submit(ferry, tmp_path)
    at = time.time() + 3600
    later = [submit(ferry, tmp_path, priority="low", not_before=utc_at(at)) for _ in range(2)]
    high = submit(ferry, tmp_path, priority="high")
    assert taken(db) == [first]
    assert schedule.release(ferry.store, publisher, now=at + 1) == 2
    assert messages(db) == [] and ferry.store.ready_count(["acme"]) == {"acme": 3}
    assert {ferry.status(j).status for j in later} == {JobStatus.QUEUED}
    order = release_all(ferry, publisher, db, [first])
    assert order[:2] == [first, high] and sorted(order[2:]) == sorted(later)  # same time: either first


def test_a_scheduled_job_released_onto_a_full_run_takes_its_own_tenant_s_turn(env):
    """Released behind its own tenant's backlog, it waits behind that backlog (another tenant's,
    or none, would go ahead of it)."""
    from producers.records import utc_at
    from worker import schedule

    make, db, tmp_path = env
    ferry, publisher = make(window=1)
    at = time.time() + 3600
    later = submit(ferry, tmp_path, tenant="a", not_before=utc_at(at))
    backlog = [submit(ferry, tmp_path, tenant="a") for _ in range(6)]
    assert schedule.release(ferry.store, publisher, now=at + 1) == 1
    assert release_all(ferry, publisher, db, taken(db)) == [*backlog, later]
