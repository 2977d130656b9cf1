"""The one loader of Ferry's Lua scripts: ``.lua`` files, each with a header naming its KEYS,
ARGV, the job-hash fields it touches and what it returns::

    -- name: what it does.
    -- KEYS: job, events
    -- ARGV: token, now_ms, ...fields      (a last name with "..." is a variable tail)
    -- FIELDS: lease, step:*
    -- LIB: batch                          (optional: lua/lib/batch.lua goes before the script)
    -- RETURNS: ...

Every script of a directory is registered once per client (``register_script``): a call is an
EVALSHA, and redis-py loads the script again when the server answers NOSCRIPT (after a restart
or a SCRIPT FLUSH). Each script's caller is one typed method (``producers.store.scripts``,
``worker.rate_limit``) that passes ``run(name, keys, args)`` lists in the header's order.
"""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

STORE_SCRIPTS = Path(__file__).resolve().parent / "lua"


@dataclass(frozen=True)
class LuaFile:
    """One script and its header."""

    name: str
    source: str
    keys: tuple[str, ...]
    argv: tuple[str, ...]  # the fixed arguments, in order
    tail: str | None  # the name of a variable tail of ARGV, if any
    fields: tuple[str, ...]
    libs: tuple[str, ...] = ()  # lib/{name}.lua files put before the source when registered

    @classmethod
    def read(cls, path: Path) -> LuaFile:
        source = path.read_text(encoding="utf-8")
        header = {}
        for line in source.splitlines():
            if not line.startswith("--"):
                break
            label, colon, names = line.removeprefix("--").strip().partition(":")
            if colon and label in ("KEYS", "ARGV", "FIELDS", "LIB"):
                header[label] = tuple(n.strip() for n in names.split(",") if n.strip())
        argv = header.get("ARGV", ())
        tail = argv[-1].removeprefix("...") if argv and argv[-1].startswith("...") else None
        return cls(path.stem, source, header.get("KEYS", ()), argv[:-1] if tail else argv, tail,
                   header.get("FIELDS", ()), header.get("LIB", ()))

    def registered(self, directory: Path) -> str:
        """The source as Redis runs it: its libraries' sources first."""
        libs = [(directory / "lib" / f"{name}.lua").read_text(encoding="utf-8") for name in self.libs]
        return "\n".join([*libs, self.source])


@functools.cache
def library(directory: Path) -> dict[str, LuaFile]:
    """Every script of ``directory``, by name (read once per process)."""
    return {path.stem: LuaFile.read(path) for path in sorted(directory.glob("*.lua"))}


class Scripts:
    """A library's scripts registered on one client."""

    def __init__(self, client: redis.Redis, directory: Path) -> None:
        self._client = client
        self._registered: dict[str, Script] = {
            name: client.register_script(lua.registered(directory)) for name, lua in library(directory).items()}

    def run(self, name: str, keys: Sequence[Any], args: Sequence[Any], client: Any = None) -> Any:
        """EVALSHA of script ``name`` (loaded again on NOSCRIPT); ``client``: a pipeline whose
        MULTI it joins (it loads the script before the MULTI), or a ``Pipelined`` line that
        sends it now (None returned: its ``receive`` reads the reply later)."""
        if isinstance(client, Pipelined):
            client.send(name, keys, args)
            return None
        return self._registered[name](keys=keys, args=args, client=client)

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[Pipelined]:
        """Calls sent ahead of their replies on one connection (``Pipelined``); every reply still
        unread is read (and dropped) at the end."""
        line = Pipelined(self, self._client)
        try:
            yield line
        finally:
            line.close()


class Pipelined:
    """Script calls sent one after another on one connection, each reply read later, in order
    (Redis pipelining, no MULTI): Redis runs one call while the caller prepares the next and
    reads the one before. A call the server does not know (NOSCRIPT) is run again the usual way
    when its reply is read, so it loads the script; it had not run."""

    def __init__(self, scripts: Scripts, client: redis.Redis) -> None:
        self._scripts, self._client = scripts, client
        self._connection: Any = None
        self._sent: deque[tuple[str, Sequence[Any], Sequence[Any], Any]] = deque()

    def send(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
        if self._connection is None:
            self._connection = self._client.connection_pool.get_connection()
        connection = self._connection
        try:
            connection.send_command("EVALSHA", self._scripts._registered[name].sha, len(keys), *keys, *args)
        except BaseException:
            self._lost()
            raise
        self._sent.append((name, keys, args, connection))

    def receive(self) -> Any:
        """The reply to the oldest call not read yet (its error raised)."""
        name, keys, args, connection = self._sent.popleft()
        if connection is not self._connection:
            raise redis.ConnectionError("the connection was lost with this call sent: it may have run")
        try:
            return self._read(connection)
        except redis.exceptions.NoScriptError:
            return self._scripts.run(name, keys, args)
        except redis.ResponseError:
            raise  # the script's own error: the connection is fine
        except BaseException:
            self._lost()
            raise

    def close(self) -> None:
        """Every reply not read yet read and dropped (none run again); the connection back to the pool."""
        while self._sent:
            *_, connection = self._sent.popleft()
            if connection is not self._connection:
                continue
            try:
                self._read(connection)
            except redis.ResponseError:
                pass
            except BaseException as exc:
                self._lost()
                if not isinstance(exc, redis.RedisError | OSError):
                    raise
        if self._connection is not None:
            self._client.connection_pool.release(self._connection)
            self._connection = None

    def _read(self, connection: Any) -> Any:
        client: Any = self._client  # redis-py leaves parse_response untyped
        return client.parse_response(connection, "EVALSHA")

    def _lost(self) -> None:
        """The connection failed mid-call: closed and given back; replies sent on it are lost."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            self._client.connection_pool.release(connection)
