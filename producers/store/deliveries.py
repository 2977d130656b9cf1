"""Webhook deliveries (``producers.notifications``, ``worker.notify``).

A delivery is a field of the job's hash (its record, shown with the job; ``codec.NOTIFY``) and
a member ``"<job> <id>"`` of ``keys.notify_due()`` scored by when to try it. The transition
that ends a run writes both in its own call, so a job never ends without its delivery being
due; the worker's dispatcher claims due members and publishes ``ferry.notify``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from producers import events, keys
from producers.errors import BatchNotFound, NotifyRefused
from producers.records import BatchRecord, DeliveryRecord, DeliveryStatus, JobRecord, JobStatus, utcnow
from producers.store import codec
from producers.store.core import BATCH_OWNER, StoreCore, batch_due_member
from producers.store.types import DueDelivery, JobState


def new_delivery(event: str, run: int, trigger: str) -> DeliveryRecord:
    now = utcnow()
    return DeliveryRecord(id=uuid.uuid4().hex, event=event, run=run, trigger=trigger,
                          created_at=now, next_attempt_at=now)


def due_member(job_id: str, delivery_id: str) -> str:
    return f"{job_id} {delivery_id}"


def split_due(member: str) -> tuple[str, str]:
    job_id, _, delivery_id = member.partition(" ")
    return job_id, delivery_id


def add_delivery(pipe: Any, job_id: str, event: str, run: int, trigger: str) -> DeliveryRecord:
    """A new delivery of ``event``, due now, written in the caller's MULTI."""
    delivery = new_delivery(event, run, trigger)
    pipe.hset(keys.job(job_id), codec.delivery_field(delivery.id), delivery.model_dump_json())
    pipe.zadd(keys.notify_due(), {due_member(job_id, delivery.id): time.time()})
    return delivery


def delivery_commands(state: JobState, event: str) -> list[list[Any]]:
    """The commands that make a run's ending ``event`` due for delivery (none without a
    callback URL), for a script to run with the transition's own writes."""
    if not state.meta.get("callback_url"):
        return []
    record = new_delivery(event, state.run_number, "end")
    return [["HSET", keys.job(state.job_id), codec.delivery_field(record.id), record.model_dump_json()],
            ["ZADD", keys.notify_due(), repr(time.time()), due_member(state.job_id, record.id)]]


def _batch_owner(owner: str) -> str | None:
    """The batch a due member's owner names (None: a job)."""
    return owner.removeprefix(BATCH_OWNER) if owner.startswith(BATCH_OWNER) else None


def _owner_key(owner: str) -> str:
    """The hash a delivery of ``owner`` (a job id, or ``batch:<id>``) is kept in."""
    batch_id = _batch_owner(owner)
    return keys.job(owner) if batch_id is None else keys.batch(batch_id)


def _find(record: JobRecord | BatchRecord | None, delivery_id: str) -> DeliveryRecord | None:
    return next((d for d in record.notifications if d.id == delivery_id), None) if record else None


