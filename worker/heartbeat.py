"""Worker heartbeats: every process of a worker says, every few seconds, that it is alive and
which steps it runs now, in a Redis key that expires when it stops (``JobStore.beat``).

The main process beats from ``worker_ready`` on (hostname, pid, pool, slots, version); under
prefork each pool process beats too (``worker_process_init``), naming its parent, so the steps a
child runs show under its worker. ``ferry workers`` / ``GET /workers`` read them, and
``GET /readyz`` is ready only while some worker's beat is fresh.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from importlib import metadata
from typing import Any

import redis

from producers.records import utc_at, utcnow
from producers.store import JobStore
from worker.log import get_logger

BEAT_SECONDS = 5.0
TTL_SECONDS = 30  # a worker silent this long is gone (readiness uses the same window)


def version() -> str:
    try:
        return metadata.version("ferry")
    except metadata.PackageNotFoundError:
        return "unknown"


def node(pid: int) -> str:
    """The heartbeat key of process ``pid`` on this host."""
    return f"{socket.gethostname()}:{pid}"


def forget(store: JobStore, pid: int) -> None:
    """Process ``pid`` on this host died without its last beat (a supervisor saw it go): take it
    off the list now, not when its beat lapses, so its restarted successor is not listed twice."""
    with contextlib.suppress(redis.RedisError):
        store.end_beat(node(pid))


class Heartbeat:
    """One process's heartbeat, and the steps it runs now (fed by Celery's task signals)."""

    def __init__(self, store: JobStore, info: dict[str, Any]) -> None:
        self.store = store
        self.node = node(os.getpid())
        self.info = {"hostname": socket.gethostname(), "pid": os.getpid(), "version": version(),
                     "started_at": utcnow(), **info}
        self._running: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step_started(self, task_id: str, job_id: str, step: str) -> None:
        with self._lock:
            self._running[task_id] = {"job_id": job_id, "step": step, "since": utcnow()}

    def step_ended(self, task_id: str) -> None:
        with self._lock:
            self._running.pop(task_id, None)

    def beat(self) -> None:
        with self._lock:
            running = sorted(self._running.values(), key=lambda r: r["since"])
        self.store.beat(self.node, {**self.info, "running": running,
                                    "last_heartbeat": utc_at(time.time())}, TTL_SECONDS)

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._loop, name="ferry-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):  # else it expires on its own
            self.store.end_beat(self.node)

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # Redis away for a moment: the next beat tries again
                get_logger().warning("heartbeat failed", exc_info=True)
            if self._stop.wait(BEAT_SECONDS):
                return


_process: Heartbeat | None = None


def start(store: JobStore, **info: Any) -> Heartbeat:
    """This process's heartbeat, started once (again in a forked child: a child has its own)."""
    global _process
    if _process is None or _process.info["pid"] != os.getpid():
        _process = Heartbeat(store, info).start()
    return _process


def current() -> Heartbeat | None:
    return _process if _process is not None and _process.info["pid"] == os.getpid() else None
