"""The Python API other systems use to hand Ferry jobs::

    from producers import Ferry
    ferry = Ferry()                      # REDIS_URL / ferry.toml / the embedded Redis
    job = ferry.submit("assets-attachment", connection="acme", file="/data/x.pdf",
                       params={"object": "88", "comment": "scan"}, idempotency_key="scan-88-x")
    ferry.wait(job.id, timeout=60)

No destination credentials are needed or read here: a job names its connection, and the worker
holds the secret.
"""

from __future__ import annotations

from producers.batches import BatchOps, OpenBatch
from producers.controls import READY_SECONDS, CancelSummary, Controls, ResumeOutcome
from producers.reads import Reads
from producers.submit import (
    MAX_IDEMPOTENCY_KEY,
    NO_ROOTS_MESSAGE,
    JobRequest,
    Outcome,
    request_field,
)

__all__ = ["MAX_IDEMPOTENCY_KEY", "NO_ROOTS_MESSAGE", "READY_SECONDS", "CancelSummary", "Ferry", "JobRequest",
           "OpenBatch", "Outcome", "ResumeOutcome", "request_field"]


class Ferry(BatchOps, Reads, Controls):
    """The Python API: submit (``producers.submit``) and batches (``producers.batches``), read
    (``producers.reads``) and operate (``producers.controls``); it accepts a Redis client for tests."""

    def close(self) -> None:
        if self._chain_messages is not None:
            self._chain_messages.close()
        self.redis.close()
