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
