"""Everything a destination can do to a step, as the branch of Ferry's one error tree
(``producers.errors.FerryError`` is the root; the producer's errors are its other branches)::

    DestinationError           step, HTTP status (None for transport errors), destination message
    ├── RetryableError         connection errors, timeouts, 429, 500/502/503/504; retry_after = server's word
    │   └── Throttled          our own per-connection budget (or a 429 pause) says wait: nothing was sent
    └── PermanentError         other 4xx, bad input, missing credentials: the job fails at once
        └── OutcomeUnknown     a non-repeatable request may or may not have landed (cut mid-response);
                               repeating it could duplicate, so a human looks first

Errors are classified once, at the HTTP boundary (``worker.http``); steps only raise or pass them on.
"""

from __future__ import annotations

from producers.errors import FerryError


class DestinationError(FerryError):
    """What a destination (or the way to it) did to a step."""

    def __init__(self, message: str, *, step: str | None = None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.step}: " if self.step else ""
        status = f"HTTP {self.status}: " if self.status else ""
        return f"{where}{status}{self.message}"


class RetryableError(DestinationError):
    """Trying again later may succeed."""


class Throttled(RetryableError):
    """Ferry's own per-connection budget says wait; nothing was sent. Costs no attempt budget."""


class PermanentError(DestinationError):
    """Trying again will fail the same way until something changes (input, permissions, config)."""


class OutcomeUnknown(PermanentError):
    """The request was sent and the answer was lost; repeating it might create a duplicate."""
