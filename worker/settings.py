"""Connection secrets, resolved on the worker only: from the environment variable or file that
ferry.toml names. They never reach Redis, a Celery message, the job store or a log line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from producers.config import ConnectionConfig
from worker.errors import PermanentError


@dataclass(frozen=True)
class Credentials:
    email: str | None
    token: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(email={self.email!r}, token='[redacted]')"


def credentials_for(conn: ConnectionConfig) -> Credentials:
    return Credentials(email=conn.email, token=_read_token(conn))


def _read_token(conn: ConnectionConfig) -> str:
    if conn.token_env:
        value = os.environ.get(conn.token_env, "").strip()
        if value:
            return value
        if not conn.token_file:
            raise PermanentError(
                f"connection {conn.name!r}: environment variable {conn.token_env} is not set "
                "on this worker")
    if conn.token_file:
        path = Path(conn.token_file).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise PermanentError(f"connection {conn.name!r}: cannot read token_file: {exc.strerror}") from None
        if value:
            return value
        raise PermanentError(f"connection {conn.name!r}: token_file {path} is empty")
    raise PermanentError(f"connection {conn.name!r} names no token")


def missing_token(conn: ConnectionConfig) -> str | None:
    """Why this worker cannot read ``conn``'s token (unset variable, unreadable or empty file),
    or None. Checked at start so the operator hears it before the first job fails."""
    try:
        _read_token(conn)
    except PermanentError as exc:
        return exc.message
    return None
