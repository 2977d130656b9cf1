"""The audit trail: one JSON line per operator action that changes jobs or connections (cancel,
pause, resume, replay, purge, delete), saying who (an API token's label, or ``cli``), what
(the filter, or the job or connection) and how many jobs it touched.

The lines go to the ``ferry.audit`` logger; where nothing else handles it (the command line, a
bare ``ferry api``) they are written to stderr, one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from producers.records import utcnow

log = logging.getLogger("ferry.audit")


def _ensure_output() -> None:
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)


def audit(action: str, who: str, *, jobs: int, target: Any = None, **details: Any) -> dict[str, Any]:
    """Log one audit line and return it. ``target``: the filter (a dict), a job id or a connection."""
    line = {"event": "audit", "at": utcnow(), "action": action, "who": who, "target": target,
            "jobs": jobs, **details}
    _ensure_output()
    log.info(json.dumps(line, separators=(",", ":"), default=str))
    return line
