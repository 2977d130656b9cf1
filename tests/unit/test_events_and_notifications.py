"""The event stream and the webhook bookkeeping, over fakeredis: what each transition appends,
which job ends owe a delivery, how a claimed delivery is taken exactly once, which callback URLs
are refused, and when a failed attempt is tried again."""

from __future__ import annotations

import time

import fakeredis
import pytest

from producers import events
from producers.config import NotificationsConfig
from producers.errors import NotifyRefused
from producers.notifications import CallbackRefused, check_url, sign
from producers.records import DeliveryRecord, DeliveryStatus, StepError, utc_in
from producers.store import JobStore, Lease
from tests import jobs
from worker.notify import Outcome, classify, next_attempt, settle

HOOK = "https://hooks.example.com/ferry?tenant=7"


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True))


def new_job(store: JobStore, callback_url: str | None = None) -> str:
    record, _ = jobs.create(store, kind="awork-image", connection="awork", steps=["upload"], params={},
                             file=None, callback_url=callback_url)
    return record.id


def all_events(store: JobStore, job_id: str) -> list[events.Event]:
    return events.read(store.redis, events.START, events.EventFilters(job=job_id)).events


def test_every_transition_appends_its_event_in_order(store: JobStore) -> None:
    job = new_job(store)
    jobs.start_step(store, job, "upload")
    store.retry_step(job, "upload", StepError(step="upload", status=503, message="busy", retryable=True), 2.5)
    jobs.start_step(store, job, "upload")
    store.finish_step(job, "upload", {"id": "1"}, job_result={"id": "1"})
    store.begin_run(job, trigger="cli", from_step="upload")

    seen = all_events(store, job)

    assert [e.type for e in seen] == ["job.queued", "step.started", "step.retrying", "step.started",
                                      "step.succeeded", "job.succeeded", "job.replayed"]
    assert [e.data["status"] for e in seen] == ["queued", "running", "running", "running", "running",
                                                "succeeded", "queued"]
    assert seen[2].data["delay"] == 2.5 and seen[2].data["step"] == "upload"
    assert {(e.data["kind"], e.data["connection"]) for e in seen} == {("awork-image", "awork")}
    assert seen[-1].data["run"] == 2


def test_reading_after_an_id_resumes_with_nothing_lost_or_repeated(store: JobStore) -> None:
    jobs = [new_job(store) for _ in range(5)]
    first = events.read(store.redis, events.START, count=2)
    rest = events.read(store.redis, first.position)
    assert [e.data["job"] for e in first.events + rest.events] == jobs
    assert events.read(store.redis, rest.position).events == []


def test_filters_skip_other_jobs_yet_the_position_moves_past_them(store: JobStore) -> None:
    mine, other = new_job(store), new_job(store)
    batch = events.read(store.redis, events.START, events.EventFilters(job=mine))
    assert [e.data["job"] for e in batch.events] == [mine]
    assert batch.position == events.latest_id(store.redis) != events.START
    assert other


def test_a_job_end_owes_a_delivery_only_with_a_callback_url(store: JobStore) -> None:
    plain, hooked = new_job(store), new_job(store, HOOK)
    for job in (plain, hooked):
        store.mark_failed(job, "upload", StepError(step="upload", status=400, message="bad"))

    assert store.get(plain).notifications == []
    [delivery] = store.get(hooked).notifications
    assert (delivery.event, delivery.run, delivery.status) == ("job.failed", 1, DeliveryStatus.PENDING)
    assert store.due_deliveries() == 1


def test_a_worker_ending_the_last_step_ends_the_job_its_events_and_delivery_in_one_call(store: JobStore) -> None:
    job = new_job(store, HOOK)
    lease = Lease.new(60)
    begun = store.begin_step(job, "upload", lease)
    assert store.finish_step(job, "upload", {"id": "1"}, state=begun.state, lease=lease, job_result={"id": "1"})

    assert [(e.type, e.data["status"]) for e in all_events(store, job)] == [
        ("job.queued", "queued"), ("step.started", "running"), ("step.succeeded", "running"),
        ("job.succeeded", "succeeded")]
    [delivery] = store.get(job).notifications
    assert (delivery.event, delivery.status) == ("job.succeeded", DeliveryStatus.PENDING)
    assert store.due_deliveries() == 1


def test_a_transition_whose_lease_was_lost_writes_no_event(store: JobStore) -> None:
    job = new_job(store, HOOK)
    begun = store.begin_step(job, "upload", Lease.new(60))
    assert not store.finish_step(job, "upload", {}, state=begun.state, lease=Lease.new(60), job_result={})
    assert [e.type for e in all_events(store, job)] == ["job.queued", "step.started"]
    assert store.due_deliveries() == 0


