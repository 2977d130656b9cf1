"""``ferry worker``'s default: one Celery worker process per usable CPU under a supervisor.

Real ``ferry worker`` processes on the test Redis (a database of their own) against the sandbox:
the nodes and their names, jobs on every process, a warm SIGTERM of them all, a SIGKILLed child
started again (its step run again), a SIGKILLed supervisor taking its children with it, and one
metrics endpoint adding the processes up.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from producers.client import Ferry
from producers.records import StepStatus
from sandbox.testing import free_port
from tests.fixtures.worker import FerryEnv
from tests.integration.test_metrics_flower import samples, value
from tests.integration.test_replay import document, wait_until
from worker.processes import WorkerProcess
from worker.supervisor import usable_cpus

DB = 11  # other tests use 0 and 3-10


@pytest.fixture
def isolated(ferry_env: FerryEnv, tmp_path: Path) -> FerryEnv:
    return ferry_env.isolated(tmp_path, db=DB)


@pytest.fixture
def producer(isolated: FerryEnv) -> Iterator[Ferry]:
    ferry = isolated.ferry()
    yield ferry
    ferry.close()


@contextmanager
def supervised(env: FerryEnv, log: Path, *args: str, concurrency: int | None = 2) -> Iterator[WorkerProcess]:
    """``ferry worker ARGS`` with its default pool (threads), hence its supervisor."""
    worker = WorkerProcess(env.env, log, *args, concurrency=concurrency, pool=None)
    try:
        yield worker.wait_ready()
    finally:
        worker.stop()


def nodes(ferry: Ferry, count: int) -> list[dict[str, Any]]:
    """The live nodes' heartbeats, once there are ``count``."""
    wait_until(lambda: len(ferry.workers()) == count, 30, f"{count} worker heartbeats")
    return ferry.workers()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited (its new parent may not reap it at once)


def submit(ferry: Ferry, seed: dict[str, Any], doc: Path) -> str:
    return ferry.submit("assets-attachment", connection="acme", file=str(doc),
                        params={"object": seed["object_id"]}).id


def wait_running(ferry: Ferry, job_id: str, step: str, timeout: float = 30) -> None:
    wait_until(lambda: ferry.status(job_id).step(step).status == StepStatus.RUNNING, timeout,
               f"{step} of {job_id} running")


def step_pids(log: str, job_ids: set[str], step: str | None = None) -> set[int]:
    """The processes that logged a step (or ``step``) of one of these jobs."""
    import json

    pids = set()
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("job_id") in job_ids and step in (None, record.get("step")):
            pids.add(record["pid"])
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_the_default_is_one_worker_process_per_usable_cpu(isolated, producer, tmp_path):
    # Pinned to at most 3 CPUs (this thread's mask, inherited by the worker) so a big machine
    # does not start dozens of processes here.
    mine = os.sched_getaffinity(0)
    pinned = set(sorted(mine)[:3])
    os.sched_setaffinity(0, pinned)
    try:
        expected = usable_cpus()
        worker = WorkerProcess(isolated.env, tmp_path / "worker.log", concurrency=None, pool=None)
    finally:
        os.sched_setaffinity(0, mine)
    try:
        worker.wait_ready()
        found = nodes(producer, expected)
        assert len(children(worker.proc.pid)) == expected
        assert {w["slots"] for w in found} == {32} and {w["pool"] for w in found} == {"thread"}
    finally:
        worker.stop()
    assert worker.proc.returncode == 0


