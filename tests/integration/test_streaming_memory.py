"""Streaming, proven on the real worker: a ~300 MB assets-attachment upload leaves the peak memory
of the pool process that runs it where it was, and the sandbox receives every byte.

Memory is the assertion, never time (speed targets live in bench/). The session's worker pool is
shared with other tests, so the peak is reset ("5" > /proc/<pid>/clear_refs sets VmHWM to the
current RSS) and the growth during this one upload is what is asserted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from producers.client import Ferry
from sandbox.testing import SandboxControl, SandboxProcess
from tests.fixtures.worker import WorkerProcess

MiB = 1024 * 1024
SIZE = 300 * MiB
# A body built in memory would cost 1-2x the file (600 MiB with files=); the streamed one costs
# buffers of ~1 MiB. 64 MiB leaves room for allocator noise and still catches any whole-file read.
GROWTH_LIMIT = 64 * MiB
PEAK_LIMIT = 150 * MiB  # absolute: an idle pool process is ~65 MiB here

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"),
                                reason="needs Linux /proc (VmHWM, clear_refs)")


def status_bytes(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


def pool_processes(worker_pid: int) -> list[int]:
    """Children of the prefork worker: where the steps run."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == worker_pid:
                found.append(int(entry))
    return sorted(found)


def sparse_file(path: Path, size: int) -> Path:
    """4 KB of random bytes (so this upload's sha256 is its own), then a hole up to ``size``."""
    with open(path, "wb") as fh:
        fh.write(os.urandom(4096))
        fh.truncate(size)
    return path


def sha256_streamed(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_300mb_attachment_streams_through_the_pool_process(
        ferry: Ferry, sandbox: SandboxControl, sandbox_server: SandboxProcess, worker_process: WorkerProcess,
        tmp_path: Path) -> None:
    seed = sandbox.seed()
    big = sparse_file(tmp_path / "scan.bin", SIZE)
    pool = pool_processes(worker_process.proc.pid)
    assert pool, "the prefork worker has no pool processes"
    for pid in pool:
        reset_peak(pid)
    before = {pid: status_bytes(pid, "VmRSS") for pid in pool}

    job = ferry.submit("assets-attachment", connection="acme", file=str(big), params={"object": seed["object_id"]})
    done = ferry.wait(job.id, timeout=120)

    assert done.status == "succeeded", done.error
    assert pool_processes(worker_process.proc.pid) == pool, "a pool process was replaced: its peak is lost"
    peaks = {pid: status_bytes(pid, "VmHWM") for pid in pool}
    growth = max(peaks[pid] - before[pid] for pid in pool)
    report = {pid: f"{before[pid] / MiB:.1f} -> peak {peaks[pid] / MiB:.1f} MiB" for pid in pool}
    assert growth < GROWTH_LIMIT, f"a {SIZE // MiB} MiB upload grew a pool process by {growth / MiB:.1f} MiB: {report}"
    assert max(peaks.values()) < PEAK_LIMIT, report

    digest = sha256_streamed(big)
    received = [u for u in sandbox.uploads() if u.get("sha256") == digest]
    assert [u["size"] for u in received] == [SIZE], "the sandbox did not receive the exact bytes"
    assert (done.step("media_upload").result or {}).get("size") == SIZE
    (sandbox_server.data_dir / "blobs" / digest).unlink(missing_ok=True)  # 300 MB of disk back
