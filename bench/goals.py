"""Issue 10's table, read off one ``bench/run``: each figure as the issue measured it, its goal,
what this run measured, and whether the goal is met.

    python -m bench.goals [bench/results/latest.json] [--markdown]

Every figure is a ratio against the plain-``requests`` baseline of the same run, or a count
(Redis commands, script calls, bytes) that does not depend on the machine's load. Where a
figure is missing from the results (``--quick`` skips nothing, but an older results file may
lack a configuration), its row says so instead of guessing.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import table
from bench.latency import SATURATED

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"

# The latency section's configurations that the two 50 ms rows compare.
PLAIN_8, DEFAULT_SATURATED, THREADS_16 = SATURATED


@dataclass(frozen=True)
class Goal:
    figure: str
    before: str  # as issue 10 measured it
    goal: str
    measured: str
    met: bool | None  # None: not measured in these results


def _throughput(results: dict[str, Any], configuration: str, column: str) -> float:
    for row in results.get("throughput", []):
        if row.get("configuration") == configuration:
            value = row.get(column)
            return float(value) if isinstance(value, int | float) else math.nan
    return math.nan


def _latency(results: dict[str, Any], configuration: str) -> float:
    points = results.get("latency", {}).get("points", [])
    rates = [p["jobs_per_s"] for p in points if p.get("configuration") == configuration]
    return max(rates) if rates else math.nan


def _bulk(results: dict[str, Any], key: str) -> float:
    value = results.get("bulk", {}).get(key)
    return float(value) if isinstance(value, int | float) else math.nan


def _goal(figure: str, before: str, goal: str, value: float, ok: Callable[[float], bool],
          shown: Callable[[float], str]) -> Goal:
    if math.isnan(value):
        return Goal(figure, before, goal, "not measured", None)
    return Goal(figure, before, goal, shown(value), ok(value))


def evaluate(results: dict[str, Any]) -> list[Goal]:
    default = "ferry default worker"
    plain_8 = _latency(results, PLAIN_8)
    plain_cpu = _throughput(results, "plain loop", "CPU ms/job")
    plain_p50 = _throughput(results, "plain loop", "idle p50 ms")
    times = lambda v: f"{v:.2f}x"  # noqa: E731
    return [
        _goal("default `ferry worker` at 50 ms per call, vs plain with 8 threads", "0.22x", ">= 0.95x",
              _latency(results, DEFAULT_SATURATED) / plain_8, lambda v: v >= 0.95, times),
        _goal("`--pool threads -c 16` (one process) at 50 ms per call, vs plain with 8 threads", "0.77x",
              ">= 1.5x", _latency(results, THREADS_16) / plain_8, lambda v: v >= 1.5, times),
        _goal("CPU per job, all processes, default worker vs the plain loop", "5.8x", "<= 2.5x",
              _throughput(results, default, "CPU ms/job") / plain_cpu, lambda v: v <= 2.5,
              lambda v: f"{v:.1f}x ({_throughput(results, default, 'CPU ms/job'):.1f} vs {plain_cpu:.1f} ms)"),
        _goal("CPU per job, prefork -c 2 vs the plain loop", "5.8x", "<= 2.5x",
              _throughput(results, "ferry prefork -c 2", "CPU ms/job") / plain_cpu, lambda v: v <= 2.5,
              lambda v: f"{v:.1f}x"),
        _goal("Redis commands per job (Celery's own included)", "104", "<= 60",
              _throughput(results, default, "Redis cmds/job"), lambda v: v <= 60, lambda v: f"{v:.0f}"),
        _goal("Ferry's own Redis round trips per step (Lua transitions; the submit's script included)", "~10", "<= 3",
              _throughput(results, default, "script calls/step"), lambda v: v <= 3, lambda v: f"{v:.1f}"),
        _goal("bare loopback, default worker, jobs/s vs plain loop", "0.23x", ">= 0.45x",
              _throughput(results, default, "x plain loop"), lambda v: v >= 0.45, times),
        _goal("idle latency p50, one job at a time, default worker vs plain", "6.7x", "<= 3x",
              _throughput(results, default, "idle p50 ms") / plain_p50, lambda v: v <= 3,
              lambda v: f"{v:.1f}x ({_throughput(results, default, 'idle p50 ms'):.0f} vs {plain_p50:.1f} ms)"),
        _goal("submission, Python API one by one", "660 jobs/s", ">= 2 000 jobs/s",
              _bulk(results, "one_by_one_jobs_per_s"), lambda v: v >= 2000, lambda v: f"{v:,.0f} jobs/s"),
        _goal("submission, `Ferry.submit_many` (submit-batch, POST /jobs:batch)", "471 jobs/s",
              ">= 10 000 jobs/s", _bulk(results, "bulk_jobs_per_s"), lambda v: v >= 10_000,
              lambda v: f"{v:,.0f} jobs/s"),
        _goal("Redis memory per queued job (record + indexes + message)", "4.0 KB", "<= 1.5 KB",
              _bulk(results, "bytes_per_job"), lambda v: v <= 1536, lambda v: f"{v / 1024:.2f} KB"),
    ]


def rows(goals: Sequence[Goal]) -> list[list[object]]:
    return [[g.figure, g.before, g.goal, g.measured, "-" if g.met is None else ("yes" if g.met else "no")]
            for g in goals]


HEADERS = ["figure", "issue 10 measured", "goal", "now", "met"]


def markdown(goals: Sequence[Goal]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows(goals)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.goals", description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (README, closing notes)")
    args = parser.parse_args(argv)
    goals = evaluate(json.loads(args.results.read_text()))
    print(markdown(goals) if args.markdown else table(HEADERS, rows(goals)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
