"""The Lua scripts, read statically: each ``.lua`` file's header names its KEYS, ARGV and the
job-hash fields it touches; one wrapper calls it with exactly those (``run(name, [KEYS], [ARGV])``
in ``producers.store.scripts`` and ``worker.rate_limit``); the fields are the codec's.
Their behaviour on a real Redis: ``tests/integration/test_store_scripts.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from producers.store import codec
from producers.store.loader import STORE_SCRIPTS, LuaFile, library
from worker.rate_limit import LUA as WORKER_SCRIPTS

ROOT = Path(__file__).resolve().parents[2]
# Where each directory's scripts are called from: one typed wrapper per script.
CALLERS = {STORE_SCRIPTS: ROOT / "producers/store/scripts.py", WORKER_SCRIPTS: ROOT / "worker/rate_limit.py"}
SCRIPTS = [(directory, lua) for directory in CALLERS for lua in library(directory).values()]


def _calls(path: Path) -> dict[str, list[tuple[int, int, bool]]]:
    """Each ``….run("name", [keys…], [args…])`` in ``path``: (KEYS given, fixed ARGV given,
    whether a ``*tail`` follows), by script name."""
    found: dict[str, list[tuple[int, int, bool]]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run"
                and len(node.args) == 3 and isinstance(node.args[0], ast.Constant)):
            name, keys, args = node.args
            assert isinstance(keys, ast.List) and isinstance(args, ast.List), f"{name.value}: list literals"
            starred = [a for a in args.elts if isinstance(a, ast.Starred)]
            found.setdefault(str(name.value), []).append((len(keys.elts), len(args.elts) - len(starred),
                                                          bool(starred)))
    return found


def test_the_two_script_directories_hold_every_script():
    assert sorted(library(STORE_SCRIPTS)) == ["archive_drop", "batch_move", "begin", "claim_due", "create", "forget",
                                              "progress", "ready_move", "ready_take", "rebuild_counts", "release",
                                              "renew", "resume", "save_delivery", "seal", "settle", "take_claim"]
    assert sorted(library(WORKER_SCRIPTS)) == ["gcra", "renew_slots", "take_slot"]


@pytest.mark.parametrize(("directory", "lua"), SCRIPTS, ids=[lua.name for _, lua in SCRIPTS])
def test_each_script_has_one_wrapper_passing_what_its_header_names(directory: Path, lua: LuaFile):
    assert lua.source.startswith(f"-- {lua.name}: "), "a header naming the script and what it does"
    assert lua.keys, "KEYS listed"
    assert _calls(CALLERS[directory]).get(lua.name) == [(len(lua.keys), len(lua.argv), lua.tail is not None)]


@pytest.mark.parametrize(("directory", "lua"), SCRIPTS, ids=[lua.name for _, lua in SCRIPTS])
def test_each_script_reads_its_arguments_by_the_headers_count(directory: Path, lua: LuaFile):
    """Beyond the header's count no ARGV[n] or KEYS[n] is read (a tail is read in a loop)."""
    body = lua.source
    assert max((int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)), default=0) == len(lua.keys)
    assert max((int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)), default=0) == len(lua.argv)


@pytest.mark.parametrize(("directory", "lua"), SCRIPTS, ids=[lua.name for _, lua in SCRIPTS])
def test_each_script_lists_the_job_fields_it_touches_and_they_are_the_codecs(directory: Path, lua: LuaFile):
    named = set(lua.fields)
    assert named <= codec.FIELDS
    code = "\n".join(line for line in lua.source.splitlines() if not line.lstrip().startswith("--"))
    plain = {f for f in codec.FIELDS if not f.endswith("*")}
    touched = {f for f in plain if re.search(rf"'{f}'|\bf\.{f}\b", code)}
    assert touched == {f for f in named if not f.endswith("*")}


def test_a_script_naming_a_lib_runs_with_it_and_the_lib_names_no_argument():
    """lua/lib/batch.lua goes before each script whose header says LIB: batch; it reads only
    what its callers hand it, never KEYS or ARGV."""
    scripts = library(STORE_SCRIPTS)
    assert sorted(n for n, lua in scripts.items() if lua.libs == ("batch",)) == ["batch_move", "begin", "forget",
                                                                                 "progress", "seal", "settle"]
    lib = (STORE_SCRIPTS / "lib" / "batch.lua").read_text(encoding="utf-8")
    assert "KEYS[" not in lib and "ARGV[" not in lib
    assert scripts["seal"].registered(STORE_SCRIPTS).startswith(lib)


def test_the_header_reader_reads_a_variable_tail():
    lua = LuaFile.read(STORE_SCRIPTS / "settle.lua")
    assert lua.keys == ("job", "status_from", "status_to", "throughput", "outbox")
    assert lua.argv[-1] == "field_count" and lua.tail == "fields"
