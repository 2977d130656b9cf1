"""``ferry worker``'s supervisor: N Celery worker processes (threads pool) under one parent.

One process on the threads pool is bound by the GIL at ~30 jobs/s (each step still costs 8-10 ms
of Python), so by default ``ferry worker`` runs one worker process per usable CPU and stays in
the foreground as their parent:

- each child is ``ferry worker --processes 1 <the user's options>``, a whole Celery worker with a
  node name of its own, in the supervisor's process group (a ``killpg`` reaches them all);
- SIGTERM and SIGINT become a SIGTERM to every child (Celery's warm shutdown: running steps end),
  SIGQUIT a SIGQUIT (Celery's cold shutdown); the supervisor waits for every child and exits 0;
- a child that exits on its own (a crash, the OOM killer) is started again after a backoff (1 s,
  doubling to 30 s, back to 1 s once an instance ran 60 s), and the exit is logged as one line;
  a child that exits before any child was ever ready ends the supervisor with its exit code (a
  bad option or config fails every restart the same way);
- on Linux a child asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a
  SIGKILLed supervisor leaves no worker behind;
- each child reports readiness through a pipe; the supervisor logs ``READY_EVENT`` once all are.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

SUPERVISOR_ENV = "FERRY_SUPERVISOR_PID"  # set in a child: who its supervisor is
INDEX_ENV = "FERRY_WORKER_INDEX"
READY_FD_ENV = "FERRY_WORKER_READY_FD"  # the pipe a child writes "<index> <pid>\n" to when ready

STARTED_EVENT = "supervising worker processes"
READY_EVENT = "worker processes ready"

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 60.0  # an instance that ran this long was healthy: the next crash waits 1 s

# What each stop signal becomes for the children. SIGINT becomes SIGTERM: Celery treats a second
# SIGINT as a cold shutdown, and a Ctrl-C in a terminal reaches the children directly as well.
FORWARD = {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGTERM, signal.SIGQUIT: signal.SIGQUIT}

_PR_SET_PDEATHSIG = 1


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. ``taskset`` or a cpuset), else
    the machine's count. A CFS quota (``docker --cpus``) is not seen here."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def child_name(index: int, supervisor_pid: int, given: str | None) -> str:
    """A child's Celery node name: ``ferry-<supervisor pid>-<i>@%h``, or the user's ``-n`` with
    ``-<i>`` added before its ``@`` (two nodes may not share a name)."""
    if not given:
        return f"ferry-{supervisor_pid}-{index}@%h"
    name, at, host = given.partition("@")
    return f"{name}-{index}{at}{host}"


# ---- in a child ----------------------------------------------------------------------------------
def as_child() -> None:
    """In a worker started by a supervisor: die with it. Linux delivers SIGTERM (Celery's warm
    shutdown) when the parent goes, however it went; if it went before this line ran, stop now."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != int(supervisor):
        sys.exit(0)


