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

import functools
from collections.abc import Sequence
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
        self._registered: dict[str, Script] = {
            name: client.register_script(lua.registered(directory)) for name, lua in library(directory).items()}

    def run(self, name: str, keys: Sequence[Any], args: Sequence[Any], client: Any = None) -> Any:
        """EVALSHA of script ``name`` (loaded again on NOSCRIPT); ``client``: a pipeline whose
        MULTI it joins (it loads the script before the MULTI)."""
        return self._registered[name](keys=keys, args=args, client=client)
