"""Where a worker's CPU goes under ``bench.throughput``'s load: py-spy on every worker process.

    python -m bench.profile [--jobs 300] [--pool prefork] [--concurrency 2] [--top 25]

Runs the throughput benchmark's burst (10 KiB assets-attachment jobs, sandbox without latency)
while ``py-spy record`` samples the worker's main process and each pool process (``--idle``
left out, so waiting threads do not count), then prints, per process group, the functions with
the most samples on the stack (inclusive) and at the top of it (self). Also prints the Redis
commands per job, by command (INFO commandstats deltas). py-spy is not a dependency of Ferry:
``.venv/bin/pip install py-spy`` (it needs ptrace on the worker's processes, as a child of ours).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.common import CONNECTION, Stack, parse_size, stack, table
from bench.throughput import WARMUP_JOBS, _burst, make_files, warm_worker
from producers.client import Ferry
from producers.records import JobStatus

BOOTSTRAP_SHARE = 0.85


def commandstats(ferry: Ferry) -> dict[str, int]:
    """Calls per Redis command so far (``INFO commandstats``)."""
    stats = ferry.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def commands_per_job(before: dict[str, int], after: dict[str, int], jobs: int) -> dict[str, float]:
    """Calls per job of each command between two ``commandstats`` readings, most first."""
    delta = {name: (calls - before.get(name, 0)) / jobs for name, calls in after.items()}
    return dict(sorted(((n, d) for n, d in delta.items() if d > 0), key=lambda item: -item[1]))


def _frames(raw: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Inclusive and self sample counts per function from py-spy's collapsed-stack output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack_text.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return inclusive, own, total


def _short(frame: str) -> str:
    """``fn (path/to/module.py:12)`` -> ``fn (module.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def profile(bench: Stack, files: Sequence[Path], pool: str, concurrency: int,
            out: Path) -> tuple[dict[str, Path], dict[str, float]]:
    with warm_worker(bench, files, pool, concurrency) as (worker, ferry, params):
        targets = {"main": worker.proc.pid,
                   **{f"pool-{i}": pid for i, pid in enumerate(worker.pids()["pool"])}}
        spies = {name: subprocess.Popen(
            [_py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
             "--output", str(out / f"{name}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in targets.items()}
        before = commandstats(ferry)
        _, polls = _burst(ferry, files, params)
        after = commandstats(ferry)
        # Less the burst's own reads: its polls of the status counts, and each record at the end.
        after["zcard"] -= polls * len(JobStatus)
        after["hgetall"] -= len(files)
        per_job = commands_per_job(before, after, len(files))
        for spy in spies.values():
            spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        for spy in spies.values():
            spy.wait(timeout=30)
    return {name: out / f"{name}.txt" for name in targets}, per_job


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


def report(outputs: dict[str, Path], per_job: dict[str, float], top: int) -> str:
    lines = []
    groups: dict[str, list[Path]] = {"worker main": [], "pool": []}
    for name, path in outputs.items():
        groups["worker main" if name == "main" else "pool"].append(path)
    for group, paths in groups.items():
        inclusive: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        total = 0
        for path in paths:
            if path.exists():
                i, o, t = _frames(path)
                inclusive, own, total = inclusive + i, own + o, total + t
        if not total:
            continue
        lines.append(f"== {group}: {total} samples (CPU only)")
        # Frames on (nearly) every stack are the process's own start-up and event loop: left out.
        below = [(f, n) for f, n in inclusive.most_common() if n < BOOTSTRAP_SHARE * total][:top]
        rows = [[f, f"{100 * n / total:.1f}", f"{100 * own[f] / total:.1f}"] for f, n in below]
        lines.append(table(["function (inclusive)", "% total", "% self"], rows))
        rows = [[f, f"{100 * n / total:.1f}"] for f, n in own.most_common(top)]
        lines.append(table(["function (self)", "% self"], rows))
    lines.append(f"== Redis commands per job: {sum(per_job.values()):.1f}")
    lines.append(table(["command", "per job"], [[n, f"{d:.2f}"] for n, d in per_job.items()]))
    return "\n\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--size", default="10K")
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="copy py-spy's raw collapsed stacks here")
    args = parser.parse_args(argv)
    with stack() as bench:
        files = make_files(bench.home / "files", max(args.jobs, WARMUP_JOBS), parse_size(args.size))
        out = bench.home / "profiles"
        out.mkdir()
        outputs, per_job = profile(bench, files[:args.jobs], args.pool, args.concurrency, out)
        print(f"profile: {args.jobs} assets-attachment jobs, connection {CONNECTION}, "
              f"{args.pool} -c {args.concurrency}\n")
        print(report(outputs, per_job, args.top))
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in outputs.values():
                if path.exists():
                    shutil.copy(path, args.keep / path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
