"""Every Redis key Ferry uses, in one place, so nobody types ``"ferry:job:"`` twice."""

from __future__ import annotations

PREFIX = "ferry"


def job(job_id: str) -> str:
    """Hash holding one job record (meta, status, one field per step)."""
    return f"{PREFIX}:job:{job_id}"


def job_secret(job_id: str, step: str) -> str:
    """Short-lived secret output of a step (media JWT); expires with the secret itself."""
    return f"{PREFIX}:secret:{job_id}:{step}"


def index_all() -> str:
    return f"{PREFIX}:idx:all"


def index_status(status: str) -> str:
    return f"{PREFIX}:idx:status:{status}"


def index_kind(kind: str) -> str:
    return f"{PREFIX}:idx:kind:{kind}"


def index_connection(connection: str) -> str:
    return f"{PREFIX}:idx:conn:{connection}"


def index_names(which: str) -> str:
    """Set of the kind (``which="kind"``) or connection (``"conn"``) names that have an index."""
    return f"{PREFIX}:idx-names:{which}"


def idempotency(key: str) -> str:
    return f"{PREFIX}:idem:{key}"


def workspace_cache(site_url: str) -> str:
    """Assets workspace id discovered from a Jira site (not a secret). Keyed by the site, not by
    the connection's name: a connection whose ``site_url`` changes must not inherit the old id."""
    return f"{PREFIX}:cache:workspace:{site_url.rstrip('/')}"


def rate_limit(connection: str) -> str:
    """Token bucket shared by every worker process for one connection."""
    return f"{PREFIX}:rl:{connection}"


def rate_limit_pause(connection: str) -> str:
    """Set while a destination's 429 asked every worker to wait: the time (epoch s) it ends."""
    return rate_limit(connection) + ":pause"


def connection_paused(connection: str) -> str:
    """Set while an operator has paused a connection (JSON: who, when); no expiry."""
    return f"{PREFIX}:paused:{connection}"


def parked(connection: str) -> str:
    """Set of ``job_id step`` steps parked while their connection is paused; resume re-publishes them."""
    return f"{PREFIX}:parked:{connection}"


def heartbeat(node: str) -> str:
    """One worker process's heartbeat (JSON), expiring when it stops beating."""
    return f"{PREFIX}:hb:{node}"


def heartbeats() -> str:
    """Sorted set of the worker processes that beat, scored by their last beat (epoch s)."""
    return f"{PREFIX}:hb"


def throughput(minute: int) -> str:
    """Counter of jobs finished in one wall-clock minute (dashboard chart)."""
    return f"{PREFIX}:tp:{minute}"


def step_memo(job_id: str, step: str) -> str:
    """What a step saw before its first attempt (e.g. the custom avatar ids already there), so a
    retry can tell what its own earlier attempt created. Not a secret; expires with retention."""
    return f"{PREFIX}:memo:{job_id}:{step}"


def upload_form(connection: str, asset: str) -> str:
    """The upload form that last worked on a connection for one kind of asset (``media``:
    "multipart" / "binary"; ``marketplace-artifact``, ``marketplace-image``: "multipart" / "raw"
    / "binary"); expires, so a service that moves again is re-probed. Not a secret."""
    return f"{PREFIX}:cache:upload-form:{connection}:{asset}"


def reaper_round() -> str:
    """Held by the worker whose reaper has the current round (``worker.recovery``)."""
    return f"{PREFIX}:reaper"


def revived(job_id: str, step: str) -> str:
    """Set when the reaper re-enqueues a job's step, so it does so once per window."""
    return f"{PREFIX}:revived:{job_id}:{step}"


def in_flight_slots(connection: str) -> str:
    """Sorted set of the request slots taken on one connection (``max_in_flight``)."""
    return rate_limit(connection) + ":inflight"


def progress_event_ids() -> str:
    """The ids of the ``step.progress`` entries in the event stream, oldest first: the oldest
    are deleted past ``events.PROGRESS_KEPT``, so they never crowd out state changes."""
    return f"{PREFIX}:events:progress-ids"


def job_counts() -> str:
    """Hash of how many jobs the store holds by status, kind and connection (fields
    ``status|kind|connection``), moved by the same scripts that move a job's status
    (``producers.store.counts``): a count is one field read, whatever the store's size."""
    return f"{PREFIX}:counts"


