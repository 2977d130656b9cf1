"""A worker process's runtime, shared by its pool's threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from producers.config import parse_config
from tests.unit.test_kinds_extra import CONFIG
from worker import runtime as runtime_module
from worker.runtime import Runtime


class SlowLimiter(runtime_module.ConnectionLimiter):
    """A limiter that takes a moment to make (a Redis round trip would), widening the window in
    which another thread may see the connection half made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)
        super().__init__(*args, **kwargs)


def test_the_first_steps_of_a_connection_at_once_all_get_its_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "ConnectionLimiter", SlowLimiter)
    rt = Runtime(parse_config({**CONFIG, "redis_url": "redis://127.0.0.1:1/0"}))
    start, failures, made = threading.Barrier(16), [], []

    def first_step() -> None:
        start.wait()
        try:
            made.append(rt.clients("acme"))
            rt.note_pause("acme", None)
        except Exception as exc:  # what the step would have failed with
            failures.append(repr(exc))

    threads = [threading.Thread(target=first_step) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len({id(c.session) for c in made}) == 1 and len({id(c.limiter) for c in made}) == 1
