"""Measure the sandbox's ceiling for small uploads (media `POST /file`, multipart).

    python -m sandbox.bench --url http://127.0.0.1:8900 --processes 2 --threads 4 --seconds 10

Each worker thread keeps one requests.Session (keep-alive) and uploads `--size` bytes in a loop,
fetching Assets credentials once. Prints requests/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time
from typing import Any

import requests

from sandbox.testing import SandboxControl


def credentials(url: str) -> dict[str, Any]:
    sb = SandboxControl(url)
    seed = sb.seed()
    ws, oid = seed["workspace_id"], seed["object_id"]
    path = f"/jsm/assets/workspace/{ws}/v1/attachments/object/{oid}/credentials"
    result: dict[str, Any] = requests.get(url + path, auth=sb.basic, timeout=10).json()
    return result


def worker(creds: dict[str, Any], payload: bytes, until: float, out: list[float]) -> None:
    session = requests.Session()
    headers = {
        "Authorization": f"Bearer {creds['mediaJwtToken']}",
        "X-Client-Id": creds["clientId"],
    }
    target = f"{creds['mediaBaseUrl']}/file"
    while time.monotonic() < until:
        started = time.monotonic()
        response = session.post(
            target,
            params={"name": "bench.bin"},
            files={"file": ("bench.bin", payload)},
            headers=headers,
            timeout=30,
        )
        if response.status_code != 201:
            raise RuntimeError(f"unexpected {response.status_code}: {response.text[:200]}")
        out.append(time.monotonic() - started)


def run_process(args: tuple[dict[str, Any], int, int, float]) -> list[float]:
    creds, threads, size, seconds = args
    payload = bytes(size)
    until = time.monotonic() + seconds
    latencies: list[float] = []
    pool = [threading.Thread(target=worker, args=(creds, payload, until, latencies)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bench")
    parser.add_argument("--url", default="http://127.0.0.1:8900")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    creds = credentials(args.url)
    job = (creds, args.threads, args.size, args.seconds)
    with multiprocessing.Pool(args.processes) as pool:
        results = pool.map(run_process, [job] * args.processes)
    latencies = sorted(x for r in results for x in r)
    count = len(latencies)
    print(
        f"{count} uploads of {args.size} B in {args.seconds:.0f}s from "
        f"{args.processes}x{args.threads} clients: {count / args.seconds:.0f} req/s, "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(count * 0.99) - 1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