def test_two_processes_two_named_nodes_jobs_on_both_one_metrics_endpoint(isolated, producer, sandbox, tmp_path):
    port = free_port()
    seed = sandbox.seed()
    sandbox.add_fault(path="^/media/file", latency_ms=300)  # so both processes get jobs
    doc = document(tmp_path)
    with supervised(isolated, tmp_path / "worker.log", "--processes", "2", "--metrics-port", str(port)) as worker:
        found = nodes(producer, 2)
        supervisor = worker.proc.pid
        assert sorted(w["name"].split("@")[0] for w in found) == [f"ferry-{supervisor}-0", f"ferry-{supervisor}-1"]
        assert {w["supervisor"] for w in found} == {supervisor}
        assert sorted(w["pid"] for w in found) == sorted(children(supervisor))

        jobs = [submit(producer, seed, doc) for _ in range(8)]
        for job_id in jobs:
            assert producer.wait(job_id, timeout=60).status == "succeeded"
        assert step_pids(worker.log(), set(jobs)) == set(children(supervisor))

        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        kind = "assets-attachment"
        for step in ("get_credentials", "media_upload", "link_attachment"):
            assert value(samples(text), "ferry_steps_total", kind=kind, step=step, outcome="succeeded") == 8
    assert "Address already in use" not in worker.log()


def test_sigterm_stops_every_process_warm_and_exits_0(isolated, producer, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="^/media/file", latency_ms=3000, times=2)
    doc = document(tmp_path)
    worker = WorkerProcess(isolated.env, tmp_path / "w1.log", "--processes", "2", concurrency=1,
                           pool=None).wait_ready()
    try:
        nodes(producer, 2)
        jobs = [submit(producer, seed, doc) for _ in range(2)]
        for job_id in jobs:  # one on each process (one slot each), both mid-upload
            wait_running(producer, job_id, "media_upload")
        kids = children(worker.proc.pid)
        worker.stop(grace=30)  # SIGTERM to the supervisor only
    finally:
        worker.stop()
    assert worker.proc.returncode == 0
    assert not any(alive(pid) for pid in kids)
    for job_id in jobs:  # the uploads finished during the shutdown, each once
        assert producer.status(job_id).step("media_upload").status == StepStatus.SUCCEEDED
        assert producer.status(job_id).step("media_upload").attempts == 1

    with supervised(isolated, tmp_path / "w2.log", "--processes", "2"):
        for job_id in jobs:
            done = producer.wait(job_id, timeout=60)
            assert done.status == "succeeded"
            assert done.step("media_upload").attempts == 1


def test_a_sigkilled_process_is_started_again_and_its_step_runs_again(isolated, producer, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="^/media/file", latency_ms=5000, times=1)
    doc = document(tmp_path, "contract.pdf")
    with supervised(isolated, tmp_path / "worker.log", "--processes", "2", concurrency=1) as worker:
        nodes(producer, 2)
        job_id = submit(producer, seed, doc)
        wait_running(producer, job_id, "media_upload")
        (pid,) = step_pids(worker.log(), {job_id}, "media_upload")  # the process running it
        running = next(w for w in producer.workers() if w["pid"] == pid)
        os.kill(pid, signal.SIGKILL)

        wait_until(lambda: running["pid"] not in children(worker.proc.pid)
                   and len(children(worker.proc.pid)) == 2, 30, "the killed process started again")
        done = producer.wait(job_id, timeout=60)  # the lease lapses, the reaper re-enqueues the step
        assert done.status == "succeeded", done
        assert done.step("media_upload").attempts == 2
        # The same node name beats again from a new pid; the dead one is off the list at once.
        again = nodes(producer, 2)
        assert running["name"] in {w["name"] for w in again} and pid not in {w["pid"] for w in again}
        assert "worker process exited; restarting it" in worker.log()
    linked = [a for a in sandbox.attachments() if a.get("filename") == "contract.pdf"]
    assert len(linked) == 1


def test_a_sigkilled_supervisor_leaves_no_worker_running(isolated, producer, tmp_path):
    worker = WorkerProcess(isolated.env, tmp_path / "worker.log", "--processes", "2", concurrency=2,
                           pool=None).wait_ready()
    try:
        kids = children(worker.proc.pid)
        assert len(kids) == 2
        os.kill(worker.proc.pid, signal.SIGKILL)  # the supervisor alone, not its group
        worker.proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in kids)
    finally:
        worker.stop()
