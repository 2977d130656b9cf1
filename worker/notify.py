"""Delivering completion webhooks: the dispatcher that publishes due deliveries, and the Celery
task ``ferry.notify`` that makes one attempt.

Never part of an upload's chain: the transition that ends a run writes the delivery (due now)
in its own MULTI (``JobStore._queue_delivery``), so a worker that dies right after a job ends
loses nothing, and a receiver that is down cannot delay or fail the job, which has already ended.

- The dispatcher (a thread in every worker process, like the reaper) claims due deliveries every
  ``POLL_SECONDS`` (``JobStore.claim_due_deliveries``: a claim is a lease, so a message lost with
  its worker comes due again) and publishes ``ferry.notify`` to the default queue, whatever the
  job's connection's queue.
- The task starts the attempt (``begin_delivery``: a stale or duplicated message does nothing),
  checks the URL again and resolves it (no DNS rebinding: it connects to an address it has just
  checked), POSTs the signed body without following redirects, and records the outcome: delivered
  (2xx), retried later (connect errors, timeouts, 408, 429, 5xx; the receiver's Retry-After if it
  names a longer delay than the backoff) while inside ``[notifications] retry_window_seconds``, or
  failed (any other answer).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

import certifi
import urllib3
from celery import Celery

from producers import notifications
from producers.config import NotificationsConfig
from producers.records import BatchRecord, DeliveryRecord, DeliveryStatus, JobRecord, utc_in, utcnow
from producers.store import DueDelivery, JobStore
from worker import metrics
from worker.log import get_logger, redact_text
from worker.retry import backoff_delay, server_retry_delay
from worker.runtime import runtime

TASK_NAME = "ferry.notify"
POLL_SECONDS = 0.5
PUBLISH_LEASE = 120.0  # a claimed delivery whose message has not started by then is published again
RETRY_STATUSES = frozenset({408, 429})
MAX_ANSWER_BYTES = 2048  # of the receiver's answer, read (and dropped) so the connection ends cleanly


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: the receiver's status (None: no answer), what went wrong, whether
    another attempt may help, and the delay the receiver asked for."""

    status: int | None = None
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def classify(status: int, headers: dict[str, str], location: str | None = None) -> Outcome:
    if 200 <= status < 300:
        return Outcome(status)
    if status in RETRY_STATUSES or status >= 500:
        retry_after = headers.get("retry-after")
        delay = server_retry_delay({"Retry-After": retry_after}) if retry_after else None
        return Outcome(status, f"HTTP {status}", retry=True, retry_after=delay)
    if 300 <= status < 400:
        return Outcome(status, f"HTTP {status}: redirects are not followed (to {location or '?'})")
    return Outcome(status, f"HTTP {status}: refused by the receiver")


# ---- one attempt ------------------------------------------------------------------------------------
def post(url: str, raw_body: bytes, event: str, delivery_id: str, config: NotificationsConfig) -> Outcome:
    """Check ``url`` again, sign ``raw_body`` now, and POST it to a checked address."""
    try:
        target = notifications.check_url(url, config)
    except notifications.Unresolvable as exc:
        return Outcome(error=str(exc), retry=True)
    except notifications.CallbackRefused as exc:
        return Outcome(error=f"callback_url refused at delivery: {exc}")
    secret = notifications.secret(config)
    if secret is None:  # the operator may still set it: keep trying within the window
        return Outcome(error=f"no webhook secret: ${config.secret_env} is not set on the worker", retry=True)
    signature = notifications.sign(secret, int(time.time()), raw_body)
    headers = {**notifications.headers(event, delivery_id, signature), "Host": target.host_header}
    last = Outcome(error="no address to connect to", retry=True)
    for address in target.addresses:
        last = _post_to(address, target, raw_body, headers, config.timeout_seconds)
        if last.status is not None or not last.retry:
            break  # an answer; only connection failures try the next address
    return last


def _post_to(address: str, target: notifications.Target, raw_body: bytes, headers: dict[str, str],
             timeout: float) -> Outcome:
    pool = _pool(address, target, timeout)
    try:
        response = pool.urlopen("POST", target.path, body=raw_body, headers=headers, redirect=False,
                                retries=False, preload_content=False, assert_same_host=False)
    except urllib3.exceptions.HTTPError as exc:
        return Outcome(error=redact_text(f"{type(exc).__name__}: {exc}"), retry=True)
    finally:
        pool.close()
    try:
        response.read(MAX_ANSWER_BYTES)
    except urllib3.exceptions.HTTPError:
        pass  # the status is what counts
    finally:
        response.release_conn()
    answer = {k.lower(): v for k, v in response.headers.items()}
    return classify(response.status, answer, answer.get("location"))


