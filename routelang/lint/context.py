"""What every lint rule reads: the compile result, and the analysis, built once."""

from __future__ import annotations

from functools import cached_property

from .. import ir
from ..analysis import RouterAnalysis
from ..compiler import CompileResult
from ..source import Span


class LintContext:
    def __init__(self, result: CompileResult):
        self.result = result
        self.router: ir.Router = result.router

    @cached_property
    def analysis(self) -> RouterAnalysis:
        return RouterAnalysis(self.router)

    @property
    def router_span(self) -> Span:
        return self.router.span

    @staticmethod
    def rule_span(rule: ir.Rule) -> Span:
        return rule.spans.get("name", rule.span)