class Deliveries(StoreCore):
    def redeliver(self, job_id: str) -> DeliveryRecord:
        """Deliver the ended job's webhook again (a new delivery id), due now."""
        record = self.get(job_id)
        event = {JobStatus.SUCCEEDED: events.SUCCEEDED, JobStatus.FAILED: events.FAILED,
                 JobStatus.CANCELLED: events.CANCELLED}.get(record.status)
        if not record.callback_url:
            raise NotifyRefused(f"job {job_id} has no callback_url")
        if event is None:
            raise NotifyRefused(f"job {job_id} is {record.status.value}; it is notified when it ends")
        with self.redis.pipeline() as pipe:
            delivery = add_delivery(pipe, job_id, event, len(record.runs) or 1, "redeliver")
            pipe.execute()
        return delivery

    def redeliver_batch(self, batch_id: str) -> DeliveryRecord:
        """Deliver the completed batch's webhook again (its last completion; a new delivery id),
        due now, kept with its other deliveries in the batch's record."""
        record = self._find_batch_record(batch_id)
        if record is None:
            raise BatchNotFound(batch_id)
        if not record.callback_url:
            raise NotifyRefused(f"batch {batch_id} has no callback_url")
        if not record.done:
            raise NotifyRefused(f"batch {batch_id} is not complete; it is told when it completes")
        delivery = new_delivery(events.BATCH_COMPLETED, max(record.completions, 1), "redeliver")
        member = batch_due_member(batch_id, delivery.id)
        if not self._scripts.save_delivery(keys.batch(batch_id), delivery.id, delivery.model_dump_json(), member,
                                           repr(time.time())):
            self.redis.zrem(keys.notify_due(), member)  # expired meanwhile: nothing to deliver
            raise BatchNotFound(batch_id)
        return delivery

    def claim_due_deliveries(self, lease_seconds: float, limit: int = 100) -> list[DueDelivery]:
        """Up to ``limit`` deliveries due now, each rescheduled to ``lease_seconds`` from now in
        the same script: of several dispatchers one claims it, and a claim whose message is lost
        comes due again. A claim's ``token`` (its new score) lets ``begin_delivery`` tell the
        current claim's message from a stale copy."""
        now = time.time()
        until = now + lease_seconds
        return [DueDelivery(*split_due(m), repr(until)) for m in self._scripts.claim_due(now, until, limit)]

    def begin_delivery(self, due: DueDelivery,
                       lease_seconds: float) -> tuple[JobRecord | BatchRecord, DeliveryRecord] | None:
        """Start the next attempt of a claimed delivery: the job (or batch: its ``job_id`` is
        ``batch:<id>``) and the delivery, now delivering and leased for ``lease_seconds``; or
        None when there is nothing to do (a stale claim, the owner is gone, or the delivery has
        ended)."""
        member = due_member(due.job_id, due.delivery_id)
        if not self._scripts.take_claim(member, due.token, time.time() + lease_seconds):
            return None
        batch_id = _batch_owner(due.job_id)
        record: JobRecord | BatchRecord | None = (self.find(due.job_id) if batch_id is None else
                                                  self._find_batch_record(batch_id))
        delivery = _find(record, due.delivery_id)
        if record is None or delivery is None or not delivery.open:
            self.redis.zrem(keys.notify_due(), member)
            return None
        delivery.attempts += 1
        delivery.status = DeliveryStatus.DELIVERING
        delivery.last_attempt_at, delivery.next_attempt_at = utcnow(), None
        self._scripts.save_delivery(_owner_key(due.job_id), delivery.id, delivery.model_dump_json(), member, "")
        return record, delivery

    def _find_batch_record(self, batch_id: str) -> BatchRecord | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.batch(batch_id)))
        return codec.decode_batch(raw, batch_id) if raw else None

    def end_delivery_attempt(self, job_id: str, delivery: DeliveryRecord, retry_at: float | None) -> None:
        """Record how an attempt ended; ``retry_at`` (epoch seconds): when to try again, or None
        when the delivery is over. A job deleted meanwhile is not brought back."""
        self._scripts.save_delivery(_owner_key(job_id), delivery.id, delivery.model_dump_json(),
                                    due_member(job_id, delivery.id), "done" if retry_at is None else repr(retry_at))

    def delivery_body(self, delivery_id: str, body: bytes, ttl_seconds: int) -> bytes:
        """The body of a delivery: ``body`` if this is its first attempt, else the body the first
        attempt sent (every retry sends the same bytes)."""
        key = keys.notify_body(delivery_id)
        self.redis.set(key, body.decode(), nx=True, ex=max(1, ttl_seconds))
        stored = self.redis.get(key)
        return str(stored).encode() if stored is not None else body

    def due_deliveries(self) -> int:
        return int(self.redis.zcard(keys.notify_due()))
