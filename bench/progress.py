"""CPU of one big upload with and without upload progress, same run.

    python -m bench.progress [--size 1G] [--repeat 3]

One process sends a sparse file of ``--size`` through ``worker.http.Destination`` (the stall rule,
the capped send buffer) as a raw body to a sink in another process that reads and discards it.
"with progress": inside ``worker.progress.tracking`` (the file counted as it is read, figures
made at most once a second; the writer here stores nothing, so the figure is the counting, not
Redis, which sees one call a second). "without": the plain file. The sender's CPU
(``time.process_time``: user + system of this process) per run; the median of ``--repeat``
alternating runs of each, after one unmeasured warm-up upload.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import human, parse_size
from producers.records import Progress
from worker.http import Destination, Route, new_session
from worker.progress import counted, tracking

SINK = r"""
import socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
buf = bytearray(1 << 20)
while True:
    conn, _ = server.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(65536)
    headers, _, body = head.partition(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in headers.split(b"\r\n") if l.lower().startswith(b"content-length"))
    left = length - len(body)
    while left > 0:
        left -= conn.recv_into(buf, min(left, len(buf)))
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\n\r\n{}")
    conn.close()
"""
UPLOAD = Route("/upload")


def send(port: int, path: Path, size: int, with_progress: bool) -> tuple[float, int]:
    """CPU seconds of one upload, and how many progress figures it made."""
    written: list[Progress] = []
    dest = Destination(new_session(), f"http://127.0.0.1:{port}", routes=(UPLOAD,))
    started = time.process_time()
    with path.open("rb") as fh:
        if with_progress:
            with tracking(lambda p, final: written.append(p)), counted(fh, size) as stream:
                dest.call("POST", UPLOAD.path(), upload=True, data=stream)
        else:
            dest.call("POST", UPLOAD.path(), upload=True, data=fh)
    return time.process_time() - started, len(written)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.progress", description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1G", help="the file (sparse; 1G = 1 GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "big.bin"
            with path.open("wb") as fh:
                fh.truncate(size)
            cpu: dict[bool, list[float]] = {False: [], True: []}
            figures = 0
            send(port, path, size, False)  # warm-up: imports, the first connection, the page cache
            for _ in range(args.repeat):
                for with_progress in (False, True):
                    seconds, made = send(port, path, size, with_progress)
                    cpu[with_progress].append(seconds)
                    figures = max(figures, made)
    finally:
        sink.kill()
    plain, counted_ = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"{human(size)} upload, median of {args.repeat}: sender CPU {plain:.3f} s without progress, "
          f"{counted_:.3f} s with progress ({counted_ / plain:.3f}x; {figures} figures written)")
    runs = {label: ", ".join(f"{s:.3f}" for s in cpu[flag]) for label, flag in (("without", False), ("with", True))}
    print(f"  runs without: {runs['without']}; with: {runs['with']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
