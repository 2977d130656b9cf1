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


@dataclass
class _Sent:
    """A call sent on a ``Pipelined`` line, and its outcome once read."""

    name: str
    keys: Sequence[Any]
    args: Sequence[Any]
    connection: Any
    read: bool = False
    reply: Any = None
    error: Exception | None = None


class Pipelined:
    """Script calls sent one after another on one connection, each reply read later, in order
    (Redis pipelining, no MULTI): Redis runs one call while the caller prepares the next and
    reads the one before. A call answered NOSCRIPT (Redis lost its scripts: a restart, a
    SCRIPT FLUSH) had not run: it and every call sent after it are run again the usual way, in
    order, before anything else is sent, each exactly once (those that ran keep their reply)."""

    def __init__(self, scripts: Scripts, client: redis.Redis) -> None:
        self._scripts, self._client = scripts, client
        self._connection: Any = None
        self._sent: deque[_Sent] = deque()

    def send(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
        if self._connection is None:
            self._connection = self._client.connection_pool.get_connection()
        connection = self._connection
        try:
            connection.send_command("EVALSHA", self._scripts._registered[name].sha, len(keys), *keys, *args)
        except BaseException:
            self._lost()
            raise
        self._sent.append(_Sent(name, keys, args, connection))

    def receive(self) -> Any:
        """The reply to the oldest call not received yet (its error raised)."""
        call = self._sent.popleft()
        if not call.read:
            self._read_reply(call)
            if isinstance(call.error, redis.exceptions.NoScriptError):
                self._run_again([call, *self._sent])
        if call.error is not None:
            raise call.error
        return call.reply

    def close(self) -> None:
        """Every reply not read yet read and dropped (none run again); the connection back to the pool."""
        while self._sent:
            call = self._sent.popleft()
            if not call.read:
                self._read_reply(call)
        if self._connection is not None:
            self._client.connection_pool.release(self._connection)
            self._connection = None

    def _read_reply(self, call: _Sent) -> None:
        call.read = True
        if call.connection is not self._connection:
            call.error = redis.ConnectionError("the connection was lost with this call sent: it may have run")
            return
        client: Any = self._client  # redis-py leaves parse_response untyped
        try:
            call.reply = client.parse_response(call.connection, "EVALSHA")
        except redis.ResponseError as exc:
            call.error = exc  # the script's own error (or NOSCRIPT): the connection is fine
        except (redis.RedisError, OSError) as exc:
            self._lost()
            call.error = exc
        except BaseException:
            self._lost()
            raise

    def _run_again(self, calls: list[_Sent]) -> None:
        """The calls from one answered NOSCRIPT on, in order: each not run is run now (which
        loads its script); the others keep their reply."""
        for call in calls:
            if not call.read:
                self._read_reply(call)
            if isinstance(call.error, redis.exceptions.NoScriptError):
                call.error = None
                try:
                    call.reply = self._scripts.run(call.name, call.keys, call.args)
                except (redis.RedisError, OSError) as exc:
                    call.error = exc

    def _lost(self) -> None:
        """The connection failed mid-call: closed and given back; replies sent on it are lost."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            self._client.connection_pool.release(connection)
