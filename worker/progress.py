"""Upload progress: how many bytes of a job's file a step has handed on to the network, at what
rate, and when it should end, written to the job's record at most once a second.

The step's attempt opens a ``tracking`` scope with a writer (the job store); every job file the
step opens inside it (``worker.uploads.open_file``) is wrapped in a ``CountingStream``. The
streaming body (raw, or a multipart encoder around the file) reads the file block by block as
the socket accepts the previous block, and the socket's send buffer is capped
(``worker.transport``), so the count runs at most a block and that buffer ahead of the network.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, cast

from producers.records import Progress, utcnow

WRITE_EVERY_SECONDS = 1.0
RATE_WINDOW_SECONDS = 5.0  # the rate is measured over the last few seconds: it follows the link
SAMPLE_SECONDS = 0.2

ProgressWriter = Callable[[Progress, bool], None]  # (the figures, final)


@dataclass
class _Sample:
    at: float
    sent: int


class UploadProgress:
    """Counts one file's bytes through one upload; writes at most every ``every`` seconds."""

    def __init__(self, total: int, write: ProgressWriter, *, every: float = WRITE_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.sent = 0
        self._write = write
        self._every = every
        self._clock = clock
        self._samples: deque[_Sample] = deque([_Sample(clock(), 0)])
        self._written_at: float | None = None

    def advance(self, sent: int) -> None:
        """Called for every block the body reads (16 KiB): a clock read, and a sample at most
        every ``SAMPLE_SECONDS``, so counting costs next to nothing beside the send itself."""
        self.sent = sent
        now = self._clock()
        if now - self._samples[-1].at < SAMPLE_SECONDS:
            return
        self._samples.append(_Sample(now, sent))
        while len(self._samples) > 2 and now - self._samples[1].at >= RATE_WINDOW_SECONDS:
            self._samples.popleft()
        if self._written_at is None or now - self._written_at >= self._every:
            self._written_at = now
            self._write(self.snapshot(), False)

    def finish(self) -> None:
        """The last figures, whatever the time since the previous write; none for an upload that
        ended before its first sample (under ``SAMPLE_SECONDS``): a small file's upload costs no
        Redis call and no event for figures nobody could watch."""
        if self._written_at is None:
            return
        self._samples.append(_Sample(self._clock(), self.sent))
        self._write(self.snapshot(), True)

    def snapshot(self) -> Progress:
        first, last = self._samples[0], self._samples[-1]
        elapsed = last.at - first.at
        rate = (last.sent - first.sent) / elapsed if elapsed > 0 else None
        left = max(0, self.total - self.sent)
        eta = left / rate if rate else (0.0 if left == 0 else None)
        return Progress(bytes_sent=self.sent, bytes_total=self.total,
                        rate_bps=round(rate) if rate is not None else None,
                        eta_s=round(eta, 1) if eta is not None else None, updated_at=utcnow())


class CountingStream:
    """A job file's stream that reports each read to an ``UploadProgress``. It offers only what
    the upload paths use (read, seek, tell; Pillow reads an image's size through them): an
    attribute delegated blindly (``getvalue``, ``fileno``) would let a body encoder read the
    file past the count. ``len`` is what is left to read, as the multipart encoder reads it
    (it stops at 0); requests subtracts ``tell()`` from it again, which is right only from byte
    0: every upload starts there (a step that peeks at the file seeks back first)."""

    def __init__(self, stream: IO[bytes], progress: UploadProgress) -> None:
        self._stream = stream
        self._progress = progress

    @property
    def len(self) -> int:
        return max(0, self._progress.total - self._stream.tell())

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._progress.advance(self._stream.tell())
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


_writer: ContextVar[ProgressWriter | None] = ContextVar("ferry_progress_writer", default=None)


@contextmanager
def tracking(write: ProgressWriter) -> Iterator[None]:
    """Within this scope (one step's attempt, in its own thread), files opened for upload
    report their progress to ``write``."""
    token = _writer.set(write)
    try:
        yield
    finally:
        _writer.reset(token)


@contextmanager
def counted(stream: IO[bytes], size: int) -> Iterator[IO[bytes]]:
    """``stream`` counted when a step is tracking progress; the final figures are written when
    the file is closed (the upload ended, one way or another)."""
    write = _writer.get()
    if write is None:
        yield stream
        return
    progress = UploadProgress(size, write)
    try:
        yield cast(IO[bytes], CountingStream(stream, progress))
    finally:
        if progress.sent:
            progress.finish()
