"""Small things the integration tests share: sample files and sandbox look-ups."""

from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image


def png(path: Path, size: tuple[int, int] = (64, 48), colour: str = "teal") -> Path:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def uploads_with(sandbox: Any, digest: str) -> list[dict[str, Any]]:
    return [u for u in sandbox.uploads() if u.get("sha256") == digest]


def job_json(ferry_env: Any, *args: str) -> tuple[int, dict[str, Any]]:
    """``ferry submit ARGS --wait --json`` → (exit code, job record)."""
    code, record = ferry_env.cli_json("submit", *args, "--wait", "--timeout", "90")
    return code, record


def read_json(ferry_env: Any, *args: str) -> Any:
    """A synchronous read (``ferry jira|marketplace|awork … --json``) that must succeed."""
    code, value = ferry_env.cli_json(*args)
    assert code == 0, value
    return value


class Receiver:
    """An HTTP server on loopback that records every request and answers with ``answers`` in turn
    (then 200)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ferry"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
