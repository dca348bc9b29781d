"""The package's layers (``repyolo/__init__.py`` docstring) import downwards only.

Every ``import`` / ``from ... import`` statement of every module is checked, including imports
inside functions (a lazy import is still a dependency; hiding a cycle inside a function is what
this test exists to catch).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import repyolo

PACKAGE = Path(repyolo.__file__).resolve().parent


def layer_order() -> dict[str, int]:
    """``{top-level name: rank}`` from the indented block after ``Layers`` in the package docstring."""
    block = repyolo.__doc__.split("::", 1)[1].split("\n\n", 2)[1]
    ranks = {}
    for rank, line in enumerate(ln for ln in block.splitlines() if ln.strip()):
        for name in line.split():
            ranks[name] = rank
    return ranks


def top_level(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "repyolo" and len(parts) > 1 else None


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every repyolo import in ``path`` (relative imports resolved)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("repyolo")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "repyolo" or name.startswith("repyolo."):
                # "from package import submodule" depends on the submodule, not on the package's __init__
                out += [(node.lineno, f"{name}.{a.name}" if _is_module(f"{name}.{a.name}") else name)
                        for a in node.names]
    return out


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_files():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        yield path, module


def test_layer_list_names_every_top_level_module():
    ranks = layer_order()
    names = {top_level(m) for _, m in module_files()} - {None}
    assert names - set(ranks) == set(), "top-level modules missing from the layer list"
    assert set(ranks) - names == set(), "layer list names modules that do not exist"


def test_imports_go_down_the_layers():
    ranks = layer_order()
    bad = []
    for path, module in module_files():
        own = top_level(module)
        if own is None:  # the package root only re-exports lazily (module __getattr__)
            continue
        for line, target in imports_of(path, module):
            other = top_level(target)
            if other in ranks and ranks[other] > ranks[own]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {own} -> {other} ({target})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    """Within and across layers: the module import graph has no cycle."""
    graph: dict[str, set[str]] = {}
    known = {m for _, m in module_files()}
    for path, module in module_files():
        deps = set()
        for _, target in imports_of(path, module):
            while target and target not in known:  # "from repyolo.a.b import name" -> module a.b
                target = target.rpartition(".")[0]
            if target and target != module and target != "repyolo":
                deps.add(target)
        graph[module] = deps
    # a package imports its own submodules in __init__; a submodule importing its package back is the cycle
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]) if d in stack else f"{m} -> {d}")
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_layer_docstring_is_parsed():
    assert re.search(r"\bops\b", repyolo.__doc__) and layer_order()["ops"] < layer_order()["engine"]
