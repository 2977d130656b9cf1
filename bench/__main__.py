"""``python -m bench`` (or ``bench/run``): the throughput and the memory benchmarks, then one
table of every target.

    python -m bench [--check] [--quick] [--jobs 300] [--repeat 3] [--size 2G]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from bench import memory, throughput
from bench.common import MiB, human, parse_size, table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Ferry's benchmarks: throughput, memory")
    parser.add_argument("--jobs", type=int, default=300, help="throughput: jobs per configuration and round")
    parser.add_argument("--repeat", type=int, default=3, help="throughput: interleaved rounds")
    parser.add_argument("--size", default="2G", help="memory: the big file (default 2 GiB, sparse)")
    parser.add_argument("--quick", action="store_true", help="100 jobs x 1 round, a 200 MiB big file")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.repeat, args.size = 100, 1, "200M"
    size = parse_size(args.size)
    free = shutil.disk_usage(os.environ.get("TMPDIR", "/tmp")).free
    if free < 2 * size + 512 * MiB:
        print(f"only {human(free)} free under /tmp: too little for a {human(size)} upload; use --size",
              file=sys.stderr)
        return 2

    print(f"== throughput: {args.jobs} x 10 KiB assets-attachment jobs, {args.repeat} round(s)")
    rows, tp_checks = throughput.summary(throughput.measure(args.jobs, 10 * 1024, args.repeat))
    print()
    print(table(throughput.HEADERS, rows))

    print(f"\n== memory: 2 KiB vs {human(size)}")
    mem_rows = memory.measure(size, 2 * 1024, baseline=True)
    print()
    print(memory.report(mem_rows, size, 2 * 1024))

    checks = [[c.name, c.target, c.measured, "yes" if c.ok else "NO"] for c in tp_checks]
    checks += [[n, t, m, "yes" if ok else "NO"] for n, t, m, ok in memory.checks(mem_rows)]
    print("\n== targets")
    print(table(["check", "target", "measured", "ok"], checks))
    return 1 if args.check and any(row[-1] != "yes" for row in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
