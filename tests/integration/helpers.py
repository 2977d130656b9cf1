"""Small things the integration tests share: sample files and sandbox look-ups."""

from __future__ import annotations

import hashlib
import io
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
