"""Redis killed (SIGKILL) and restarted while jobs run: with AOF and ``appendfsync always``,
every job succeeds, none uploads or links twice at the destination, and the worker reconnects
by itself (issue 13). A step's end and its next message are one Redis call, so a restart cannot
fall between them; a step whose end did not reach Redis runs again once its lease lapses."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers.client import Ferry, JobRequest
from producers.embedded import RedisLocation, redis_server_binary
from producers.records import JobStatus, StepStatus
from tests.fixtures.broker import Broker
from tests.fixtures.worker import FerryEnv, worker_env, write_config
from worker.processes import WorkerProcess

JOBS = 100  # as the issue asks: 100 jobs running when Redis is killed
UPLOAD_LATENCY_MS = 1500  # every media upload is in flight this long: the kill lands mid-step


class DurableRedis:
    """A redis-server that fsyncs its AOF on every write, on a socket of its own, that a test can
    kill -9 and start again on the same data."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.location = RedisLocation.from_socket(self.socket)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DurableRedis:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", str(self.directory / "redis.log")])
        client = redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, (self.directory / "redis.log").read_text()
                time.sleep(0.05)
        client.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[DurableRedis]:
    server = DurableRedis(tmp_path / "redis").start()
    yield server
    server.kill()


def test_a_redis_restart_under_running_jobs_loses_and_repeats_nothing(durable_redis, sandbox, tmp_path):
    seed = sandbox.seed()
    config = write_config(tmp_path / "ferry.toml", sandbox.url, sandbox.email)
    env = FerryEnv(config, worker_env(tmp_path, config, durable_redis.location), durable_redis.location,
                   Broker("redis"), sandbox.url, sandbox.email)
    sandbox.add_fault(path="^/media/file", latency_ms=UPLOAD_LATENCY_MS)
    files = []
    for n in range(JOBS):
        files.append(tmp_path / f"restart-{n:03d}.txt")
        files[-1].write_text(f"job {n}\n" * 50)
    worker = WorkerProcess(env.env, tmp_path / "worker.log", concurrency=JOBS, pool="threads").wait_ready()
    ferry = Ferry(durable_redis.location.url, config=env.config())
    try:
        jobs = [record for record, _ in ferry.submit_many([  # type: ignore[misc]
            JobRequest(kind="assets-attachment", connection="acme", file=str(f), params={"object": seed["object_id"]})
            for f in files])]
        wait_until_uploading(ferry, [j.id for j in jobs], at_least=JOBS // 2)

        durable_redis.kill()
        time.sleep(1)
        durable_redis.start()

        done = [ferry.wait(j.id, timeout=50) for j in jobs]
        still_running = worker.proc.poll() is None  # the same worker process, never restarted
    finally:
        ferry.close()
        worker.stop()

    assert [d.status for d in done] == [JobStatus.SUCCEEDED] * JOBS, [d for d in done if d.status != "succeeded"]
    names = {f.name for f in files}
    uploads = Counter(m["name"] for m in sandbox.media() if m.get("name") in names)
    links = Counter(a["filename"] for a in sandbox.attachments() if a.get("filename") in names)
    assert uploads == Counter(names), "a file was uploaded twice (or never)"
    assert links == Counter(names), "a file was linked twice (or never)"
    # Neither the supervisor nor any of its worker processes was restarted: each rode it out.
    assert still_running and "Connection to broker lost" in worker.log()
    assert "worker process exited" not in worker.log()


def wait_until_uploading(ferry: Ferry, ids: list[str], at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        running = sum(1 for j in ids if ferry.status(j).step("media_upload").status == StepStatus.RUNNING)
        if running >= at_least:
            return
        assert time.monotonic() < deadline, f"only {running} uploads in flight"
        time.sleep(0.05)
