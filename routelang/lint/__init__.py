"""`routelang lint`: findings about routers that compile but are probably wrong.

    from routelang.lint import lint
    findings = lint(compile_path("router.route"))

One module per family of rules (mixtrain, reachability, values, strategies,
targets, served, definitions); each rule has a code (RL3xx), a kebab-case name
and its docs in `LINT_RULES`. A finding is silenced by a comment naming it, on the line of
the finding or the line before:

    # routelang: disable=unreachable-rule,overlapping-rules
"""

from __future__ import annotations

import re

from ..compiler import CompileResult
from ..diagnostics import Diagnostic, has_errors, sort_diagnostics
from . import definitions, mixtrain, reachability, served, strategies, targets, values  # noqa: F401  (they register)
from .context import LintContext
from .registry import LINT_RULES, LintRule

__all__ = ["LINT_RULES", "LintRule", "lint", "suppressions"]

DISABLE = re.compile(r"#\s*routelang:\s*disable=([\w,\s-]+)")


def suppressions(result: CompileResult) -> dict[tuple[str, int], set[str]]:
    """(file, line) -> names silenced there, from `# routelang: disable=` comments.
    A comment silences its own line; a comment alone on its line also
    silences the line after it."""
    out: dict[tuple[str, int], set[str]] = {}
    for module in result.modules:
        for comment in module.file.comments:
            match = DISABLE.search(comment.text)
            if not match:
                continue
            names = {n.strip() for n in match.group(1).split(",") if n.strip()}
            span = comment.span
            alone = not module.source.line_text(span.line)[:span.column - 1].strip()
            for line in (span.line, span.line + 1) if alone else (span.line,):
                out.setdefault((comment.span.file, line), set()).update(names)
    return out


def lint(result: CompileResult, serving: bool = False) -> list[Diagnostic]:
    """Lint findings for a compiled router (none when it does not compile:
    the checker's errors come first). serving: the router is meant for
    `routelang serve`; the rules about its request document run too."""
    if result.router is None or has_errors(result.diagnostics):
        return []
    ctx = LintContext(result, serving)
    silenced = suppressions(result)
    findings = []
    for rule in LINT_RULES.values():
        if rule.serving_only and not serving:
            continue
        for check in rule.checks:
            for diag in check(ctx):
                if diag.code.name not in silenced.get((diag.span.file, diag.span.line), ()):
                    findings.append(diag)
    return sort_diagnostics(findings)