def notify_ready() -> None:
    """Tell the supervisor (if any) that this worker is ready: once, then close the pipe."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None or not os.environ.get(SUPERVISOR_ENV):
        return
    with contextlib.suppress(OSError):  # the supervisor is gone: nothing to tell
        os.write(int(fd), f"{os.environ.get(INDEX_ENV, '?')} {os.getpid()}\n".encode())
        os.close(int(fd))


# ---- the supervisor ------------------------------------------------------------------------------
@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    backoff: float = BACKOFF_FIRST
    restart_at: float = 0.0
    sent: int = 0  # the stop signal this instance was sent (0: none)


class Supervisor:
    def __init__(self, processes: int, argv: Callable[[int], list[str]], env: Mapping[str, str],
                 log: Any, on_crash: Callable[[int], None] | None = None) -> None:
        """``argv(i)``: child i's command line; ``env``: the children's environment; ``log``: a
        structlog logger (worker.log), so the supervisor's lines are JSON like the workers';
        ``on_crash(pid)``: a child exited on its own (its heartbeat is stale)."""
        self.children = [_Child(i) for i in range(processes)]
        self.argv = argv
        self.on_crash = on_crash
        self.env = dict(env)
        self.log = log
        self.stop_signal: int = 0  # the signal to forward; 0 while running
        self.exit_code = 0
        self.all_ready = False
        self._ready_r = self._ready_w = self._wake_r = self._wake_w = -1

    # The handlers only record what was asked (and the wakeup fd wakes the loop); the loop acts.
    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        if signum in FORWARD and self.stop_signal != signal.SIGQUIT:
            self.stop_signal = FORWARD[signal.Signals(signum)]

    def run(self) -> int:
        self._ready_r, self._ready_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._ready_r, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        handled = (*FORWARD, signal.SIGCHLD)  # SIGCHLD: only to wake the loop when a child exits
        previous = {s: signal.signal(s, self._on_signal) for s in handled}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            self.log.info(STARTED_EVENT, processes=len(self.children), supervisor_pid=os.getpid())
            for child in self.children:
                self._start(child)
            while self._step():
                self._wait()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, handler in previous.items():
                signal.signal(s, handler)
            for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
                os.close(fd)
        self.log.info("worker processes stopped", exit_code=self.exit_code)
        return self.exit_code

    def _step(self) -> bool:
        """One pass: reap, forward a stop, restart what is due. False once everything stopped."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                self._exited(child, now)
        if self.stop_signal:
            running = [c for c in self.children if c.proc is not None]
            for child in running:
                if child.sent != self.stop_signal and child.proc is not None:
                    child.sent = self.stop_signal
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(self.stop_signal)
            return bool(running)
        for child in self.children:
            if child.proc is None and child.restart_at <= now:
                self._start(child)
        return True

    def _wait(self) -> None:
        """Sleep until a signal, a child's readiness or the next restart is due (at most 1 s)."""
        due = [c.restart_at for c in self.children if c.proc is None and not self.stop_signal]
        timeout = max(0.0, min([1.0, *(d - time.monotonic() for d in due)]))
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([self._ready_r, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            if self._ready_r in readable:
                self._read_ready()

    def _read_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(self._ready_r, 4096).decode(errors="replace")
            for line in data.splitlines():
                index, _, pid = line.partition(" ")
                for child in self.children:
                    if child.proc is not None and str(child.index) == index and str(child.proc.pid) == pid:
                        child.ready = True
        if not self.all_ready and all(c.ready for c in self.children):
            self.all_ready = True
            self.log.info(READY_EVENT, processes=len(self.children),
                          pids=[c.proc.pid for c in self.children if c.proc is not None])

    def _start(self, child: _Child) -> None:
        env = {**self.env, SUPERVISOR_ENV: str(os.getpid()), INDEX_ENV: str(child.index),
               READY_FD_ENV: str(self._ready_w)}
        # Same process group as the supervisor (no new session): a killpg of it reaches them all.
        child.proc = subprocess.Popen(self.argv(child.index), env=env, pass_fds=(self._ready_w,))
        child.started = time.monotonic()
        child.ready = False
        child.sent = 0
        self.log.info("worker process started", index=child.index, child_pid=child.proc.pid)

    def _exited(self, child: _Child, now: float) -> None:
        assert child.proc is not None
        code, pid, ran = child.proc.returncode, child.proc.pid, round(now - child.started, 1)
        child.proc = None
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if self.stop_signal:
            self.log.info("worker process stopped", index=child.index, child_pid=pid, exited=how)
            return
        if not self.all_ready and not child.ready:
            # Before any worker got ready: a bad option or config, which every restart repeats.
            self.log.error("worker process exited before it was ready; stopping the others",
                           index=child.index, child_pid=pid, exited=how)
            self.exit_code = code if code > 0 else 1
            self.stop_signal = signal.SIGTERM
            return
        if ran >= BACKOFF_RESET_AFTER:
            child.backoff = BACKOFF_FIRST
        delay, child.backoff = child.backoff, min(child.backoff * 2, BACKOFF_MAX)
        child.restart_at = now + delay
        self.log.warning("worker process exited; restarting it", index=child.index, child_pid=pid,
                         exited=how, ran_seconds=ran, restart_in_seconds=delay)
        if self.on_crash is not None:
            self.on_crash(pid)
