"""Large bodies stream to disk: the sandbox's memory stays far below the upload size."""

from __future__ import annotations

from pathlib import Path

from sandbox.testing import SandboxControl, SandboxProcess
from tests.integration.sandbox.util import StreamedMultipart, credentials, media_stream

SIZE = 200 * 1024 * 1024


def peak_rss_bytes(pid: int) -> int:
    """VmHWM (peak resident set) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmHWM not found")


def test_200_mb_upload_streams_to_disk(sandbox: SandboxControl, sandbox_server: SandboxProcess) -> None:
    creds = credentials(sandbox)
    before = peak_rss_bytes(sandbox_server.pid)
    body = StreamedMultipart("file", "big.bin", SIZE)
    response = media_stream(creds, body, timeout=120)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["size"] == SIZE
    after = peak_rss_bytes(sandbox_server.pid)
    assert after - before < 40 * 1024 * 1024, (before, after)
    assert after < SIZE / 2
    upload = sandbox.uploads()[-1]
    assert upload["sha256"] == body.file_hash.hexdigest() and upload["size"] == SIZE
    stored = sandbox_server.data_dir / "blobs" / upload["sha256"]
    assert stored.stat().st_size == SIZE