def sequence() -> str:
    """Counter that makes job scores unique within one millisecond."""
    return f"{PREFIX}:seq"


def intersection(indexes: list[str]) -> str:
    """Short-lived intersection of several indexes, for counting what matches all of them."""
    return f"{PREFIX}:tmp:" + "|".join(indexes)


def replay_claim(job_id: str) -> str:
    """Held for a moment while one operator's replay enqueues the job, so a second one is refused."""
    return f"{PREFIX}:replay-claim:{job_id}"


def sweep_lock() -> str:
    """Held for a minute after an index sweep, so many dashboard viewers sweep once."""
    return f"{PREFIX}:sweep-lock"


def bulk_replay() -> str:
    """JSON progress of the latest bulk replay started over HTTP (the dashboard shows it)."""
    return f"{PREFIX}:bulk:last"


def session(digest: str) -> str:
    """A dashboard session, by the hash of its id (the id itself is only in the browser cookie)."""
    return f"{PREFIX}:session:{digest}"


def events() -> str:
    """Stream of every job's state changes (``producers.events``), capped with ``MAXLEN ~``."""
    return f"{PREFIX}:events"


def notify_due() -> str:
    """Sorted set of webhook deliveries to attempt, ``"<job id> <delivery id>"`` scored by when
    (epoch seconds); a delivery being attempted is scored at the end of its lease."""
    return f"{PREFIX}:notify:due"


def notify_body(delivery_id: str) -> str:
    """The exact JSON body of a webhook delivery, fixed at its first attempt so every retry
    sends the same bytes; expires after the retry window."""
    return f"{PREFIX}:notify:body:{delivery_id}"


def outbox() -> str:
    """Sorted set of step messages recorded for a broker other than the store's Redis and not
    yet published, scored by when they were recorded (ms): the reaper publishes stale ones."""
    return f"{PREFIX}:outbox"


def batch(batch_id: str) -> str:
    """Hash holding one batch's record and its counts (``producers.store.codec``, BATCH_*)."""
    return f"{PREFIX}:batch:{batch_id}"


def batch_jobs(batch_id: str) -> str:
    """Sorted set of a batch's jobs, scored like the job indexes (``jobs --batch``)."""
    return f"{PREFIX}:batch-jobs:{batch_id}"


def batches() -> str:
    """Sorted set of every batch id, scored by when it was opened (epoch ms)."""
    return f"{PREFIX}:batches"


def scheduled() -> str:
    """Sorted set of the ids of scheduled jobs (status ``scheduled``), scored by their
    ``not_before`` (epoch ms): the releaser takes the due ones from its low end."""
    return f"{PREFIX}:scheduled"


def scheduler_round() -> str:
    """Held for one round by the worker whose releaser moves due scheduled jobs to their queues."""
    return f"{PREFIX}:scheduler"


def archived(job_id: str) -> str:
    """Set when a job moved to the archive while its idempotency key still lives, for the key's
    remaining time: ``lua/create.lua`` then answers with the archived job, not a new one."""
    return f"{PREFIX}:archived:{job_id}"


def archive_round() -> str:
    """Held for one round by the worker whose archiver moves ended jobs into the archive."""
    return f"{PREFIX}:archiver"


def ready(connection: str, level: int | str) -> str:
    """Sorted set of a connection's waiting jobs of one priority level (0 high, 1 normal, 2 low)
    that have no message yet, scored by their tenant's turn (``producers.store.ready``)."""
    return f"{PREFIX}:ready:{connection}:{level}"


def ready_at(connection: str, level: int | str) -> str:
    """The same jobs scored by when they became ready (epoch ms): the level's oldest, for aging."""
    return f"{PREFIX}:ready-at:{connection}:{level}"


def ready_turns(connection: str) -> str:
    """Hash of a connection's tenant turns: ``V|{level}`` the level's turn now, ``{level}|{tenant}``
    the turn after a tenant's last waiting job."""
    return f"{PREFIX}:turns:{connection}"


def dispatch_round() -> str:
    """Held for one round by the worker that tops up every connection's run of messages."""
    return f"{PREFIX}:dispatcher"
