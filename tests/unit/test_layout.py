"""How the packages may import each other, read from the source (no import is executed):

- no module imports a private name (``_x``) of another module;
- no import cycle among Ferry's modules, counting imports inside functions too (a lazy import
  hides a cycle from the interpreter, not from the reader);
- ``producers`` never imports ``worker``, except ``producers.cli.reads`` (lazily, with the hint
  to install the worker extra).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("producers", "worker")
MAY_IMPORT_WORKER = {"producers.cli", "producers.cli.reads"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import statement in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule, None) if submodule in MODULES else (base, alias.name)


def _edges() -> dict[str, set[str]]:
    return {module: {target for target, _ in _imports(module, path) if target in MODULES} - {module}
            for module, path in MODULES.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_no_module_imports_a_private_name_of_another():
    private = [f"{module}: from {target} import {name}"
               for module, path in MODULES.items()
               for target, name in _imports(module, path)
               if name is not None and name.startswith("_") and not name.startswith("__")
               and target.split(".")[0] in PACKAGES]
    assert private == []


def test_there_is_no_import_cycle():
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_producers_import_the_worker_only_from_the_destination_reads():
    crossing = sorted(module for module, targets in _edges().items()
                      if module.startswith("producers") and module not in MAY_IMPORT_WORKER
                      and any(t.split(".")[0] == "worker" for t in targets))
    assert crossing == []


# ---- sizes, Lua, the store's Redis and its keys -------------------------------------------------
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 500, 300, 80
STORE_PACKAGE = "producers.store"


def _trees() -> Iterator[tuple[str, ast.Module]]:
    for module, path in MODULES.items():
        yield module, ast.parse(path.read_text(encoding="utf-8"))


def _too_long() -> list[str]:
    found = []
    for module, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            limit = (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None)
            if limit is not None and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > limit:
                found.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    return found


def test_no_module_class_or_function_is_too_long():
    assert _too_long() == []


def test_no_lua_is_kept_in_python_source():
    """Lua lives in .lua files, each with its header (``producers.store.loader``)."""
    assert [module for module, path in MODULES.items() if "redis.call" in path.read_text(encoding="utf-8")] == []


def _names_store(node: ast.expr) -> bool:
    """``store``, ``self.store``, ``ctx.store``, ``ferry.store``…: an expression naming a JobStore."""
    return (isinstance(node, ast.Name) and node.id == "store") or (
        isinstance(node, ast.Attribute) and node.attr == "store")


def _store_reaches(tree: ast.Module) -> list[str]:
    return [f"line {node.lineno}: .{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and _names_store(node.value)
            and (node.attr == "redis" or (node.attr.startswith("_") and not node.attr.startswith("__")))]


def test_only_the_store_uses_its_redis_or_its_privates():
    """Outside ``producers.store`` nobody uses ``store.redis`` or a ``store._…``: they ask the
    store (a part with scripts of its own on the same Redis gets ``store.client()``)."""
    reaching = {module: found for module, tree in _trees()
                if not module.startswith(STORE_PACKAGE) and (found := _store_reaches(tree))}
    assert reaching == {}


def test_the_store_reach_finder_finds_a_reach():
    tree = ast.parse("ctx.store.redis.get(k)\nstore._scripts.begin()\nstore.client()\nself.redis.get(k)")
    assert _store_reaches(tree) == ["line 1: .redis", "line 2: ._scripts"]


def test_every_key_is_named_in_keys():
    """No key is built from ``keys.PREFIX`` or spelled out as a ``ferry:`` string but in ``producers.keys``."""
    built = [f"{module}: line {node.lineno}" for module, tree in _trees() if module != "producers.keys"
             for node in ast.walk(tree)
             if (isinstance(node, ast.Attribute) and node.attr == "PREFIX"
                 and isinstance(node.value, ast.Name) and node.value.id == "keys")
             or (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("ferry:"))]
    assert built == []


def test_only_the_codec_names_the_job_hashs_field_families():
    """``step:…``, ``notify:…`` and ``cancel_requested`` are spelled in ``producers.store.codec`` alone."""
    spelled = [f"{module}: line {node.lineno}" for module, tree in _trees() if module != "producers.store.codec"
               for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and node.value in ("step:", "notify:", "cancel_requested")]
    assert spelled == []
