"""Everything a benchmark starts, for real, as the tests do: an embedded redis-server on a temp
socket, the sandbox as a subprocess, a ferry.toml pointing every connection at it, and
``ferry worker`` subprocesses. Plus the /proc readings the memory benchmark needs (Linux only).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from producers.client import Ferry
from producers.config import load_config
from producers.embedded import EmbeddedRedis, RedisLocation
from sandbox.testing import SandboxControl, SandboxProcess, ferry_connections
from worker.processes import WorkerProcess

MiB = 1024 * 1024
TOKEN_ENV = {
    "FERRY_TEST_ATLASSIAN_TOKEN": "sandbox-token",
    "FERRY_TEST_AWORK_TOKEN": "sandbox-awork-token",
}
CONNECTION = "acme"  # the atlassian connection in the ferry.toml below


def write_config(path: Path, sandbox_url: str, email: str) -> Path:
    """The same connections the integration tests use (``acme`` is the atlassian one)."""
    path.write_text(ferry_connections(sandbox_url, email, token_env="FERRY_TEST_ATLASSIAN_TOKEN",
                                      bearer_env="FERRY_TEST_AWORK_TOKEN"))
    return path


# ---- /proc (Linux) -------------------------------------------------------------------------------
def proc_status_kib(pid: int, key: str) -> int:
    """A ``VmHWM``/``VmRSS``… line of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Set VmHWM back to the current RSS ("5" to clear_refs, Linux ≥ 4.0), so the next reading
    is the peak of what happens from now on, not of the process's whole life."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


def children_of(pid: int) -> list[int]:
    """Direct children, from every process's stat line (this kernel has no /proc/<pid>/task/*/children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # exited meanwhile
        # The command name may contain spaces and parentheses: fields restart after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry))
    return sorted(found)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of these processes (all their threads), from /proc/<pid>/stat.

    On a shared 2-core machine wall-clock rates swing by half from one minute to the next; the
    CPU a job costs, summed over every process involved, barely moves (celery-notes.md)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


class CpuMeter:
    """CPU seconds per group of processes between ``start()`` and ``stop()``."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.used: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self.used = {name: -cpu_seconds(pids) for name, pids in self.groups.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {name: self.used[name] + cpu_seconds(pids) for name, pids in self.groups.items()}
        return self.used


# ---- the stack -----------------------------------------------------------------------------------
class Worker(WorkerProcess):
    """``worker.processes.WorkerProcess`` that also knows its pool's pids (for /proc readings)."""

    def __init__(self, env: dict[str, str], log_path: Path, pool: str | None = "prefork",
                 concurrency: int | None = 2) -> None:
        """``pool`` None: ``ferry worker``'s defaults (a process per CPU, threads). A pool named
        here is one worker process, as its configuration's name says (``threads -c 8``)."""
        super().__init__(env, log_path, *(("--processes", "1") if pool else ()), concurrency=concurrency, pool=pool)

    def is_ready(self) -> bool:
        pool_up = self.pool != "prefork" or len(children_of(self.proc.pid)) >= (self.concurrency or 0)
        return pool_up and super().is_ready()

    def pids(self) -> dict[str, list[int]]:
        return {"worker": [self.proc.pid], "pool": children_of(self.proc.pid)}

    def task_pids(self) -> list[int]:
        """The processes that run steps: the pool children (prefork), else the worker itself."""
        if self.pool == "prefork":
            return children_of(self.proc.pid)
        return [self.proc.pid]


@dataclass
class Stack:
    home: Path
    location: RedisLocation
    sandbox: SandboxProcess
    control: SandboxControl
    config_path: Path
    env: dict[str, str]
    redis_server: EmbeddedRedis
    workers: list[Worker] = field(default_factory=list)

    def service_pids(self) -> dict[str, list[int]]:
        """This process (client / producer), redis-server and the sandbox (with any children):
        what a job costs besides the worker."""
        redis_pid = int(self.redis_server.pidfile.read_text().strip())
        return {"bench": [os.getpid()], "redis": [redis_pid],
                "sandbox": [self.sandbox.pid, *children_of(self.sandbox.pid)]}

    def ferry(self) -> Ferry:
        return Ferry(self.location.url, config=load_config(self.config_path))

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.location.url, decode_responses=True)

    @contextlib.contextmanager
    def worker(self, pool: str | None = "prefork", concurrency: int | None = 2) -> Iterator[Worker]:
        """A fresh worker on a clean store and a reset sandbox; stopped on exit."""
        client = self.redis()
        client.flushdb()
        client.close()
        self.control.reset()
        worker = Worker(self.env, self.home / f"worker-{pool or 'default'}-{len(self.workers)}.log", pool,
                        concurrency)
        self.workers.append(worker)
        try:
            yield worker.wait_ready()
        finally:
            worker.stop()


@contextlib.contextmanager
def stack(keep_dir: bool = False) -> Iterator[Stack]:
    """Redis + sandbox + ferry.toml in a temp dir; ``Stack.worker()`` adds workers."""
    # Short prefix: unix socket paths are limited to ~107 bytes.
    home = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    embedded = EmbeddedRedis(home / "redis")
    sandbox = SandboxProcess(data_dir=None)
    try:
        location = embedded.ensure_running()
        sandbox.start()
        control = sandbox.control()
        config = write_config(home / "ferry.toml", control.url, control.email)
        # The same three calls on both sides: Ferry's media form pinned to the plain baseline's
        # multipart (its default "auto" would first try binary, which this sandbox reading refuses).
        config.write_text(config.read_text().replace(
            "[connections.acme]\n", '[connections.acme]\nmedia_upload = "multipart"\n', 1))
        env = {**os.environ, **TOKEN_ENV, "FERRY_CONFIG": str(config), "REDIS_URL": location.url,
               "FERRY_HOME": str(home / ".ferry")}
        yield Stack(home, location, sandbox, control, config, env, embedded)
    finally:
        sandbox.stop()
        embedded.stop()
        if not keep_dir:
            shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def scratch_redis(prefix: str) -> Iterator[tuple[Path, RedisLocation]]:
    """An embedded Redis of its own in a temp dir (no sandbox, no worker): (the dir, where it is)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    server = EmbeddedRedis(home / "redis")
    try:
        yield home, server.ensure_running()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


# ---- reporting -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: with 300 samples that is precise enough)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (the benchmarks print to terminals and CI logs alike)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def parse_size(text: str) -> int:
    """``2G``, ``300M``, ``2048K``, ``4096`` (binary units: 2G = 2 GiB)."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(size: int) -> str:
    for unit, scale in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def verdict(results: Sequence[tuple[str, str, str, bool]], check: bool) -> int:
    """Print a module's table of checks; its exit code (1 with ``check`` when one is missed)."""
    print()
    print(table(["check", "target", "measured", "ok"], [[n, t, m, "yes" if ok else "NO"] for n, t, m, ok in results]))
    return 1 if check and not all(ok for *_, ok in results) else 0
