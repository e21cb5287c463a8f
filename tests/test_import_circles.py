"""Layering of the compiler: no module of routelang/ outside the serving side
(gateway/, registry/) imports, directly or through others, a module that imports
it back. Imports inside functions count too, as in tests/runtime's layering test:
a lazy import hides a circle from the interpreter, not from the reader."""

from __future__ import annotations

import ast as pyast
from pathlib import Path

import routelang

PACKAGE = Path(routelang.__path__[0])
SERVING = ("gateway", "registry")



def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(module: str, path: Path) -> set[str]:
    """Every name an import statement of the file may refer to (a module, or a
    module's attribute that may itself be a module)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names: set[str] = set()
    for node in pyast.walk(pyast.parse(path.read_text())):
        if isinstance(node, pyast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, pyast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).rstrip(".") \
                if node.level else node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def compiler_import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")
             if p.relative_to(PACKAGE).parts[0] not in SERVING}
    return {module: (imported_names(module, path) & files.keys()) - {module} for module, path in files.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for dependency in sorted(graph[module]):
            if dependency not in index:
                visit(dependency)
                low[module] = min(low[module], low[dependency])
            elif dependency in stack:
                low[module] = min(low[module], index[dependency])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                circles.append(sorted([module, *component]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(circles)


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]


def test_the_compiler_modules_import_no_circle():
    graph = compiler_import_graph()
    assert {"routelang.check", "routelang.ir", "routelang.backends.json", "routelang.analysis.router"} <= graph.keys()
    assert "routelang.ir" in graph["routelang.check"]
    assert import_circles(graph) == []
