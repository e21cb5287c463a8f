"""The serving side's dependency directions, read from the source (every import
counts: at the top, inside functions, and under TYPE_CHECKING).

The gateway is built in layers: a module imports only modules of the layers
below its own, so only the composition root (wiring.py) knows every part, and
no part reaches back into the HTTP surface or the root. The runtime never imports
the gateway. (That no module of the package imports a circle, the gateway's
included, is tests/test_import_circles.py's test.)"""

from __future__ import annotations

import ast
from pathlib import Path

import routelang

PACKAGE = Path(routelang.__file__).parent
GATEWAY = PACKAGE / "gateway"

# Lowest first. A subpackage (adapters, admin) is one node: its modules may import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("proxies",),
    ("errors", "logs", "request", "upstream", "adapters", "metrics"),
    ("auth", "plan", "tracing"),
    ("state", "exchange", "tenants"),
    ("redisstate",),
    ("redisledger", "redisquality"),
    ("responses", "recording", "reload"),
    ("health", "executor", "routers"),
    ("app", "admin"),
    ("wiring",),
    ("server",),
)
LAYER = {name: n for n, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; `from X import y` names X.y too,
    since y may be a module."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.append((node.lineno, prefix))
            out += [(node.lineno, f"{prefix}.{alias.name}") for alias in node.names]
    return out


def _part(name: str) -> str | None:
    """The gateway part (top-level module or subpackage) a module name is in; None: not the gateway's."""
    if not name.startswith("routelang.gateway."):
        return None
    return name.removeprefix("routelang.gateway.").split(".")[0]


def test_every_gateway_module_imports_only_layers_below_its_own():
    problems = []
    for path in sorted(GATEWAY.rglob("*.py")):
        part = _part(_module_name(path))
        if part is None:   # routelang/gateway/__init__.py: the package's description only
            assert not _imports(path), "routelang/gateway/__init__.py imports nothing"
            continue
        assert part in LAYER, f"{part} is in no layer of LAYERS: place it"
        for line, name in _imports(path):
            other = _part(name)
            if other is None or other == part or other not in LAYER:
                continue
            if LAYER[other] >= LAYER[part]:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports {name} "
                                f"(layer {LAYER[other]}, not below {part}'s {LAYER[part]})")
    assert problems == []


def test_the_runtime_never_imports_the_gateway():
    for path in sorted((PACKAGE / "runtime").rglob("*.py")):
        for line, name in _imports(path):
            assert not name.startswith("routelang.gateway"), f"{path.name}:{line} imports {name}"
