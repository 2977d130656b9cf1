"""``ferry worker``'s supervisor without Celery: its argument handling, the backoff, and the loop
itself with tiny Python children standing in for worker processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from producers.cli import _hostname_option, _pool_option
from worker.supervisor import INDEX_ENV, READY_FD_ENV, Supervisor, child_name, usable_cpus


class Log:
    """A structlog stand-in recording (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.lines if e == event]


@pytest.mark.parametrize(("given", "name"), [
    (None, "ferry-42-1@%h"),
    ("upload@%h", "upload-1@%h"),
    ("upload", "upload-1"),
])
def test_each_child_has_a_node_name_of_its_own(given, name):
    assert child_name(1, 42, given) == name


@pytest.mark.parametrize(("args", "pool"), [
    ([], "threads"), (["-P", "prefork"], "prefork"), (["-Psolo"], "solo"),
    (["--pool=gevent", "-c", "4"], "gevent"), (["--pool", "prefork"], "prefork"),
])
def test_the_pool_option_in_each_spelling(args, pool):
    assert _pool_option(args) == pool


def test_the_hostname_option_is_taken_out_of_the_childrens_arguments():
    assert _hostname_option(["-c", "4", "-n", "up@%h", "-Q", "ferry"]) == ("up@%h", ["-c", "4", "-Q", "ferry"])
    assert _hostname_option(["--hostname=up@%h"]) == ("up@%h", [])
    assert _hostname_option(["-nup"]) == ("up", [])
    assert _hostname_option(["-c", "4"]) == (None, ["-c", "4"])


def test_usable_cpus_is_the_affinity_mask():
    assert usable_cpus() == len(os.sched_getaffinity(0))


class ExitedProc:
    def __init__(self, code: int) -> None:
        self.returncode, self.pid = code, 1234


def test_the_backoff_doubles_to_30_s_and_resets_after_a_minute_of_running():
    supervisor = Supervisor(1, lambda i: [], {}, Log())
    supervisor.all_ready = True
    child = supervisor.children[0]
    delays = []
    for ran in (1, 1, 1, 1, 1, 1, 1, 61, 1):
        child.proc, child.started = ExitedProc(-9), 100.0  # type: ignore[assignment]
        supervisor._exited(child, 100.0 + ran)
        delays.append(child.restart_at - (100.0 + ran))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 1, 2]
    assert supervisor.log.events("worker process exited; restarting it")[0]["exited"] == "signal SIGKILL"


# A worker stand-in: says it is ready, then waits for SIGTERM (exit 0). With FAIL_ONCE set, the
# first instance of child 0 exits 5 after it was ready (a crash).
CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
index = os.environ["INDEX_ENV"]
os.write(int(os.environ["READY_FD_ENV"]), f"{index} {os.getpid()}\\n".encode())
marker = os.environ.get("FAIL_ONCE")
if marker and index == "0" and not os.path.exists(marker):
    open(marker, "w").close()
    time.sleep(0.3)
    sys.exit(5)
time.sleep(60)
""".replace("INDEX_ENV", INDEX_ENV).replace("READY_FD_ENV", READY_FD_ENV)


def run_in_background(supervisor: Supervisor, until: Any) -> int:
    """Run ``supervisor`` here (signals need the main thread); SIGTERM this process once ``until()``
    (never after the run ended: pytest would get it)."""
    done = threading.Event()

    def stop_later() -> None:
        deadline = time.monotonic() + 30
        while not until() and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.05)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_later, daemon=True).start()
    try:
        return supervisor.run()
    finally:
        done.set()


def test_a_crashed_child_is_started_again_and_sigterm_stops_them_all_with_exit_0(tmp_path: Path):
    log = Log()
    env = {**os.environ, "FAIL_ONCE": str(tmp_path / "failed")}
    supervisor = Supervisor(2, lambda i: [sys.executable, "-c", CHILD], env, log)
    before = signal.getsignal(signal.SIGTERM)

    code = run_in_background(supervisor, lambda: len(log.events("worker process started")) == 3
                             and all(c.ready for c in supervisor.children))
    assert code == 0
    [restart] = log.events("worker process exited; restarting it")
    assert (restart["index"], restart["exited"], restart["restart_in_seconds"]) == (0, "exit code 5", 1.0)
    assert len(log.events("worker process stopped")) == 2  # both, on the SIGTERM
    assert all(c.proc is None for c in supervisor.children)
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back


def test_a_child_failing_before_any_was_ready_ends_the_supervisor_with_its_code():
    log = Log()
    supervisor = Supervisor(2, lambda i: [sys.executable, "-c", "import sys; sys.exit(3)"], os.environ, log)
    assert supervisor.run() == 3
    assert log.events("worker process exited before it was ready; stopping the others")
    assert not log.events("worker process exited; restarting it")
