"""An operator's controls through the Python API: cancel jobs, pause and resume a connection,
the connections' and workers' state. Each action logs one audit line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from producers import queue
from producers.audit import audit
from producers.client_core import ClientCore
from producers.config import ConnectionConfig
from producers.errors import JobNotFound
from producers.kinds import get_kind
from producers.priority import check_priority
from producers.records import JobRecord, JobStatus, StepStatus
from producers.store import FINISHED_ALREADY, CancelOutcome, ConnectionState, Filters

READY_SECONDS = 30.0  # a worker whose last heartbeat is older is not counted as alive


class Controls(ClientCore):
    # ---- operator controls -----------------------------------------------------------------
    def cancel(self, job_id: str, *, by: str = "python") -> CancelOutcome:
        """Stop one job (``JobStore.cancel``): cancelled now, after the step running now
        (``cancelling``), or ``finished`` already. Raises JobNotFound. Logs an audit line."""
        outcome = self.store.cancel(job_id, by)
        audit("cancel", by, target=job_id, jobs=int(outcome.outcome != FINISHED_ALREADY),
              outcome=outcome.outcome)
        return outcome

    def cancel_many(self, filters: Filters, *, ids: Sequence[str] | None = None, by: str = "python",
                    dry_run: bool = False, limit: int | None = None) -> CancelSummary:
        """Cancel ``ids``, or every job matching ``filters`` (``dry_run``: only count them)."""
        target: dict[str, Any] = filters.as_query() if ids is None else {"ids": len(ids)}
        ids = self.store.select(filters, limit=limit).ids if ids is None else list(ids)
        summary = CancelSummary(matched=len(ids), dry_run=dry_run, filters=target)
        if dry_run:
            return summary
        for job_id in ids:
            try:
                summary.add(self.store.cancel(job_id, by).outcome)
            except JobNotFound:
                summary.add(FINISHED_ALREADY)  # purged or expired meanwhile: nothing to stop
        audit("cancel", by, target=target, jobs=summary.cancelled + summary.cancelling,
              matched=summary.matched)
        return summary

    def set_priority(self, job_id: str, priority: str, *, by: str = "python") -> bool:
        """Give a waiting (queued or scheduled) job ``priority``: False when it no longer waits.
        Raises JobNotFound, or ValueError for an unknown priority. Logs an audit line."""
        changed = self.store.set_priority(job_id, check_priority(priority))
        audit("priority", by, target=job_id, jobs=int(changed), priority=priority)
        return changed

    def set_batch_priority(self, batch_id: str, priority: str, *, by: str = "python") -> int:
        """Give each waiting job of the batch ``priority``; how many wait with it now. Raises
        BatchNotFound, or ValueError for an unknown priority. Logs an audit line."""
        changed = self.store.set_batch_priority(batch_id, check_priority(priority))
        audit("priority", by, target={"batch": batch_id}, jobs=changed, priority=priority)
        return changed

    def pause(self, connection: str, *, by: str = "python") -> bool:
        """Hold every request on ``connection`` (its steps park; no attempt is spent) until
        ``resume``; survives worker restarts. False if it was paused already."""
        self.config.connection(connection)  # ConfigError for a name ferry.toml does not know
        changed = self.store.pause_connection(connection, by)
        audit("pause", by, target=connection, jobs=0, changed=changed)
        return changed

    def resume(self, connection: str, *, by: str = "python") -> ResumeOutcome:
        """Lift the pause and re-publish the steps parked meanwhile, each from where it stopped."""
        self.config.connection(connection)
        was_paused, parked = self.store.resume_connection(connection)
        republished = 0
        for i, (job_id, step) in enumerate(parked):
            record = self.store.find(job_id)
            if record is None or record.done:
                continue  # purged, or cancelled while it waited
            try:
                queue.enqueue(self.celery, job_id, get_kind(record.kind), step)
            except Exception:
                self.store.park_again(connection, parked[i:])  # the next resume tries again
                raise
            republished += 1
        audit("resume", by, target=connection, jobs=republished, changed=was_paused)
        return ResumeOutcome(connection, was_paused, republished)

    def connections(self) -> list[dict[str, Any]]:
        """Each configured connection: service, queue, limits, pause, 429 pause, parked steps,
        jobs queued / running / failed, and its window with the jobs waiting in it by priority."""
        names = sorted(self.config.connections)
        states = self.store.connection_states(names)
        views = [_connection_view(self.config.connection(n), states[n]) for n in names]
        for view in views:  # jobs held in Ferry's ready sets, by priority (docs/architecture.md)
            window = self.config.window_of(view["name"])
            view["window"] = window
            view["ready"] = self.store.ready_waits(view["name"]) if window is not None else None
        return views

    def workers(self) -> list[dict[str, Any]]:
        """The live workers (fresh heartbeats), with the steps they run now."""
        return self.store.workers()

    def readiness(self, fresh_seconds: float = READY_SECONDS) -> tuple[bool, str]:
        """Whether some worker beat within ``fresh_seconds``, and why not."""
        workers = [w for w in self.store.workers() if not w.get("parent")]
        if not workers:
            return False, "no worker has sent a heartbeat: start one (ferry worker)"
        newest = min(_age(w.get("last_heartbeat")) for w in workers)
        if newest > fresh_seconds:
            return False, f"no fresh worker heartbeat: the newest is {newest:.0f} s old"
        return True, f"{len(workers)} worker(s) alive"

    def why_waiting(self, record: JobRecord) -> list[str]:
        """Why a job that has not ended is not moving now, one sentence each (none: it moves, or
        it ended): its connection paused, or asked by the destination to wait; a step retrying
        later; no live worker, or none serving its queue."""
        if record.done:
            return []
        reasons = self._connection_holds(record.connection)
        for step in record.steps:
            if step.status == StepStatus.RETRYING and step.next_attempt_at:
                last = step.history[-1] if step.history else None
                after = ""
                if last is not None and last.message:
                    after = f" after {'HTTP ' + str(last.http_status) + ': ' if last.http_status else ''}{last.message}"
                reasons.append(f"step {step.name} is retrying at {step.next_attempt_at} "
                               f"(in {max(0.0, -_age(step.next_attempt_at)):.0f} s){after}")
        if record.status == JobStatus.QUEUED and self.config.window_of(record.connection) is not None \
                and self.store.held(record.id, record.connection, record.priority):
            reasons.append(f"it waits its turn in Ferry's store ({record.priority} priority): connection "
                           f"{record.connection} has {self.config.window_of(record.connection)} jobs in its run "
                           f"([scheduling] window); the next to end makes room")
        return reasons + self._missing_worker(record.connection)

    def _connection_holds(self, name: str) -> list[str]:
        """The connection's pause (and by whom), and the destination's 429 pause."""
        if name not in self.config.connections:
            return []
        view = _connection_view(self.config.connection(name), self.store.connection_states([name])[name])
        holds = []
        if view["paused"]:
            holds.append(f"connection {name} is paused (by {view['paused_by']} at {view['paused_at']}): "
                         f"ferry resume {name}")
        if view["throttled_until"] and _age(view["throttled_until"]) < 0:
            holds.append(f"the destination asked connection {name} to wait until {view['throttled_until']} "
                         "(HTTP 429)")
        return holds

    def _missing_worker(self, connection: str) -> list[str]:
        live = [w for w in self.workers() if not w.get("parent")]
        if not live:
            return ["no worker is alive (none sent a heartbeat in the last 30 s): start one (ferry worker)"]
        wanted = queue.queue_for_connection(self.config, connection)
        served = {q for w in live for q in w.get("queues") or []}
        if served and wanted not in served:
            return [f"no live worker serves queue {wanted} (they serve {', '.join(sorted(served))})"]
        return []


@dataclass
class CancelSummary:
    matched: int
    dry_run: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    cancelled: int = 0
    cancelling: int = 0  # a step ran: cancelled once it ends
    finished: int = 0  # had ended already

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResumeOutcome:
    connection: str
    was_paused: bool
    republished: int  # parked steps sent on their way again

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _connection_view(conn: ConnectionConfig, state: ConnectionState) -> dict[str, Any]:
    return {"name": state.name, "service": conn.service, "queue": queue.queue_of(conn),
            "paused": state.paused is not None,
            "paused_by": (state.paused or {}).get("by"), "paused_at": (state.paused or {}).get("at"),
            "rate_limit": conn.rate_limit, "max_in_flight": conn.max_in_flight,
            "throttled_until": state.throttled_until, "parked": state.parked, "jobs": state.jobs}


def _age(at: str | None) -> float:
    if not at:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(at.replace("Z", "+00:00"))).total_seconds()
