"""Peak memory of one upload, small vs big: Ferry's worker vs plain requests, same run.

    python -m bench.memory [--size 2G] [--small 2K] [--check] [--no-baseline]

The brief: "no file is ever read whole into memory; a 2 GB upload costs the same RAM as 2 KB".
For each path the same job runs with a small file and then with a big sparse file (``truncate``:
no disk blocks; the sandbox streams what it receives to disk, so ~1x the size must be free
there; the blob is deleted after each upload):

- Ferry assets-attachment (media upload: requests-toolbelt MultipartEncoder) and Ferry
  jira-avatar (load: raw body, the open file as ``data=``), measured on the prefork -c 2 worker's
  POOL processes, where steps run: VmHWM reset to VmRSS ("5" > /proc/<pid>/clear_refs) before the
  job, read after it; the figure is the max over the pool processes.
- the plain-requests baseline, one fresh process per upload (bench/plain_upload.py): ``files=``
  (builds the body in memory), ``MultipartEncoder``, raw ``data=``.

``--check``: each Ferry path's peak grows by < 32 MiB from the small file to the big one (and
the sandbox received every byte: size and sha256 compared).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import CONNECTION, MiB, Stack, Worker, human, parse_size, proc_status_kib, reset_peak, stack, table
from producers.records import JobStatus

REPO = Path(__file__).resolve().parent.parent
GROWTH_LIMIT_MIB = 32.0
WARMUP_JOBS = 4  # per kind: every pool process has run every step before anything is measured


@dataclass(frozen=True)
class Reading:
    peak_mib: float  # VmHWM during the upload (max over the measured processes)
    growth_mib: float  # VmHWM - VmRSS at the start of the upload
    seconds: float


@dataclass
class Row:
    path: str
    small: Reading | None
    big: Reading | None
    note: str = ""

    @property
    def growth_mib(self) -> float | None:
        if self.small is None or self.big is None:
            return None
        return self.big.peak_mib - self.small.peak_mib


# ---- files -----------------------------------------------------------------------------------
def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """``head`` then zeros up to ``size``, with no disk blocks for the zeros (like ``truncate -s``)."""
    path.write_bytes(head)
    os.truncate(path, size)
    return path


def png_head() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buf, "PNG")
    return buf.getvalue()  # trailing bytes after IEND are ignored by every PNG reader


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


# ---- Ferry -----------------------------------------------------------------------------------
def ferry_upload(bench: Stack, worker: Worker, kind: str, path: Path, params: dict[str, Any]) -> Reading:
    pids = worker.task_pids()
    for pid in pids:
        reset_peak(pid)
    before = {pid: proc_status_kib(pid, "VmRSS") for pid in pids}
    ferry = bench.ferry()
    try:
        job = ferry.submit(kind, connection=CONNECTION, file=str(path), params=params)
        done = ferry.wait(job.id, timeout=1800, poll=0.05)
    finally:
        ferry.close()
    if done.status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"{kind} job failed: {done.error}")
    if worker.task_pids() != pids:
        raise RuntimeError("a pool process was replaced during the upload; its peak is lost")
    peaks = {pid: proc_status_kib(pid, "VmHWM") for pid in pids}
    seconds = _seconds(done.created_at, done.finished_at or done.created_at)
    return Reading(max(peaks.values()) / 1024, max(peaks[p] - before[p] for p in pids) / 1024, seconds)


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    def at(s: str) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    return at(end) - at(start)


# ---- plain requests --------------------------------------------------------------------------
def plain_upload(bench: Stack, mode: str, path: Path) -> Reading:
    seed = bench.control.seed()
    out = subprocess.run(
        [sys.executable, "-m", "bench.plain_upload", mode, "--url", bench.control.url, "--path", str(path),
         "--workspace", seed["workspace_id"], "--object", seed["object_id"], "--project", seed["project_id"]],
        cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"plain {mode} upload failed:\n{out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    return Reading(data["hwm_kib"] / 1024, (data["hwm_kib"] - data["rss_before_kib"]) / 1024, data["seconds"])


def memory_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- the benchmark ---------------------------------------------------------------------------
class Run:
    def __init__(self, bench: Stack, log: Callable[[str], None]) -> None:
        self.bench = bench
        self.log = log
        self.blobs = bench.sandbox.data_dir / "blobs"
        self.verified: list[str] = []

    def received(self, path: Path, expected_sha: str) -> None:
        """The sandbox got every byte; then its copy goes (disk space for the next big upload)."""
        ok = any(u.get("sha256") == expected_sha and u.get("size") == path.stat().st_size
                 for u in self.bench.control.uploads())
        if not ok:
            raise RuntimeError(f"the sandbox did not receive {path.name} intact")
        self.verified.append(path.name)
        for blob in self.blobs.glob("*"):
            if blob.is_file() and blob.stat().st_size > MiB:
                blob.unlink()

    def measure(self, label: str, files: tuple[Path, Path], shas: tuple[str, str],
                upload: Callable[[Path], Reading]) -> Row:
        readings = []
        for path, sha in zip(files, shas, strict=True):
            reading = upload(path)
            self.received(path, sha)
            self.log(f"  {label:<44} {human(path.stat().st_size):>9}: peak {reading.peak_mib:7.1f} MiB, "
                     f"+{reading.growth_mib:6.1f} MiB during the upload, {reading.seconds:5.1f} s")
            readings.append(reading)
        return Row(label, readings[0], readings[1])


def measure(size: int, small: int, baseline: bool, log: Callable[[str], None] = print) -> list[Row]:
    rows: list[Row] = []
    with stack() as bench:
        run = Run(bench, log)
        files_dir = bench.home / "files"
        files_dir.mkdir()
        head = png_head()
        attach = (sparse(files_dir / "small.bin", small, os.urandom(64)), sparse(files_dir / "big.bin", size))
        avatar = (sparse(files_dir / "small.png", small, head), sparse(files_dir / "big.png", size, head))
        log(f"  hashing the files ({human(size)} each for the big ones)…")
        attach_sha = (sha256_of(attach[0]), sha256_of(attach[1]))
        avatar_sha = (sha256_of(avatar[0]), sha256_of(avatar[1]))
        seed = bench.control.seed()
        attach_params = {"object": seed["object_id"], "workspace": seed["workspace_id"]}
        avatar_params = {"type": "project", "owner": seed["project_id"]}
        with bench.worker("prefork", 2) as worker:
            for _ in range(WARMUP_JOBS):
                ferry_upload(bench, worker, "assets-attachment", attach[0], attach_params)
                ferry_upload(bench, worker, "jira-avatar", avatar[0], avatar_params)
            rows.append(run.measure("ferry assets-attachment (multipart, pool)", attach, attach_sha,
                                    lambda p: ferry_upload(bench, worker, "assets-attachment", p, attach_params)))
            rows.append(run.measure("ferry jira-avatar (raw body, pool)", avatar, avatar_sha,
                                    lambda p: ferry_upload(bench, worker, "jira-avatar", p, avatar_params)))
        if baseline:
            rows.append(_files_baseline(run, bench, attach, attach_sha, size))
            rows.append(run.measure("plain requests MultipartEncoder", attach, attach_sha,
                                    lambda p: plain_upload(bench, "encoder", p)))
            rows.append(run.measure("plain requests data=<file> (raw)", avatar, avatar_sha,
                                    lambda p: plain_upload(bench, "raw", p)))
    return rows


def _files_baseline(run: Run, bench: Stack, attach: tuple[Path, Path], shas: tuple[str, str], size: int) -> Row:
    # files= holds the body in memory about twice over (celery-notes: 200 MB -> 409 MiB).
    needed = 3 * size + 512 * MiB
    if memory_available() < needed:
        note = f"skipped: needs ~{human(needed)} of RAM, {human(memory_available())} available"
        run.log(f"  plain requests files=: {note}")
        return Row("plain requests files=", None, None, note)
    return run.measure("plain requests files=", attach, shas, lambda p: plain_upload(bench, "files", p))


def report(rows: Sequence[Row], size: int, small: int) -> str:
    def fmt(reading: Reading | None, attr: str) -> object:
        return "-" if reading is None else getattr(reading, attr)

    body = []
    for row in rows:
        ratio = (row.big.peak_mib / row.small.peak_mib) if row.big and row.small else "-"
        body.append([row.path, fmt(row.small, "peak_mib"), fmt(row.big, "peak_mib"),
                     "-" if row.growth_mib is None else row.growth_mib, ratio,
                     fmt(row.big, "growth_mib"), fmt(row.big, "seconds"), row.note])
    return table(["path", f"peak MiB {human(small)}", f"peak MiB {human(size)}", "growth MiB",
                  "ratio big/small", "+MiB in big upload", f"s for {human(size)}", "note"], body)


def checks(rows: Sequence[Row]) -> list[tuple[str, str, str, bool]]:
    out = []
    for row in rows:
        if row.path.startswith("ferry") and row.growth_mib is not None:
            out.append((f"{row.path}: peak growth small -> big", f"< {GROWTH_LIMIT_MIB:g} MiB",
                        f"{row.growth_mib:.1f} MiB", row.growth_mib < GROWTH_LIMIT_MIB))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2G", help="the big file (2G = 2 GiB; sparse)")
    parser.add_argument("--small", default="2K", help="the small file (2K)")
    parser.add_argument("--no-baseline", action="store_true", help="Ferry only, no plain-requests runs")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 unless Ferry's peak grows < {GROWTH_LIMIT_MIB:g} MiB")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    size, small = parse_size(args.size), parse_size(args.small)
    free = shutil.disk_usage(os.environ.get("TMPDIR", "/tmp")).free
    if free < 2 * size + 512 * MiB:
        print(f"not enough free disk under /tmp for a {human(size)} upload (the sandbox stores what it "
              f"receives): {human(free)} free, want {human(2 * size + 512 * MiB)}; try --size", file=sys.stderr)
        return 2
    print(f"memory: {human(small)} vs {human(size)} uploads, prefork -c 2 worker")
    started = time.monotonic()
    rows = measure(size, small, not args.no_baseline)
    print()
    print(report(rows, size, small))
    results = checks(rows)
    print()
    print(table(["check", "target", "measured", "ok"], [[n, t, m, "yes" if ok else "NO"] for n, t, m, ok in results]))
    print(f"\n({time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps([asdict_row(r) for r in rows], indent=2))
    return 1 if args.check and not all(ok for *_, ok in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())


def asdict_row(row: Row) -> dict[str, Any]:
    """A row as JSON-ready data (bench/results/latest.json)."""
    return {"path": row.path, "small": row.small and asdict(row.small), "big": row.big and asdict(row.big),
            "growth_mib": row.growth_mib, "note": row.note}
