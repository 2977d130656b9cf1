"""A ``ferry worker`` as a child process: what the demo, the tests and the benchmarks start.

It runs in its own session, so killing it reaches the prefork pool's children and a
supervisor's worker processes too, and it writes to a log file the caller can read (readiness is
Celery's "ready." line, or with several worker processes the supervisor's line saying all are
ready): its stderr, and its stdout too unless ``stdout_path`` names a file of its own (both
carry JSON lines only: Celery's banner is one of them, ``worker.celery_app.JsonLinesWorker``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.supervisor import READY_EVENT, STARTED_EVENT

# Faster start. Heartbeats stay on: with them off and task events off (the default), Celery
# disables the event dispatcher outright and Flower could not turn task events on.
WORKER_ARGS = ("--without-gossip", "--without-mingle")


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *args: str, concurrency: int | None = 2,
                 pool: str | None = "prefork", stdout_path: Path | None = None) -> None:
        """``pool``/``concurrency`` None: ``ferry worker``'s own defaults (threads, many slots, one
        process per CPU; ``--processes`` in ``args`` says how many)."""
        self.log_path = log_path
        self.concurrency = concurrency
        self.pool = pool or "default"
        argv = [sys.executable, "-m", "producers", "worker", *WORKER_ARGS]
        if concurrency is not None:
            argv += ["-c", str(concurrency)]
        if pool:
            argv += ["--pool", pool]
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self._out = open(stdout_path, "w") if stdout_path else None  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*argv, *args], env=env, stdout=self._out or self._log,
                                     stderr=self._log, start_new_session=True)

    def is_ready(self) -> bool:
        log = self.log()
        if STARTED_EVENT in log:  # a supervisor: the first worker's "ready." is not enough
            return READY_EVENT in log
        return "ready." in log

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_ready():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)

    def stop(self, grace: float = 20) -> None:
        """Warm shutdown (running steps finish), then SIGKILL after ``grace`` seconds. SIGTERM goes
        to the main process only: Celery's warm shutdown lets the pool's children end their tasks
        (publishing a retry or the next step), where a SIGTERM to the whole group killed them
        mid-step; a supervisor sends it on to each of its workers and waits for them all."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        if self._out is not None:
            self._out.close()
