"""Definitions and imports in the router file that nothing uses."""

from __future__ import annotations

from ..diagnostics import Diagnostic, Severity
from .registry import lint_rule

W = Severity.WARNING
DEFINITION_KINDS = ("target", "condition", "provider", "profile")

UNUSED_DEFINITION = lint_rule(
    "RL340", "unused-definition", W, "a definition is never used",
    what="A `target`, `condition`, `provider` or `profile` defined in the router file and never referred to.",
    why="Dead definitions mislead readers about what the router routes to.",
    example='target old = modal("old", "https://old.modal.run")   # no rule routes to it',
    fix="Delete it, or use it.",
)
UNUSED_IMPORT = lint_rule(
    "RL341", "unused-import", W, "nothing from an import is used",
    what="An `import` none of whose definitions the router file uses.",
    why="It costs a file read and suggests a dependency that does not exist.",
    example='import "shared.route"   # none of its targets or conditions are used',
    fix="Delete the import.",
)


@UNUSED_DEFINITION.check
def unused_definition(ctx):
    root = ctx.result.root
    used = ctx.result.used
    for symbol in root.defs.values():
        if symbol.kind in DEFINITION_KINDS and id(symbol) not in used:
            yield Diagnostic(UNUSED_DEFINITION.code, f"{symbol.kind} `{symbol.name}` is never used", symbol.span,
                             help="delete it, or use it")


@UNUSED_IMPORT.check
def unused_import(ctx):
    root = ctx.result.root
    used = ctx.result.used
    for node, module in root.imports:
        if not any(id(symbol) in used for symbol in module.defs.values()):
            what = node.module if node.module is not None else node.path.value
            yield Diagnostic(UNUSED_IMPORT.code, f"nothing from `{what}` is used", node.span,
                             help="delete the import")
