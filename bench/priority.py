"""What runs next, measured with a real ``ferry worker`` against the sandbox (issue 25's figures).

    python -m bench.priority [--backlog 5000] [--highs 20] [--trickle 200] [--tenant-jobs 20] [--check]

- **high behind a low backlog**: ``--backlog`` low jobs waiting on a connection limited to 20
  requests/s, then ``--highs`` high jobs submitted one at a time (0.25 s apart): seconds from each
  high job's submit to its first step's start (p50 / p95 / max).
- **the limiter**: on a connection limited to 5 requests/s with ``--trickle`` single-request low
  jobs waiting, one single-request high job at a time (3 of them): seconds from its submit to its end.
- **tenant turns**: on the 20 requests/s connection, tenant B's ``--tenant-jobs`` jobs alone (submit
  to the last one's end), then the same after tenant A submitted ``--backlog`` at the same priority.
  "Alone" is at the connection's rate: B submits as another tenant's jobs end, so the limiter's
  one-second burst is spent (on a rested connection B's 20 go in one burst: shown too).

Every job is an ``awork-image`` upload: one request. The connections' window is Ferry's default
(half a second of the rate limit). The machine is shared: wall-clock figures swing with its load.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from PIL import Image

from bench.common import Stack, percentile, stack, table
from producers.client import Ferry, JobRequest
from producers.records import JobRecord

TARGET_HIGH_START_S = 2.0  # p95, behind the low backlog on 20 requests/s
TARGET_HIGH_END_S = 5.0  # on 5 requests/s behind single-request low jobs
TARGET_TENANT_RATIO = 2.0  # B's jobs with A's backlog / alone

CONNECTIONS = """
[connections.paced]
service = "awork"
base_url = "{url}"
token_env = "FERRY_TEST_AWORK_TOKEN"
rate_limit = 20

[connections.trickle]
service = "awork"
base_url = "{url}"
token_env = "FERRY_TEST_AWORK_TOKEN"
rate_limit = 5
"""


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()


def _requests(image: Path, users: str, connection: str, count: int) -> list[JobRequest]:
    return [JobRequest(kind="awork-image", connection=connection, file=str(image),
                       params={"entity": "users", "id": users}) for _ in range(count)]


def _submit(ferry: Ferry, image: Path, users: str, connection: str, **extra: str) -> JobRecord:
    return ferry.submit("awork-image", connection=connection, file=str(image),
                        params={"entity": "users", "id": users}, **extra)


def _highs_behind_backlog(s: Stack, image: Path, users: str, backlog: int, highs: int) -> list[float]:
    with s.worker(pool=None, concurrency=None):
        ferry = s.ferry()
        ferry.submit_many(_requests(image, users, "paced", backlog), priority="low")
        time.sleep(1.0)  # the run is full, the limiter busy
        ids = []
        for _ in range(highs):
            ids.append(_submit(ferry, image, users, "paced", priority="high").id)
            time.sleep(0.25)
        records = [ferry.wait(i, timeout=120) for i in ids]
        ferry.close()
    return [_epoch(r.steps[0].started_at) - _epoch(r.created_at) for r in records]


def _high_through_limiter(s: Stack, image: Path, users: str, waiting: int, rounds: int = 3) -> list[float]:
    with s.worker(pool=None, concurrency=None):
        ferry = s.ferry()
        ferry.submit_many(_requests(image, users, "trickle", waiting), priority="low")
        time.sleep(2.0)
        found = []
        for _ in range(rounds):
            record = ferry.wait(_submit(ferry, image, users, "trickle", priority="high").id, timeout=120)
            found.append(_epoch(record.finished_at) - _epoch(record.created_at))
        ferry.close()
    return found


def _tenant_b(s: Stack, image: Path, users: str, backlog: int, jobs: int, *, spent: bool = False) -> float:
    """Seconds from B's submit to its last job's end (after A's ``backlog``, if any; ``spent``:
    right after as many jobs of a tenant C ended, so the limiter's one-second burst is used up
    and B runs at the connection's rate)."""
    with s.worker(pool=None, concurrency=None):
        ferry = s.ferry()
        if spent:
            for outcome in ferry.submit_many(_requests(image, users, "paced", jobs), priority="normal", tenant="c"):
                assert isinstance(outcome, tuple)
                ferry.wait(outcome[0].id, timeout=60)
        if backlog:
            ferry.submit_many(_requests(image, users, "paced", backlog), priority="normal", tenant="a")
            time.sleep(1.0)
        started = time.time()
        ids = [o[0].id for o in ferry.submit_many(_requests(image, users, "paced", jobs), priority="normal",
                                                  tenant="b") if isinstance(o, tuple)]
        records = [ferry.wait(i, timeout=300) for i in ids]
        ferry.close()
    return max(_epoch(r.finished_at) for r in records) - started


def measure(backlog: int, highs: int, trickle: int, tenant_jobs: int) -> dict[str, list[float]]:
    with stack() as s:
        s.config_path.write_text(s.config_path.read_text() + CONNECTIONS.format(url=s.control.url))
        users = s.control.seed()["awork"]["users"]
        image = s.home / "u.png"
        Image.new("RGB", (64, 48), "teal").save(image, "PNG")
        return {
            "high start behind low backlog": _highs_behind_backlog(s, image, users, backlog, highs),
            "high end through the limiter": _high_through_limiter(s, image, users, trickle),
            "tenant b alone (the limiter's burst)": [_tenant_b(s, image, users, 0, tenant_jobs)],
            "tenant b alone": [_tenant_b(s, image, users, 0, tenant_jobs, spent=True)],
            "tenant b after a": [_tenant_b(s, image, users, backlog, tenant_jobs)],
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.priority", description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=5000, help="low (or tenant A's) jobs waiting (5000)")
    parser.add_argument("--highs", type=int, default=20, help="high jobs submitted one at a time (20)")
    parser.add_argument("--trickle", type=int, default=200, help="low jobs waiting on 5 requests/s (200)")
    parser.add_argument("--tenant-jobs", type=int, default=20, help="tenant B's jobs (20)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    args = parser.parse_args(argv)
    found = measure(args.backlog, args.highs, args.trickle, args.tenant_jobs)
    rows = [[name, len(v), f"{percentile(v, 50):.2f}", f"{percentile(v, 95):.2f}", f"{max(v):.2f}"]
            for name, v in found.items()]
    print(table(["figure (seconds)", "n", "p50", "p95", "max"], rows))
    start95 = percentile(found["high start behind low backlog"], 95)
    end_max = max(found["high end through the limiter"])
    ratio = found["tenant b after a"][0] / found["tenant b alone"][0]
    results = [
        (f"high job's start behind {args.backlog} low on 20 req/s, p95", f"<= {TARGET_HIGH_START_S:.0f} s",
         f"{start95:.2f} s", start95 <= TARGET_HIGH_START_S),
        (f"high job's end behind {args.trickle} low on 5 req/s, max", f"<= {TARGET_HIGH_END_S:.0f} s",
         f"{end_max:.2f} s", end_max <= TARGET_HIGH_END_S),
        (f"tenant B's {args.tenant_jobs} after A's {args.backlog} / alone", f"<= {TARGET_TENANT_RATIO:.0f}x",
         f"{ratio:.2f}x", ratio <= TARGET_TENANT_RATIO),
    ]
    print()
    print(table(["check", "target", "measured", "ok"], [[n, t, m, "yes" if ok else "NO"] for n, t, m, ok in results]))
    return 1 if args.check and not all(ok for *_, ok in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
