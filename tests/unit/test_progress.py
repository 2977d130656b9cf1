"""Upload progress and the stall rule, on their own: what is counted, how often it is written,
and what a stalled peer makes of a request (a plain socket on loopback as the peer)."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from requests_toolbelt import MultipartEncoder

from producers.records import Progress
from worker.errors import OutcomeUnknown, RetryableError
from worker.http import Destination, Route, new_session
from worker.progress import CountingStream, UploadProgress, counted, tracking


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_figures_are_written_at_most_once_a_second_and_once_more_at_the_end():
    clock, written = Clock(), []
    progress = UploadProgress(1000, lambda p, final: written.append((p, final)), clock=clock)
    for sent in range(100, 1001, 100):  # ten reads, 0.25 s apart
        clock.now += 0.25
        progress.advance(sent)
    progress.finish()
    assert [p.bytes_sent for p, _ in written] == [100, 500, 900, 1000]
    assert [final for _, final in written] == [False, False, False, True]
    last = written[-1][0]
    assert last.bytes_total == 1000 and last.eta_s == 0.0 and last.rate_bps == 400


def test_the_rate_follows_the_last_seconds_and_gives_the_eta():
    clock, written = Clock(), []
    progress = UploadProgress(100_000, lambda p, final: written.append(p), clock=clock)
    for second in range(1, 21):  # 1 000 B/s for 10 s, then 4 000 B/s
        clock.now += 1
        progress.advance(written[-1].bytes_sent + (1000 if second <= 10 else 4000) if written else 1000)
    figures: Progress = written[-1]
    assert figures.rate_bps == 4000
    assert figures.eta_s == pytest.approx((100_000 - figures.bytes_sent) / 4000, abs=0.1)


def test_a_counted_stream_reports_what_requests_and_the_multipart_encoder_read():
    data = b"x" * 100_000
    progress = UploadProgress(len(data), lambda p, final: None)
    stream = CountingStream(io.BytesIO(data), progress)
    assert stream.len == len(data)
    encoder = MultipartEncoder(fields={"file": ("a.bin", stream, "application/octet-stream")})
    body = encoder.read()
    assert data in body and progress.sent == len(data) and stream.len == 0
    prepared = requests.Request("POST", "http://x/", data=CountingStream(io.BytesIO(data), progress)).prepare()
    assert prepared.headers["Content-Length"] == str(len(data))


def test_a_file_is_counted_only_inside_a_step_that_tracks_progress():
    with counted(io.BytesIO(b"abc"), 3) as plain:
        assert isinstance(plain, io.BytesIO)
    written: list[tuple[int, bool]] = []
    with tracking(lambda p, final: written.append((p.bytes_sent, final))), \
            counted(io.BytesIO(b"abc"), 3) as stream:
        assert stream.read() == b"abc"
    assert written == [], "an upload over before its first sample tells nothing (no Redis call)"


def test_an_upload_shorter_than_a_sample_writes_nothing_and_a_longer_one_ends_with_its_total():
    clock, written = Clock(), []
    quick = UploadProgress(1000, lambda p, final: written.append(p.bytes_sent), clock=clock)
    quick.advance(1000)
    quick.finish()
    assert written == []
    slow = UploadProgress(1000, lambda p, final: written.append(p.bytes_sent), clock=clock)
    clock.now += 0.5
    slow.advance(400)
    slow.advance(1000)
    slow.finish()
    assert written == [400, 1000]


# ---- the stall rule -------------------------------------------------------------------------------
@pytest.fixture
def silent_peer() -> Iterator[int]:
    """Accepts connections and never reads nor answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for conn in held:
        conn.close()


UPLOAD = Route("/upload")


@pytest.mark.parametrize("size", [1_000, 8 * 1024 * 1024], ids=["answer-never-begins", "body-stops-moving"])
def test_a_stalled_peer_is_left_after_the_stall_window(silent_peer, size):
    dest = Destination(new_session(stall_seconds=0.5), f"http://127.0.0.1:{silent_peer}", routes=(UPLOAD,))
    with pytest.raises(RetryableError, match=r"stalled: no progress for 0\.5 s"):
        dest.call("POST", UPLOAD.path(), upload=True, data=io.BytesIO(b"x" * size))
    with pytest.raises(OutcomeUnknown, match="outcome unknown: stalled"):
        dest.call("POST", UPLOAD.path(), upload=True, data=io.BytesIO(b"x" * size), repeatable=False)


def test_figures_read_as_people_say_them():
    running = Progress(bytes_sent=2 * 1024 * 1024, bytes_total=3 * 1024 * 1024, rate_bps=64 * 1024, eta_s=16.0,
                       updated_at="2026-12-07T00:00:00.000Z")
    assert running.describe() == "2.0 MiB of 3.0 MiB (66 %), 64.0 KiB/s, about 16 s left"
    done = running.model_copy(update={"bytes_sent": running.bytes_total, "eta_s": 0.0})
    assert done.percent == 100 and done.describe() == "3.0 MiB of 3.0 MiB (100 %), 64.0 KiB/s"
