"""The archive of ended jobs (issue 27): search at a million rows, the archiver's rate, and Redis
memory with jobs flowing through and out of it.

    python -m bench.archive [--rows 1000000] [--move 20000] [--flow 20000 --rate 40] [--check]

- ``--rows`` archived rows written straight into PostgreSQL (COPY; 80 % succeeded, 17 % failed,
  3 % cancelled, created over 180 days): p95 of a file-name fragment search and of the
  failed-since-30-days list (``ArchiveStore.select``, a page of 50, as ``ferry jobs`` and the
  dashboard ask), and of an error-message fragment search.
- ``--move`` ended jobs put into a scratch Redis (``JobStore.restore``), then moved by
  ``Mover.run_round`` into that same PostgreSQL table: jobs/s.
- ``--flow`` jobs submitted at ``--rate`` jobs/s through a real worker (awork-image-delete against
  the sandbox) with ``hot_seconds = 60``: Redis ``used_memory`` at the end against at the second
  minute. The event stream is a capped buffer (``[events] max_length`` + 10 000 progress
  entries; default 110 000): the bench sets the smallest cap (10 100 entries, ~4 a job) so that at
  30 jobs/s it is full within the first two minutes too, and reports the growth without it.

PostgreSQL: ``$FERRY_BENCH_POSTGRES_URL`` (default postgres@127.0.0.1:5432, trust), in a database
of the bench's own, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import percentile, scratch_redis, stack, table
from producers.archive.mover import Mover
from producers.archive.store import ArchiveStore
from producers.config import ArchiveConfig
from producers.records import JobRecord, StepError, utc_at
from producers.store import Filters, JobStore

ADMIN_URL = os.environ.get("FERRY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_QUERY_MS = 200.0
TARGET_MOVE_PER_S = 2000.0
TARGET_GROWTH = 0.10
WORDS = ("invoice", "scan", "contract", "photo", "report", "avatar", "logo", "receipt", "drawing", "manual")
ERRORS = ("Object {n} has no attachments field", "Rate limit exceeded, retry after {n} s",
          "The avatar is too large ({n} bytes)", "Issue type {n} does not exist", "Media token expired")


@contextmanager
def database() -> Iterator[str]:
    name = f"ferry_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _record(n: int, status: str, created: datetime, rng: random.Random) -> dict[str, Any]:
    """A realistic archived record (an assets-attachment job of three steps, its runs and history)."""
    at = utc_at(created.timestamp())
    ended = utc_at(created.timestamp() + 4)
    file = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{n:07d}-{uuid.uuid4().hex[:6]}.pdf"
    error = None
    if status == "failed":
        error = StepError(step="link_attachment", status=rng.choice((400, 403, 404, 429)),
                          message=rng.choice(ERRORS).format(n=n % 997), at=ended)
    steps = [{"name": s, "status": "succeeded", "attempts": 1, "started_at": at, "finished_at": ended,
              "history": [{"run": 1, "number": 1, "started_at": at, "finished_at": ended, "status": "succeeded"}]}
             for s in ("get_credentials", "media_upload", "link_attachment")]
    if error is not None:
        steps[2].update(status="failed", error=error.model_dump())
    return JobRecord.model_validate({
        "id": uuid.uuid4().hex, "kind": "assets-attachment", "connection": "acme", "status": status,
        "created_at": at, "updated_at": ended, "finished_at": ended, "params": {"object": str(n % 5000)},
        "file": {"path": f"/data/uploads/{file}", "name": file, "size": 20_000 + n % 7000,
                 "mime_type": "application/pdf"},
        "steps": steps, "result": None if error else {"attachment_id": str(n), "media_id": uuid.uuid4().hex},
        "error": error, "runs": [{"number": 1, "trigger": "submit", "from_step": "get_credentials",
                                  "started_at": at, "finished_at": ended,
                                  "outcome": status, "error": error}]}).model_dump(mode="json")


def _status(rng: random.Random) -> str:
    roll = rng.random()
    return "succeeded" if roll < 0.80 else "failed" if roll < 0.97 else "cancelled"


def write_rows(url: str, rows: int) -> tuple[float, list[str]]:
    """COPY ``rows`` archived jobs; (seconds, a sample of file names)."""
    ArchiveStore(url).ensure()
    rng = random.Random(27)
    now = datetime.now(UTC)
    names: list[str] = []
    columns = ("id", "score", "kind", "connection", "status", "created_at", "updated_at", "finished_at",
               "batch", "tenant", "priority", "idempotency_key", "error_step", "error_status", "error_message",
               "file_name", "record", "archived_at")
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY ferry_archived_jobs ({', '.join(columns)}) FROM STDIN") as copy:
            for n in range(rows):
                created = now - timedelta(seconds=180 * 86400 * (rows - n) / rows)
                record = _record(n, _status(rng), created, rng)
                error = record["error"] or {}
                if n % 997 == 0:
                    names.append(record["file"]["name"])
                copy.write_row((record["id"], int(created.timestamp() * 1000) * 1000 + n % 1000, record["kind"],
                                record["connection"], record["status"], created, record["updated_at"],
                                created + timedelta(seconds=4), None, None, None, None, error.get("step"),
                                error.get("status"), error.get("message"), record["file"]["name"],
                                json.dumps(record, separators=(",", ":")), now))
        conn.commit()
    # A table grown over months has been vacuumed along the way; right after a bulk COPY
    # autovacuum would start on it and share the machine with the mover being measured.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) ferry_archived_jobs")
    return time.perf_counter() - started, names


def _timed(archive: ArchiveStore, filters: Filters, cursor: str | None = None) -> tuple[float, int, str | None]:
    started = time.perf_counter()
    found, more = archive.select(filters, 50, cursor)
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, len(found), (str(found[-1][1]) if more and found else None)


def measure_queries(url: str, names: Sequence[str], repeat: int = 200) -> dict[str, list[float]]:
    archive = ArchiveStore(url)
    archive.ensure()
    rng = random.Random(7)
    out: dict[str, list[float]] = {"file-name fragment": [], "failed since 30 days": [],
                                   "failed since 30 days, page 5": [], "error fragment": []}
    for name in names[:20]:  # warm-up: the connection pool, and the indexes read into memory once
        _timed(archive, Filters(file_name=name[2:10]))
    for _ in range(repeat):
        name = rng.choice(names)
        start = rng.randrange(0, len(name) - 8)
        out["file-name fragment"].append(_timed(archive, Filters(file_name=name[start:start + 8]))[0])
        since = datetime.now(UTC) - timedelta(days=30)
        ms, _, cursor = _timed(archive, Filters(status="failed", since=since))
        out["failed since 30 days"].append(ms)
        for _page in range(4):
            _, _, cursor = _timed(archive, Filters(status="failed", since=since), cursor)
        out["failed since 30 days, page 5"].append(_timed(archive, Filters(status="failed", since=since), cursor)[0])
        out["error fragment"].append(_timed(archive, Filters(error=f"{rng.randrange(997)} has no attach"))[0])
    archive.engine.dispose()
    return out


def measure_move(url: str, jobs: int, batch: int = 500) -> tuple[float, int, float]:
    """(jobs/s, jobs moved, the mover's CPU ms per job) of ``Mover.run_round`` from a scratch
    Redis into ``url``."""
    rng = random.Random(11)
    archive = ArchiveStore(url)
    with scratch_redis("ferry-arch-") as (_home, location):
        import redis
        store = JobStore(redis.Redis.from_url(location.url, decode_responses=True))
        old = datetime.now(UTC) - timedelta(days=2)
        for n in range(jobs):
            record = _record(n, rng.choice(("succeeded", "failed")), old + timedelta(milliseconds=n), rng)
            store.restore({**record, "_score": int(old.timestamp() * 1000 + n) * 1000})
        started, cpu = time.perf_counter(), time.process_time()
        moved = Mover(store, archive, ArchiveConfig(hot_seconds=3600, batch=batch)).run_round()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    archive.engine.dispose()
    return moved / seconds, moved, cpu * 1000 / max(moved, 1)


def measure_flow(url: str, jobs: int, rate: float) -> tuple[list[tuple[float, int, int]], float]:
    """Redis samples (s since start, used_memory, the event stream's bytes) while ``jobs`` flow
    through at ``rate``/s."""
    with stack() as s:
        s.config_path.write_text(s.config_path.read_text() + f'\n[archive]\nurl = "{url}"\nhot_seconds = 60\n'
                                 "interval_seconds = 2\n\n[events]\nmax_length = 100\n")
        users = s.control.seed()["awork"]["users"]
        with s.worker(pool=None, concurrency=None):
            ferry = s.ferry()
            client = s.redis()
            samples: list[tuple[float, int, int]] = []
            started = time.monotonic()
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    samples.append((time.monotonic() - started, int(client.info("memory")["used_memory"]),
                                    int(client.memory_usage("ferry:events") or 0)))
                    time.sleep(5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            ids = []
            for n in range(jobs):
                pause = started + n / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                ids.append(ferry.submit("awork-image-delete", connection="awork",
                                        params={"entity": "users", "id": users}).id)
            submitted = time.monotonic() - started
            for job_id in ids[-50:]:
                ferry.wait(job_id, timeout=600)
            time.sleep(70)  # the last jobs' hot minute, and their move
            done.set()
            sampler.join()
            ferry.close()
    return samples, submitted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--move", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="[archive] batch for --move (500)")
    parser.add_argument("--flow", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    args = parser.parse_args(argv)
    results = []
    with database() as url:
        if args.rows:
            seconds, names = write_rows(url, args.rows)
            print(f"wrote {args.rows} archived rows in {seconds:.0f} s")
            queries = measure_queries(url, names)
            print(table(["query (page of 50)", "p50 ms", "p95 ms", "max ms"],
                        [[k, f"{percentile(v, 50):.1f}", f"{percentile(v, 95):.1f}", f"{max(v):.1f}"]
                         for k, v in queries.items()]))
            for name in ("file-name fragment", "failed since 30 days"):
                p95 = percentile(queries[name], 95)
                results.append((f"{name}, p95 at {args.rows} rows", f"< {TARGET_QUERY_MS:.0f} ms",
                                f"{p95:.1f} ms", p95 < TARGET_QUERY_MS))
        if args.move:
            per_s, moved, cpu_ms = measure_move(url, args.move, args.batch)
            print(f"archiver: {moved} jobs moved at {per_s:.0f} jobs/s (batches of {args.batch}; the mover's "
                  f"own CPU {cpu_ms:.2f} ms/job; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
            results.append(("archiver rate", f">= {TARGET_MOVE_PER_S:.0f} jobs/s", f"{per_s:.0f} jobs/s",
                            per_s >= TARGET_MOVE_PER_S))
        if args.flow:
            samples, submitted = measure_flow(url, args.flow, args.rate)
            print(table(["s", "used_memory", "event stream"], [[f"{t:.0f}", m, e] for t, m, e in samples]))
            second = next(m for t, m, _ in samples if t >= 120)
            end = [m for t, m, _ in samples if t <= submitted][-1]  # the last sample while jobs still came in
            growth = (end - second) / second
            second_x = next(m - e for t, m, e in samples if t >= 120)
            end_x = [m - e for t, m, e in samples if t <= submitted][-1]
            print(f"without the capped event stream: {second_x} at 120 s, {end_x} at the end: "
                  f"{(end_x - second_x) / second_x:+.1%}")
            print(f"{args.flow} jobs submitted in {submitted:.0f} s; used_memory at 120 s {second}, at the "
                  f"last sample before the submitting ended {end}: {growth:+.1%}; after the drain "
                  f"{samples[-1][1]}")
            results.append((f"Redis growth, minute 2 to end ({args.flow} jobs at {args.rate:.0f}/s)",
                            f"< {TARGET_GROWTH:.0%}",
                            f"{growth:+.1%}", growth < TARGET_GROWTH))
    print()
    print(table(["check", "target", "measured", "ok"], [[n, t, m, "yes" if ok else "NO"] for n, t, m, ok in results]))
    return 1 if args.check and not all(ok for *_, ok in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
