"""``ferry submit-batch`` as a user runs it: a JSONL manifest of assets-attachment jobs sharing
one 10 KiB file, no worker running, the process's start included; and the profile of what the
command adds to ``Ferry.submit_many``.

    python -m bench.cli_batch [--jobs 20000] [--profile] [--check]

jobs/s = manifest lines / the wall-clock time of the whole ``python -m producers submit-batch FILE
--json`` process (interpreter start, imports, reading and checking the manifest, the batch's open
and seal, the submission, the JSON report). ``--profile`` runs it once more under cProfile and
prints the functions with the most cumulative time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import verdict
from producers.embedded import EmbeddedRedis

TARGET_JOBS_PER_S = 5_000.0  # issue 24 (1 789 jobs/s measured this way before it)
CONFIG = """[connections.acme]
service = "atlassian"
site_url = "https://acme.example"
api_url = "https://api.example"
email = "a@b.c"
token_env = "X"

[files]
roots = ["{root}"]
"""


@dataclass
class CliBatchResult:
    jobs: int
    seconds: float
    jobs_per_s: float
    created: int
    batch_total: int
    cpu_seconds: float = 0.0  # the command's own CPU (user + system): steadier than wall time on a busy machine
    # Where the command's time goes (seconds; ``phases``): interpreter start and imports, reading
    # and checking the manifest, storing it (``submit_prepared``), writing the JSON report.
    phases: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def manifest(home: Path, jobs: int) -> Path:
    doc = home / "doc.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + b"x" * 10 * 1024 + b"\n%%EOF\n")
    path = home / "manifest.jsonl"
    with path.open("w") as fh:
        for n in range(jobs):
            fh.write(json.dumps({"kind": "assets-attachment", "connection": "acme", "file": "doc.pdf",
                                 "params": {"object": str(10_000 + n), "comment": "bench"}}) + "\n")
    return path


def measure(jobs: int, profile: bool = False, log=print) -> CliBatchResult:  # type: ignore[no-untyped-def]
    home = Path(tempfile.mkdtemp(prefix="ferry-cli-batch-"))
    server = EmbeddedRedis(home / "redis")
    try:
        location = server.ensure_running()
        config = home / "ferry.toml"
        config.write_text(CONFIG.format(root=home))
        env = {**os.environ, "REDIS_URL": location.url, "FERRY_CONFIG": str(config), "FERRY_HOME": str(home)}
        path = manifest(home, jobs)
        command = [sys.executable, "-m", "producers", "submit-batch", str(path), "--json"]
        subprocess.run([*command[:3], "--help"], env=env, capture_output=True, check=True)  # warm the disk cache
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if run.returncode != 0:
            raise RuntimeError(f"submit-batch exited {run.returncode}: {run.stderr[-2000:]}")
        report = json.loads(run.stdout)
        total = _batch_total(env, report["batch"])
        result = CliBatchResult(jobs, seconds, jobs / seconds, report["summary"]["created"], total,
                                round(cpu, 3), phases(path, env))
        log(f"  ferry submit-batch: {jobs} lines in {seconds:.2f} s = {result.jobs_per_s:,.0f} jobs/s "
            f"(process start included; {cpu:.2f} s of CPU, load {os.getloadavg()[0]:.1f}); batch total {total}")
        log("  where its time goes (each part timed alone): " + ", ".join(
            f"{name} {value:.2f} s" for name, value in result.phases.items()))
        if profile:
            log(_profile(command[3:], env))
        return result
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def phases(path: Path, env: dict[str, str]) -> dict[str, float]:
    """The command's parts timed one by one: the interpreter's start and imports (a process that
    only imports what ``submit-batch`` imports), then in this process, on the same manifest and
    into a batch of its own, what ``producers.cli.batch.run`` does: read and check the manifest,
    store it (``Ferry.submit_prepared``, what ``submit_many`` runs), write the JSON report."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import producers.cli, producers.cli.batch"], env=env, check=True)
    found = {"start + imports": time.perf_counter() - started}
    saved_env = dict(os.environ)
    os.environ.update(env)
    try:
        from rich.console import Console

        from producers.cli import batch
        from producers.client import Ferry

        quiet = Console(file=io.StringIO())
        ferry = Ferry()
        with batch.no_cycle_collection():  # as the command runs them
            started = time.perf_counter()
            lines = batch.read_manifest(path)
            batch.check(ferry, lines)
            found["read + check"] = time.perf_counter() - started
            outcome = batch.BatchOutcome(lines)
            started = time.perf_counter()
            with ferry.open_batch(None, None) as opened:
                outcome.batch = opened.id
                outcome.submitted = batch.submit(ferry, lines, quiet, opened.id)
            found["store (submit_prepared)"] = time.perf_counter() - started
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                batch.print_report(outcome)
            found["JSON report"] = time.perf_counter() - started
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return {name: round(value, 3) for name, value in found.items()}


def _batch_total(env: dict[str, str], batch: str) -> int:
    run = subprocess.run([sys.executable, "-m", "producers", "batch", "status", batch, "--json"], env=env,
                         capture_output=True, text=True, check=True)
    return int(json.loads(run.stdout)["total"])


def _profile(args: list[str], env: dict[str, str]) -> str:
    """The command once more, in this process under cProfile: where its time goes."""
    saved_env = dict(os.environ)
    os.environ.update(env)
    profiler = cProfile.Profile()
    try:
        from producers.cli import cli

        profiler.enable()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                cli.main(args=args, obj={}, standalone_mode=False)
        except SystemExit:
            pass
        finally:
            profiler.disable()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    return out.getvalue()


def checks(result: CliBatchResult) -> list[tuple[str, str, str, bool]]:
    return [
        (f"ferry submit-batch jobs/s ({result.jobs} lines, process start included)", f">= {TARGET_JOBS_PER_S:,.0f}",
         f"{result.jobs_per_s:,.0f}", result.jobs_per_s >= TARGET_JOBS_PER_S),
        ("every line in the batch", f"{result.jobs}", f"{result.batch_total}", result.batch_total == result.jobs),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_batch", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="manifest lines (20000)")
    parser.add_argument("--profile", action="store_true", help="also profile one run (cProfile, in process)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    args = parser.parse_args(argv)
    result = measure(args.jobs, profile=args.profile)
    return verdict(checks(result), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
