"""Which running jobs the reaper revives: only those whose worker is gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import fakeredis

from producers import keys
from producers.config import FerryConfig
from producers.embedded import RedisLocation
from producers.queue import StepPublisher, make_celery
from producers.records import FileInfo, JobRecord, JobStatus, StepError, StepRecord, StepStatus
from producers.store import JobStore
from tests import jobs
from worker.recovery import RETRY_GRACE, lease_seconds, orphaned_step, reap, stall_grace, stalled_step

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def iso(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def job(*steps: StepRecord, quiet_for: float) -> JobRecord:
    return JobRecord(id="j1", kind="assets-attachment", connection="acme", status=JobStatus.RUNNING,
                     created_at=iso(600), updated_at=iso(quiet_for), steps=list(steps))


NO_LEASE = 0.0


def done(name: str) -> StepRecord:
    return StepRecord(name=name, status=StepStatus.SUCCEEDED, attempts=1)


def test_a_running_step_without_a_lease_is_orphaned_once_quiet_for_a_lease():
    running = StepRecord(name="media_upload", status=StepStatus.RUNNING, attempts=1)
    assert orphaned_step(job(done("get_credentials"), running, quiet_for=lease_seconds() + 1), NO_LEASE, NOW) \
        == "media_upload"
    assert orphaned_step(job(done("get_credentials"), running, quiet_for=1), NO_LEASE, NOW) is None


def test_a_held_lease_means_a_live_worker():
    running = StepRecord(name="media_upload", status=StepStatus.RUNNING, attempts=1)
    lease_until = (NOW + timedelta(seconds=20)).timestamp()
    assert orphaned_step(job(running, quiet_for=3600), lease_until, NOW) is None
    lapsed = (NOW - timedelta(seconds=1)).timestamp()
    assert orphaned_step(job(running, quiet_for=3600), lapsed, NOW) == "media_upload"


def test_an_overdue_retry_is_orphaned_a_pending_one_is_not():
    overdue = StepRecord(name="get_credentials", status=StepStatus.RETRYING, attempts=1,
                         next_attempt_at=iso(RETRY_GRACE + 5))
    waiting = overdue.model_copy(update={"next_attempt_at": iso(-30)})
    assert orphaned_step(job(overdue, quiet_for=3600), NO_LEASE, NOW) == "get_credentials"
    assert orphaned_step(job(waiting, quiet_for=3600), NO_LEASE, NOW) is None


def test_a_job_between_steps_is_taken_for_a_backlog_not_an_orphan():
    steps = (done("get_credentials"), done("media_upload"), StepRecord(name="link_attachment"))
    assert orphaned_step(job(*steps, quiet_for=3600), NO_LEASE, NOW) is None


def test_jobs_that_are_not_running_are_left_alone():
    queued = job(StepRecord(name="get_credentials"), quiet_for=3600).model_copy(update={"status": JobStatus.QUEUED})
    assert orphaned_step(queued, NO_LEASE, NOW) is None


# ---- a message lost between Redis and a worker (BRPOP's reply cut off by a Redis crash) -----------
def between_steps(quiet_for: float) -> JobRecord:
    return job(done("get_credentials"), StepRecord(name="media_upload"), StepRecord(name="link_attachment"),
               quiet_for=quiet_for)


def test_a_quiet_job_between_steps_with_an_empty_queue_lost_its_message():
    assert stalled_step(between_steps(stall_grace() + 1), NO_LEASE, NOW, queue_empty=True) == "media_upload"
    queued = job(StepRecord(name="get_credentials"), quiet_for=stall_grace() + 1)
    queued = queued.model_copy(update={"status": JobStatus.QUEUED})
    assert stalled_step(queued, NO_LEASE, NOW, queue_empty=True) == "get_credentials"


def test_a_job_waiting_behind_a_backlog_or_just_recorded_is_not_stalled():
    assert stalled_step(between_steps(stall_grace() + 1), NO_LEASE, NOW, queue_empty=False) is None
    assert stalled_step(between_steps(1), NO_LEASE, NOW, queue_empty=True) is None
    held = (NOW + timedelta(seconds=20)).timestamp()
    assert stalled_step(between_steps(stall_grace() + 1), held, NOW, queue_empty=True) is None
    retrying = StepRecord(name="get_credentials", status=StepStatus.RETRYING, attempts=1, next_attempt_at=iso(-30))
    assert stalled_step(job(retrying, quiet_for=3600), NO_LEASE, NOW, queue_empty=True) is None


# ---- steps parked on a paused connection have no message on purpose --------------------------------
def test_steps_parked_on_a_paused_connection_are_not_revived_by_the_reaper(monkeypatch):
    """A parked step looks orphaned (its retry overdue) or stalled (pending, queue empty); it once
    got a new message every ``REVIVE_WINDOW``, which parked it again."""
    monkeypatch.delenv("FERRY_BROKER_URL", raising=False)
    config, location = FerryConfig(), RedisLocation(url="redis://unused", broker_url="memory://")
    app = make_celery(location, config)
    store = JobStore(fakeredis.FakeRedis(decode_responses=True))
    steps = ["get_credentials", "media_upload", "link_attachment"]

    def quiet_job(connection: str) -> str:
        record, _ = jobs.create(store, kind="assets-attachment", connection=connection, steps=steps,
                                 params={"object": "88"}, file=FileInfo(path="/tmp/a.pdf", name="a.pdf"))
        return record.id

    parked_retry = quiet_job("acme")  # met the pause mid-step: a retry, then parked when it came back
    jobs.start_step(store, parked_retry, "get_credentials")
    store.pause_connection("acme", "ops")
    store.retry_step(parked_retry, "get_credentials", error=StepError(step="get_credentials", message="paused"),
                     delay=-2 * RETRY_GRACE)
    parked_first = quiet_job("acme")
    assert store.begin_step(parked_first, "get_credentials").outcome == "parked"
    assert store.begin_step(parked_retry, "get_credentials").outcome == "parked"
    lost_message = quiet_job("acme")  # on the paused connection, but never parked: revived (and parks)
    elsewhere = quiet_job("awork")
    for job_id in (parked_first, parked_retry, lost_message, elsewhere):
        store.redis.hset(keys.job(job_id), "updated_at", iso(stall_grace() + 60))

    revived = reap(app, store, StepPublisher(app, config, location))

    assert sorted(revived) == sorted([lost_message, elsewhere])
