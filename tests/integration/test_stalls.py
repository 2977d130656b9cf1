"""Long uploads against a destination that stalls (real Redis, the sandbox over HTTP, a real
worker with ``stall_seconds = 20``): a request whose body stops moving, or whose answer does not
begin, is aborted after the stall window and never holds a worker slot for longer; a repeatable
step then runs again, a create that cannot be repeated fails "outcome unknown"; and a slow but
steady upload is never a stall, however long it takes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from producers.client import Ferry
from producers.records import JobRecord, JobStatus
from sandbox.testing import SandboxControl
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import FerryEnv, own_worker

STALL_SECONDS = 20
HELD_MS = 60_000  # far past the stall window: the worker must give up first
MEDIA_UPLOAD = r"^/media/file(/binary)?$"


@dataclass
class Stalling:
    env: FerryEnv
    ferry: Ferry
    sandbox: SandboxControl
    files: Path


@pytest.fixture(scope="module")
def stalling(tmp_path_factory: pytest.TempPathFactory, sandbox_server: object) -> Iterator[Stalling]:
    home = tmp_path_factory.mktemp("stalls")
    control = sandbox_server.control()  # type: ignore[attr-defined]
    with own_worker(home, control, settings=f"stall_seconds = {STALL_SECONDS}", concurrency=4) as (env, _):
        ferry = env.ferry()
        yield Stalling(env, ferry, control, home / "files")
        ferry.close()


@pytest.fixture
def setup(stalling: Stalling) -> Stalling:
    stalling.sandbox.reset()
    stalling.sandbox.configure(media_upload="binary")  # Ferry's first form: one media request per upload
    stalling.files.mkdir(exist_ok=True)
    return stalling


def pdf(folder: Path, name: str, size: int) -> Path:
    """A PDF of ``size`` bytes (sparse past its head: nothing large is written)."""
    path = folder / name
    head, tail = b"%PDF-1.4\n", b"\n%%EOF\n"
    with path.open("wb") as fh:
        fh.write(head)
        fh.seek(size - len(tail))
        fh.write(tail)
    return path


def attach(setup: Stalling, path: Path) -> tuple[JobRecord, str]:
    object_id = setup.sandbox.seed()["object_id"]
    job = setup.ferry.submit("assets-attachment", connection="acme", file=str(path),
                             params={"object": object_id})
    return job, object_id


def linked(sandbox: SandboxControl, object_id: str, name: str) -> list[dict[str, object]]:
    return [a for a in sandbox.attachments()
            if str(a.get("objectId")) == str(object_id) and a.get("filename") == name]


def test_a_media_service_that_never_answers_is_left_after_the_stall_window(setup):
    setup.sandbox.add_fault(path=MEDIA_UPLOAD, method="POST", latency_ms=HELD_MS, times=1)
    job, object_id = attach(setup, pdf(setup.files, "unanswered.pdf", 200_000))

    done = setup.ferry.wait(job.id, timeout=STALL_SECONDS + 60)
    assert done.status == JobStatus.SUCCEEDED, done.error
    upload = done.step("media_upload")
    assert upload.attempts == 2 and "stalled" in (upload.history[0].message or ""), upload.history
    assert len(linked(setup.sandbox, object_id, "unanswered.pdf")) == 1


def test_a_server_that_stops_reading_a_24_mib_body_is_left_after_the_stall_window(setup):
    setup.sandbox.add_fault(path=MEDIA_UPLOAD, method="POST", latency_ms=HELD_MS, times=1)
    job, object_id = attach(setup, pdf(setup.files, "unread.pdf", 24 * 1024 * 1024))

    done = setup.ferry.wait(job.id, timeout=STALL_SECONDS + 90)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.step("media_upload").attempts == 2
    [attachment] = linked(setup.sandbox, object_id, "unread.pdf")
    assert attachment["size"] == 24 * 1024 * 1024


def test_a_stalled_marketplace_create_fails_outcome_unknown_within_the_window(setup):
    setup.sandbox.add_fault(path=r"^/rest/2/assets/artifact$", method="POST", latency_ms=HELD_MS, times=1)
    jar = setup.files / "app-1.0.jar"
    jar.write_bytes(b"PK\x03\x04" + b"\0" * 4096)
    started = time.monotonic()
    job = setup.ferry.submit("marketplace-artifact", connection="marketplace", file=str(jar))

    done = setup.ferry.wait(job.id, timeout=STALL_SECONDS + 60)
    assert time.monotonic() - started < STALL_SECONDS + 30
    assert done.status == JobStatus.FAILED and done.error is not None
    assert "outcome unknown" in done.error.message and "stalled" in done.error.message
    assert done.step("upload_artifact").attempts == 1  # never sent twice


def test_a_slow_but_steady_upload_is_never_a_stall_and_shows_its_progress(setup):
    size = 3 * 1024 * 1024  # at 64 KiB/s about 48 s: more than twice the stall window
    setup.sandbox.add_fault(path=MEDIA_UPLOAD, method="POST", read_kib_per_s=64, times=1)
    job, object_id = attach(setup, pdf(setup.files, "slow.pdf", size))

    terminal = Terminal(setup.env, "status", job.id, "--follow")
    seen = sent_while_running(setup.env, job.id, timeout=120)
    done = setup.ferry.status(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    upload = done.step("media_upload")
    assert upload.attempts == 1, upload.history
    assert len(setup.sandbox.requests(path_contains="/media/file")) == 1
    assert len(linked(setup.sandbox, object_id, "slow.pdf")) == 1

    assert len(set(seen)) >= 5 and seen == sorted(seen), seen  # ferry status --json, while it ran
    assert upload.progress is not None and upload.progress.bytes_sent == upload.progress.bytes_total == size
    listed = setup.env.cli("events", "--job", job.id, "--json")
    progress = [json.loads(line) for line in listed.stdout.splitlines() if '"step.progress"' in line]
    assert len(progress) >= 5, listed.stdout
    assert progress[-1]["bytes_sent"] == size and all(e["step"] == "media_upload" for e in progress)
    screen = terminal.output()  # ferry status --follow in a terminal: the live bar, then the record
    assert "media_upload" in screen and "MiB" in screen and "KiB/s" in screen, screen
    with LiveApi(setup.ferry, tokens=["stalls-token"]) as api:  # the dashboard's job page keeps the bar
        page = requests.get(f"{api.url}/ui/job/{job.id}", headers={"Authorization": "Bearer stalls-token"},
                            timeout=10)
    assert '<progress max="100" value="100">' in page.text and "uploaded 3.0 MiB of 3.0 MiB (100 %)" in page.text


class Terminal:
    """A ferry command on a pseudo-terminal (so rich draws what a person sees), read to its end."""

    def __init__(self, env: FerryEnv, *args: str) -> None:
        master, slave = pty.openpty()
        self._master = master
        self._chunks: list[bytes] = []
        self._proc = subprocess.Popen([sys.executable, "-m", "producers", *args], stdin=slave, stdout=slave,
                                      stderr=slave, env={**env.env, "TERM": "xterm", "COLUMNS": "120"})
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def output(self, timeout: float = 30) -> str:
        assert self._proc.wait(timeout=timeout) == 0
        self._reader.join(timeout=5)
        os.close(self._master)
        return b"".join(self._chunks).decode(errors="replace")


def sent_while_running(env: FerryEnv, job_id: str, timeout: float) -> list[int]:
    """``bytes_sent`` of the job's upload step as ``ferry status --json`` shows it, polled
    until the job ends."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, record = env.cli_json("status", job_id)
        upload = next(s for s in record["steps"] if s["name"] == "media_upload")
        if upload.get("progress"):
            seen.append(upload["progress"]["bytes_sent"])
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return seen
        time.sleep(2)
    raise AssertionError(f"job {job_id} still running after {timeout} s")
