"""The lint-rule table: each rule's code, name, severity and documentation.

A rule module declares its rules with `lint_rule(...)` and decorates its
check function with `@LintRule.check`; docs/lint.md is generated from
`LINT_RULES` (`python -m routelang.lint.docs > docs/lint.md`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..diagnostics import Code, Diagnostic, Severity, register


@dataclass
class LintRule:
    code: Code
    what: str          # what it finds
    why: str           # why it matters
    example: str       # routelang text that triggers it
    fix: str           # how to fix it
    serving_only: bool = False  # runs only for routers meant for `routelang serve` (`lint --serve`)
    checks: list[Callable] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.code.name

    def check(self, fn: Callable[..., Iterable[Diagnostic]]):
        self.checks.append(fn)
        return fn


LINT_RULES: dict[str, LintRule] = {}


def lint_rule(code: str, name: str, severity: Severity, summary: str, *, what: str, why: str,
              example: str, fix: str, serving_only: bool = False) -> LintRule:
    entry = LintRule(register(code, name, severity, summary), what, why, example.strip("\n"), fix, serving_only)
    LINT_RULES[name] = entry
    return entry
