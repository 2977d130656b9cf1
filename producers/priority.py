"""What runs next, as the job model says it: a job's ``priority`` and ``tenant``.

``priority`` is ``high``, ``normal`` or ``low`` (a single job defaults to ``normal``, a batch's
jobs to ``low``); ``tenant`` is an optional short name whose jobs take turns with other
tenants' within one priority. How they decide the order is ``producers.store.ready`` (see
docs/architecture.md, "What runs next").
"""

from __future__ import annotations

import re
from typing import Literal

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
SINGLE_DEFAULT: Priority = "normal"
BATCH_DEFAULT: Priority = "low"

# A tenant is a name, not free text: it appears in keys, filters, metrics and URLs.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_TENANT = re.compile(TENANT_PATTERN)
TENANT_RULE = "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


def level(priority: str) -> int:
    """Levels below ``high``: 0, 1 or 2 (an unknown value reads as ``normal``)."""
    for n, p in enumerate(PRIORITIES):
        if p == priority:
            return n
    return 1


def check_priority(value: str) -> Priority:
    """``value`` as a priority; ValueError naming the choices otherwise."""
    for p in PRIORITIES:
        if value == p:
            return p
    raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {value!r}")


def check_tenant(value: str) -> str:
    """``value`` as a tenant name; ValueError saying the rule otherwise."""
    if not _TENANT.match(value):
        raise ValueError(f"tenant {value[:80]!r} is not a tenant name ({TENANT_RULE})")
    return value


def chosen(priority: str | None, *, in_batch: bool) -> Priority:
    """The priority a job gets: the one asked for, else its default."""
    if priority is None:
        return BATCH_DEFAULT if in_batch else SINGLE_DEFAULT
    return check_priority(priority)
