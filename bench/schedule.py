"""Scheduled jobs (``not_before``): what holding them costs, and how fast they are released.

    python -m bench.schedule [--jobs 100000] [--release 10000] [--start 20] [--check]

- ``--jobs`` assets-attachment jobs submitted (``submit_many``) an hour ahead, no worker: Redis
  bytes per scheduled job (INFO ``used_memory`` delta / jobs) against as many queued jobs, and
  what a scheduled job holds beyond its record: its due-set entry and the ``not_before`` in its
  hash. Messages in the broker afterwards (0: no worker holds anything for them).
- ``--release`` jobs due at once: how long the releaser (``worker.schedule.release``, batches of
  500) takes to queue them all, each with its message.
- ``--start`` jobs scheduled 3 s ahead with a real ``ferry worker`` running: how long after its
  ``not_before`` each job's first step started (p50 / p95 / max), and that none started early.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import redis
from PIL import Image

from bench.common import percentile, scratch_redis, stack, table
from producers import keys, queue
from producers.client import Ferry, JobRequest
from producers.config import parse_config
from producers.embedded import RedisLocation
from producers.records import utc_at
from worker import schedule

TARGET_EXTRA_BYTES = 200  # per scheduled job beyond its record (the issue)
TARGET_RELEASE_S = 10.0  # 10 000 due at once
TARGET_START_LAG_S = 2.0


def _requests(doc: Path, count: int, at: float | None) -> list[JobRequest]:
    return [JobRequest.model_validate({
        "kind": "assets-attachment", "connection": "acme", "file": str(doc),
        "params": {"object": str(10_000 + n), "comment": "bench"},
        "not_before": None if at is None else utc_at(at)}) for n in range(count)]


def _store_figures(ferry: Ferry, client: redis.Redis, doc: Path, jobs: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, at in (("queued", None), ("scheduled", time.time() + 3600)):
        client.flushdb()
        before = int(client.info("memory")["used_memory"])
        outcomes = ferry.submit_many(_requests(doc, jobs, at))
        figures[f"{label} bytes/job"] = (int(client.info("memory")["used_memory"]) - before) / jobs
        sample = [o[0].id for o in outcomes[:50] if isinstance(o, tuple)]
        figures[f"{label} hash bytes"] = sum(float(client.memory_usage(keys.job(i), samples=0) or 0)
                                             for i in sample) / len(sample)
        figures[f"{label} messages in the broker"] = float(client.llen("ferry.atlassian"))
    figures["due-set entry bytes/job"] = float(client.memory_usage(keys.scheduled(), samples=0) or 0) / jobs
    figures["not_before in the hash bytes/job"] = figures["scheduled hash bytes"] - figures["queued hash bytes"]
    figures["extra bytes/job"] = figures["due-set entry bytes/job"] + figures["not_before in the hash bytes/job"]
    return figures


def _release_seconds(ferry: Ferry, client: redis.Redis, location: RedisLocation, doc: Path, jobs: int) -> float:
    client.flushdb()
    at = time.time() + 2 + jobs / 5000
    ferry.submit_many(_requests(doc, jobs, at))
    time.sleep(max(0.0, at - time.time()) + 0.01)
    publisher = queue.StepPublisher(ferry.celery, ferry.config, location)
    started = time.perf_counter()
    released = schedule.release(ferry.store, publisher)
    seconds = time.perf_counter() - started
    # Released into the connection's run (a message each) up to its window; the rest wait their
    # turn in its ready sets (the dispatcher sends them as the run frees): queued, all of them.
    sent, waiting = client.llen("ferry.atlassian"), ferry.store.ready_count(["acme"])["acme"]
    assert released == jobs == sent + waiting and sent == min(jobs, ferry.config.window_of("acme") or jobs), (
        released, jobs, sent, waiting)
    return seconds


def measure_store(jobs: int, release: int) -> dict[str, float]:
    with scratch_redis("ferry-sched-") as (home, location):
        doc = home / "doc.pdf"
        doc.write_bytes(b"%PDF-1.4\n" + b"x" * 10_000 + b"\n%%EOF\n")
        config = parse_config({"connections": {"acme": {
            "service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
            "email": "a@b.c", "token_env": "X"}}, "files": {"roots": [str(home)]}})
        ferry = Ferry(location.url, config=config)
        client = redis.Redis.from_url(location.url, decode_responses=True)
        ferry.submit_many(_requests(doc, 10, None))  # connections, imports, the first templates
        figures = _store_figures(ferry, client, doc, jobs)
        figures["release seconds"] = _release_seconds(ferry, client, location, doc, release)
        ferry.close()
        client.close()
        return figures


def measure_start_lag(jobs: int) -> list[float]:
    """Seconds from each job's not_before to its first step's start, with a real worker."""
    with stack() as s:
        users = s.control.seed()["awork"]["users"]
        image = s.home / "u.png"
        Image.new("RGB", (64, 48), "teal").save(image, "PNG")
        with s.worker(pool=None, concurrency=None):
            ferry = s.ferry()
            at = time.time() + 3
            ids = [ferry.submit("awork-image", connection="awork", file=str(image),
                                params={"entity": "users", "id": users}, not_before=utc_at(at)).id
                   for _ in range(jobs)]
            records = [ferry.wait(i, timeout=120) for i in ids]
            ferry.close()
    return [(datetime.fromisoformat(str(r.steps[0].started_at).replace("Z", "+00:00")).timestamp() - at)
            for r in records]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.schedule", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs scheduled an hour ahead (100000)")
    parser.add_argument("--release", type=int, default=10_000, help="jobs due at once (10000)")
    parser.add_argument("--start", type=int, default=20, help="jobs run by a real worker (20)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    args = parser.parse_args(argv)
    figures = measure_store(args.jobs, args.release)
    print(table(["figure", "value"], [[k, round(v, 2)] for k, v in figures.items()]))
    lags = measure_start_lag(args.start) if args.start else [0.0]
    print(f"\nstart after not_before ({args.start} jobs, a real worker): p50 {percentile(lags, 50):.2f} s, "
          f"p95 {percentile(lags, 95):.2f} s, max {max(lags):.2f} s, min {min(lags):.3f} s")
    results = [
        ("Redis bytes per scheduled job beyond its record", f"<= {TARGET_EXTRA_BYTES}",
         f"{figures['extra bytes/job']:.0f}", figures["extra bytes/job"] <= TARGET_EXTRA_BYTES),
        ("messages in the broker for scheduled jobs", "0", f"{figures['scheduled messages in the broker']:.0f}",
         figures["scheduled messages in the broker"] == 0),
        (f"release of {args.release} due at once", f"<= {TARGET_RELEASE_S:.0f} s",
         f"{figures['release seconds']:.2f} s", figures["release seconds"] <= TARGET_RELEASE_S),
        ("first step after not_before, p95", f"<= {TARGET_START_LAG_S:.0f} s", f"{percentile(lags, 95):.2f} s",
         percentile(lags, 95) <= TARGET_START_LAG_S),
        ("no job started before its not_before", ">= 0 s", f"{min(lags):.3f} s", min(lags) >= 0),
    ]
    print()
    print(table(["check", "target", "measured", "ok"], [[n, t, m, "yes" if ok else "NO"] for n, t, m, ok in results]))
    return 1 if args.check and not all(ok for *_, ok in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
