"""What every lint rule reads: the compile result, and the analysis, built once."""

from __future__ import annotations

from functools import cached_property

from .. import ir
from ..analysis import RouterAnalysis
from ..analysis.router import as_served
from ..compiler import CompileResult
from ..source import Span
from ..vocab import request_document


class LintContext:
    def __init__(self, result: CompileResult, serving: bool = False):
        """serving: the router is meant for `routelang serve`, whose requests are
        OpenAI bodies made into the gateway's request document."""
        self.result = result
        self.router: ir.Router = result.router
        self.serving = serving

    @cached_property
    def analysis(self) -> RouterAnalysis:
        if self.serving:
            return RouterAnalysis(as_served(self.router), complete=request_document.with_copies)
        return RouterAnalysis(self.router)

    @property
    def router_span(self) -> Span:
        return self.router.span

    @staticmethod
    def rule_span(rule: ir.Rule) -> Span:
        return rule.spans.get("name", rule.span)

    def text(self, span: Span) -> str | None:
        """The source text under a span, or None when the span is unknown."""
        source = self.result.sources.get(span.file)
        if source is None or span.line <= 0 or span.end_line < span.line:
            return None
        lines = source.lines[span.line - 1:span.end_line]
        if not lines:
            return None
        if len(lines) == 1:
            return lines[0][span.column - 1:span.end_column - 1]
        return "\n".join([lines[0][span.column - 1:], *lines[1:-1], lines[-1][:span.end_column - 1]])


def part_span(node, part: str) -> Span:
    """The span of one part of a condition (its value, its field), falling back
    to the field and then the whole node when the parser recorded none."""
    for key in (part, "field"):
        span = node.spans.get(key)
        if span is not None and span.line > 0:
            return span
    return node.span