def _pool(address: str, target: notifications.Target, timeout: float) -> urllib3.HTTPConnectionPool:
    limits = urllib3.Timeout(connect=min(timeout, 10.0), read=timeout)
    if target.scheme == "https":
        # Connect to the checked address; verify the certificate against the URL's host (SNI too).
        return urllib3.HTTPSConnectionPool(address, target.port, timeout=limits, retries=False, maxsize=1,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    return urllib3.HTTPConnectionPool(address, target.port, timeout=limits, retries=False, maxsize=1)


# ---- scheduling -------------------------------------------------------------------------------------
def next_attempt(delivery: DeliveryRecord, outcome: Outcome, config: NotificationsConfig,
                 now: float | None = None) -> float | None:
    """When to try again (epoch seconds), or None: delivered, refused, or past the window."""
    if outcome.delivered or not outcome.retry:
        return None
    now = time.time() if now is None else now
    delay = max(backoff_delay(delivery.attempts, base=config.backoff_seconds, cap=config.max_backoff_seconds),
                outcome.retry_after or 0.0)
    deadline = _epoch(delivery.created_at) + config.retry_window_seconds
    return now + delay if now + delay <= deadline else None


def settle(delivery: DeliveryRecord, outcome: Outcome, retry_at: float | None) -> DeliveryRecord:
    """The delivery as this attempt leaves it."""
    delivery.last_status, delivery.last_error = outcome.status, outcome.error
    delivery.next_attempt_at = None
    if outcome.delivered:
        delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, utcnow()
    elif retry_at is not None:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.RETRYING, utc_in(retry_at - time.time())
    else:
        delivery.status = DeliveryStatus.FAILED
        if outcome.retry:
            delivery.last_error = f"{outcome.error}; gave up: the retry window ended"
    return delivery


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ---- the task and the dispatcher --------------------------------------------------------------------
def attempt_lease(config: NotificationsConfig) -> float:
    """How long an attempt holds its delivery: longer than the longest POST (every address)."""
    return 4 * (config.timeout_seconds + 10.0) + 30.0


def deliver(job_id: str, delivery_id: str, token: str) -> None:
    """The task ``ferry.notify``: one attempt at a claimed delivery."""
    rt = runtime()
    config = rt.config.notifications
    begun = rt.store.begin_delivery(DueDelivery(job_id, delivery_id, token), attempt_lease(config))
    if begun is None:
        return
    job, delivery = begun
    log = get_logger(job_id=job_id, delivery=delivery_id, attempt=delivery.attempts)
    outcome = _attempt(rt.store, job, delivery, config)
    retry_at = next_attempt(delivery, outcome, config)
    rt.store.end_delivery_attempt(job_id, settle(delivery, outcome, retry_at), retry_at)
    metrics.webhook_attempt(delivery.status.value)
    # The delivery's event goes as ``webhook_event``: ``event`` is the log line's own message.
    log.info("webhook delivery", webhook_event=delivery.event, delivery_status=delivery.status.value,
             http_status=outcome.status, error=outcome.error)


def _attempt(store: JobStore, owner: JobRecord | BatchRecord, delivery: DeliveryRecord,
             config: NotificationsConfig) -> Outcome:
    if not owner.callback_url:
        return Outcome(error="no callback_url")
    body = (notifications.batch_body(delivery.event, delivery.id, delivery.created_at, owner)
            if isinstance(owner, BatchRecord) else
            notifications.body(delivery.event, delivery.id, delivery.created_at, owner))
    raw = store.delivery_body(delivery.id, body, config.retry_window_seconds + 3600)
    return post(owner.callback_url, raw, delivery.event, delivery.id, config)


def register_notify(app: Celery) -> None:
    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(deliver)


def dispatch(app: Celery, store: JobStore) -> int:
    """Publish every due delivery once; how many."""
    claimed = store.claim_due_deliveries(PUBLISH_LEASE)
    for due in claimed:
        app.send_task(TASK_NAME, args=(due.job_id, due.delivery_id, due.token))
    return len(claimed)


def start_dispatcher(app: Celery, store: JobStore) -> threading.Thread:
    def loop() -> None:
        while True:
            try:
                if dispatch(app, store) == 0:
                    time.sleep(POLL_SECONDS)
            except Exception:  # never let it kill the worker; claims lapse and come due again
                get_logger().exception("webhook dispatch round failed")
                time.sleep(POLL_SECONDS)

    thread = threading.Thread(target=loop, name="ferry-notify-dispatcher", daemon=True)
    thread.start()
    return thread