def test_a_claimed_delivery_is_taken_once_and_a_stale_message_does_nothing(store: JobStore) -> None:
    job = new_job(store, HOOK)
    jobs.succeed(store, job, {})
    [due] = store.claim_due_deliveries(lease_seconds=60)
    assert store.claim_due_deliveries(lease_seconds=60) == []  # leased: nobody else claims it

    begun = store.begin_delivery(due, lease_seconds=60)
    assert store.begin_delivery(due, lease_seconds=60) is None  # a duplicate of the same message

    assert begun is not None
    record, delivery = begun
    assert record.id == job and delivery.attempts == 1 and delivery.status == DeliveryStatus.DELIVERING
    store.end_delivery_attempt(job, settle(delivery, Outcome(200), None), None)
    assert store.get(job).notifications[0].status == DeliveryStatus.DELIVERED
    assert store.due_deliveries() == 0


def test_redeliver_wants_an_ended_job_with_a_callback(store: JobStore) -> None:
    running, plain = new_job(store, HOOK), new_job(store)
    jobs.succeed(store, plain, {})
    with pytest.raises(NotifyRefused, match="no callback_url"):
        store.redeliver(plain)
    with pytest.raises(NotifyRefused, match="queued"):
        store.redeliver(running)
    jobs.succeed(store, running, {})
    again = store.redeliver(running)
    assert again.trigger == "redeliver" and len(store.get(running).notifications) == 2


# ---- callback URLs ------------------------------------------------------------------------------
def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "169.254.169.254", "::1",
                                     "fd00:ec2::254", "100.100.100.200", "::ffff:127.0.0.1", "0.0.0.0"])
def test_hosts_resolving_to_inner_addresses_are_refused(address: str) -> None:
    with pytest.raises(CallbackRefused, match="allow_private"):
        check_url(HOOK, NotificationsConfig(), resolver("93.184.215.14", address))


def test_allowed_urls_keep_what_delivery_needs() -> None:
    target = check_url("https://hooks.example.com:8443/in?x=1", NotificationsConfig(), resolver("93.184.215.14"))
    assert (target.host, target.port, target.path, target.addresses) == (
        "hooks.example.com", 8443, "/in?x=1", ("93.184.215.14",))
    assert target.host_header == "hooks.example.com:8443"
    local = NotificationsConfig(allow_http=True, allow_private=True)
    assert check_url("http://127.0.0.1:9/x", local, resolver("127.0.0.1")).addresses == ("127.0.0.1",)


@pytest.mark.parametrize(("url", "message"), [
    ("http://hooks.example.com/x", "allow_http"),
    ("ftp://hooks.example.com/x", "https"),
    ("https://user:pw@hooks.example.com/x", "credentials"),
    ("https:///x", "no host"),
])
def test_malformed_or_plain_http_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(CallbackRefused, match=message):
        check_url(url, NotificationsConfig(), resolver("93.184.215.14"))


# ---- attempts -----------------------------------------------------------------------------------
def delivery(attempts: int, created_ago: float = 0.0) -> DeliveryRecord:
    return DeliveryRecord(id="d", event="job.succeeded", run=1, created_at=utc_in(-created_ago), attempts=attempts)


@pytest.mark.parametrize(("status", "retry"), [(200, None), (204, None), (408, True), (429, True), (500, True),
                                               (503, True), (400, False), (404, False), (410, False), (301, False)])
def test_which_answers_are_retried(status: int, retry: bool | None) -> None:
    outcome = classify(status, {})
    assert outcome.delivered == (retry is None)
    assert outcome.retry == bool(retry)


def test_retry_after_is_honoured_and_the_window_ends_it() -> None:
    config = NotificationsConfig(backoff_seconds=1, retry_window_seconds=3600)
    now = time.time()
    throttled = classify(429, {"retry-after": "120"})
    assert next_attempt(delivery(1), throttled, config, now) == pytest.approx(now + 120)
    assert next_attempt(delivery(1, created_ago=3590), throttled, config, now) is None
    assert next_attempt(delivery(1), classify(404, {}), config, now) is None
    gave_up = settle(delivery(9), Outcome(503, "HTTP 503", retry=True), None)
    assert gave_up.status == DeliveryStatus.FAILED and "retry window" in (gave_up.last_error or "")


def test_the_signature_covers_timestamp_and_body() -> None:
    assert sign(b"k", 1700000000, b"{}") != sign(b"k", 1700000001, b"{}") != sign(b"k", 1700000000, b"{ }")
    assert sign(b"k", 1700000000, b"{}").startswith("t=1700000000,v1=")
