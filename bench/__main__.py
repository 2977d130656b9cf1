"""``python -m bench`` (or ``bench/run``): every benchmark, one table of every target, and
``bench/results/latest.json`` plus ``bench/results/latency.png`` (throughput vs jobs in flight).

    python -m bench [--check] [--quick] [--jobs 300] [--repeat 3] [--size 2G] [--bulk-jobs 100000]

``--quick`` (CI, < 60 s on an idle 2-core machine) runs every benchmark small; with ``--check`` it
only checks that the harness works: each section ran, every job succeeded, the results file is
well-formed. Ratios on a shared CI machine are too noisy to gate on; the full run's ``--check``
gates on the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bulk, cli_batch, goals, latency, memory, throughput
from bench.common import MiB, human, parse_size, table

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("throughput", "latency", "bulk", "cli_batch", "memory")

Check = tuple[str, str, str, bool]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Ferry's benchmarks")
    parser.add_argument("--jobs", type=int, default=300, help="throughput: jobs per configuration and round")
    parser.add_argument("--repeat", type=int, default=3, help="throughput: interleaved rounds")
    parser.add_argument("--size", default="2G", help="memory: the big file (default 2 GiB, sparse)")
    parser.add_argument("--bulk-jobs", type=int, default=100_000, help="bulk: jobs in one submit_many")
    parser.add_argument("--concurrency", default="1,4,16,64", help="latency: jobs in flight, comma-separated")
    parser.add_argument("--quick", action="store_true", help="everything small: the harness runs, ~1 min")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="results JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.repeat, args.size, args.bulk_jobs, args.concurrency = 30, 1, "50M", 5000, "4,16"
    size = parse_size(args.size)
    free = shutil.disk_usage(os.environ.get("TMPDIR", "/tmp")).free
    if free < 2 * size + 512 * MiB:
        print(f"only {human(free)} free under /tmp: too little for a {human(size)} upload; use --size",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": _machine(), "quick": args.quick}
    checks: list[Check] = []

    print(f"== throughput: {args.jobs} x 10 KiB assets-attachment jobs, {args.repeat} round(s), no latency")
    tp_rows, tp_checks = throughput.summary(throughput.measure(args.jobs, 10 * 1024, args.repeat))
    print("\n" + table(throughput.HEADERS, tp_rows))
    results["throughput"] = [dict(zip(throughput.HEADERS, row, strict=True)) for row in tp_rows]
    checks += [(c.name, c.target, c.measured, c.ok) for c in tp_checks]

    concurrencies = [int(c) for c in args.concurrency.split(",")]
    print(f"\n== latency: 50 ms per call, {concurrencies} jobs in flight")
    points = latency.measure(concurrencies, 50, jobs_per_slot=2 if args.quick else 4,
                             min_jobs=8 if args.quick else 16)
    points += latency.saturated(50, 48 if args.quick else 256)
    print("\n" + table(latency.HEADERS, latency.rows(points)))
    results["latency"] = {"latency_ms": 50, "points": [p.as_dict() for p in points]}
    checks += latency.checks(points)
    plot = latency.plot(points, args.out.with_name("latency.png"), 50)

    print(f"\n== bulk submission: {args.bulk_jobs} jobs, each naming a file of its own")
    # Every job names a file of its own, each inspected at submit, as in real use (one shared
    # file would be inspected once per call and flatter the rate).
    bulk_result = bulk.measure(args.bulk_jobs, 300 if args.quick else 2000, files=args.bulk_jobs)
    print("\n" + bulk.report(bulk_result))
    results["bulk"] = bulk_result.as_dict()
    checks += bulk.checks(bulk_result)

    lines = 2000 if args.quick else 20_000
    print(f"\n== ferry submit-batch: a {lines}-line manifest, one 10 KiB file, process start included")
    cli_result = cli_batch.measure(lines)
    results["cli_batch"] = cli_result.as_dict()
    checks += cli_batch.checks(cli_result)

    print(f"\n== memory: 2 KiB vs {human(size)}")
    mem_rows = memory.measure(size, 2 * 1024, baseline=not args.quick)
    print("\n" + memory.report(mem_rows, size, 2 * 1024))
    results["memory"] = [memory.asdict_row(r) for r in mem_rows]
    checks += memory.checks(mem_rows)

    results["checks"] = [{"check": n, "target": t, "measured": m, "ok": ok} for n, t, m, ok in checks]
    met = goals.evaluate(results)
    results["goals"] = [asdict(g) for g in met]
    results["seconds"] = round(time.monotonic() - started, 1)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n== targets" + (" (--quick: the harness is checked, not the ratios)" if args.quick else ""))
    print(table(["check", "target", "measured", "ok"], [[n, t, m, "yes" if ok else "NO"] for n, t, m, ok in checks]))
    print("\n== issue 10's table (python -m bench.goals)")
    print(table(goals.HEADERS, goals.rows(met)))
    print(f"\nwrote {args.out} and {plot} ({results['seconds']:.0f} s)")
    if not args.check:
        return 0
    gate = harness_checks(args.out) if args.quick else checks
    failed = [c for c in gate if not c[3]]
    for name, target, measured, _ in failed:
        print(f"MISSED: {name}: {measured} (target {target})", file=sys.stderr)
    return 1 if failed else 0


def harness_checks(path: Path) -> list[Check]:
    """What ``--quick --check`` gates on: the run is complete and every job succeeded."""
    data = json.loads(path.read_text())
    out: list[Check] = [(f"results has {s}", "present", "yes" if data.get(s) else "no", bool(data.get(s)))
                        for s in SECTIONS]
    succeeded = [c for c in data.get("checks", []) if "succeeded" in c["check"] or "stored" in c["check"]
                 or "requests per" in c["check"] or "in the batch" in c["check"]]
    out += [(c["check"], c["target"], c["measured"], c["ok"]) for c in succeeded]
    plot = path.with_name("latency.png")
    out.append(("latency plot written", "PNG", "yes" if plot.exists() else "no",
                plot.exists() and plot.read_bytes()[:4] == b"\x89PNG"))
    return out


def _machine() -> dict[str, Any]:
    return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()}


if __name__ == "__main__":
    raise SystemExit(main())
