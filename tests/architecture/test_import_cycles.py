"""No import cycles in the product code (issue 9): two modules that import each other hold an idea in the wrong one.

Every import counts, also those inside functions (a lazy import is still a dependency). Cycles not yet removed
are listed in KNOWN_CYCLES; the list only shrinks: the test fails on a new cycle and on a listed one that is gone.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"mlk8s": REPO / "include" / "mlk8s", "mlk8s_airflow": REPO / "plugins" / "mlk8s_airflow"}

KNOWN_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    for top, root in ROOTS.items():
        if path.is_relative_to(root):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def modules() -> dict[str, Path]:
    return {module_name(p): p for root in ROOTS.values() for p in root.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            # the longest known module the import names (``from a.b import c`` may name module a.b.c)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles() -> set[frozenset[str]]:
    mods = modules()
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    # strongly connected components (Tarjan), each of more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_new_import_cycles() -> None:
    new = cycles() - KNOWN_CYCLES
    assert not new, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in new)


def test_known_cycles_list_is_current() -> None:
    gone = KNOWN_CYCLES - cycles()
    assert not gone, "remove from KNOWN_CYCLES, these cycles are gone: " + "; ".join(
        " <-> ".join(sorted(c)) for c in gone
    )
