"""A schemathesis check (loaded through ``SCHEMATHESIS_HOOKS``): a request that would change state
(anything but GET, HEAD, OPTIONS) must not be answered 2xx, for the run's token may only read."""

from typing import Any

import schemathesis

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@schemathesis.check
def no_change_by_a_reader(ctx: Any, response: Any, case: Any) -> None:
    if case.method.upper() not in SAFE_METHODS and 200 <= response.status_code < 300:
        raise AssertionError(f"{case.method} {case.path} answered {response.status_code} to a read-only token")
