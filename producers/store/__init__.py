"""The job store: one Redis hash per job plus sorted-set indexes, the single source of truth.

Layout (keys in ``producers.keys``; the job hash's fields in ``codec``)::

    ferry:job:{id}            hash  the job's record (``codec``)
    ferry:secret:{id}:{step}  string  a step's short-lived secret output; expires with the secret
    ferry:memo:{id}:{step}    string  a step's memo of its first attempt (``memo``)
    ferry:idx:all             zset  every job, scored by creation time (unique score, newest last)
    ferry:idx:status:{s}      zset  the same, one per status (a job sits in exactly one)
    ferry:idx:kind:{k}, ferry:idx:conn:{c}
    ferry:idem:{key}          string  job id for an idempotency key, for the retention window
    ferry:scheduled           zset  the scheduled jobs' ids, scored by their not_before (``schedule``)

One module per concern, each a part of ``JobStore``: ``jobs`` (reads, search, replay, purge),
``transitions`` (begin / settle / lease / outbox), ``create``, ``deliveries`` (webhooks),
``controls`` (cancel, pause, claims), ``workers`` (heartbeats, reapers), ``memo`` (what steps
keep beside the record), ``schedule`` (jobs held until their not_before), ``ready`` (a waiting
job's priority); ``core`` what they
share, ``selection`` the filters over the indexes,
``codec`` the hash's fields, ``types`` the values, ``scripts`` the Lua in ``lua/`` (loaded by
``loader``). Only this package touches the store's Redis.
"""

from __future__ import annotations

from producers.store.archiving import Archiving
from producers.store.batches import Batches
from producers.store.controls import Controls
from producers.store.create import MAX_CHUNK, Creation
from producers.store.deliveries import Deliveries
from producers.store.history import HistoryArchive
from producers.store.jobs import JobReads
from producers.store.memo import Memos
from producers.store.ready import Priorities
from producers.store.schedule import ReleaseMessage, Schedule
from producers.store.selection import Filters, Selection
from producers.store.transitions import Transitions
from producers.store.types import (
    CANCELLED,
    CANCELLING,
    FINISHED_ALREADY,
    PERSIST,
    ArchiveCandidate,
    Begun,
    CancelOutcome,
    ConnectionState,
    Created,
    DueDelivery,
    JobRow,
    JobState,
    Lease,
    MessageFor,
    NewJob,
    OutboxEntry,
    Outgoing,
    Page,
    RedisCommand,
)
from producers.store.workers import Workers


class JobStore(JobReads, Transitions, Creation, Deliveries, Controls, Workers, Memos, Batches, Schedule,
               Archiving, Priorities):
    """Reads and writes job records. Every write that changes status also moves the index entry."""


__all__ = [
    "CANCELLED", "CANCELLING", "FINISHED_ALREADY", "MAX_CHUNK", "PERSIST", "ArchiveCandidate", "Begun",
    "CancelOutcome", "ConnectionState", "Created", "DueDelivery", "Filters", "HistoryArchive", "JobRow", "JobState",
    "JobStore", "Lease", "MessageFor", "NewJob", "OutboxEntry", "Outgoing", "Page", "RedisCommand", "ReleaseMessage",
    "Selection",
]
