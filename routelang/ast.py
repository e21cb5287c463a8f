"""Syntax nodes: what the text says, with a span on every node.

The AST keeps the user's spelling (names not yet resolved, weights as
written, durations with their units) so that the formatter and the language
server can work from it. `resolve` turns it into the IR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .source import Span


@dataclass(slots=True)
class Name:
    text: str
    span: Span
    quoted: bool = False


@dataclass(slots=True)
class Value:
    """A literal: str, int, float, bool, None, list[Value] or dict[str, Value]."""

    value: Any
    span: Span
    depth: int = 0       # nesting depth of lists/objects inside

    def plain(self) -> Any:
        """The literal as plain Python data (lists and dicts unwrapped)."""
        v = self.value
        if isinstance(v, list):
            return [item.plain() for item in v]
        if isinstance(v, dict):
            return {key: item.plain() for key, item in v.items()}
        return v


@dataclass(slots=True)
class Duration:
    ms: float
    text: str
    span: Span


# ---- settings and targets ----------------------------------------------------

@dataclass(slots=True)
class Setting:
    key: str            # provider, model, endpoint, weight, label, timeout, retries,
                        # headers, function_name, request_class, cost, is_shadow,
                        # circuit_breaker, health_check, use
    value: Any          # Value, Duration, Name (for use), or list[Setting] (nested blocks)
    span: Span


@dataclass(slots=True)
class Settings:
    items: list[Setting]
    span: Span


@dataclass(slots=True)
class TargetRef:
    name: Name
    span: Span


@dataclass(slots=True)
class TargetCall:
    provider: Name
    args: list[Value]
    settings: Settings | None
    span: Span


@dataclass(slots=True)
class TargetLiteral:
    settings: Settings
    span: Span


TargetExpr = TargetRef | TargetCall | TargetLiteral


# ---- conditions ----------------------------------------------------------------

@dataclass(slots=True)
class FieldPath:
    segments: list[str]
    span: Span

    @property
    def dotted(self) -> str:
        return ".".join(self.segments)


@dataclass(slots=True)
class Compare:
    path: FieldPath
    op: str              # the IR operator name: equals, in, greater_or_equal, ...
    value: Value | None  # None for exists / not_exists
    span: Span
    op_text: str = ""    # as written: ==, in, =~ ...
    note: Value | None = None


@dataclass(slots=True)
class AllOf:
    items: list[Expr]
    span: Span


@dataclass(slots=True)
class AnyOf:
    items: list[Expr]
    span: Span


@dataclass(slots=True)
class Not:
    item: Expr
    span: Span


@dataclass(slots=True)
class Paren:
    item: Expr
    span: Span


@dataclass(slots=True)
class CondRef:
    name: Name
    span: Span


# Parentheses leave no node: `(a or b)` is the AnyOf inside them.
Expr = Compare | AllOf | AnyOf | Not | CondRef


# ---- strategies ----------------------------------------------------------------

@dataclass(slots=True)
class SplitEntry:
    weight: float        # as a fraction
    weight_text: str
    label: Name | None
    target: TargetExpr | Strategy   # a nested strategy: `80% primary: (fallback a, b)`
    span: Span


@dataclass(slots=True)
class Sticky:
    path: FieldPath
    salt: Value | None
    span: Span


@dataclass(slots=True)
class Strategy:
    kind: str            # a kind of vocab/strategies.py
    targets: list[TargetExpr | Strategy]   # a nested strategy is a split arm or fallback step
    span: Span
    entries: list[SplitEntry] = field(default_factory=list)
    sticky: Sticky | None = None
    no_failover: Span | None = None      # split: `no failover`, where it is written
    hybrid: dict[str, Value] = field(default_factory=dict)


# ---- tenants: workspaces and agents ----------------------------------------------

@dataclass(slots=True)
class Budget:
    amount: Value        # in the currency, as written: `100`, `0.5`
    period: str          # day, week, month
    span: Span
    currency: str | None = None   # written on the first budget of a line only


@dataclass(slots=True)
class RateLimit:
    amount: int          # `200k` -> 200000
    text: str            # as written
    unit: str            # requests, tokens
    per: str             # second, minute, hour, day
    span: Span


@dataclass(slots=True)
class Requirement:
    metric: str          # success, latency, cost
    op: str              # >=, <=, ... (the checker says which fits)
    value: Any           # success: (fraction, text); latency: Duration; cost: Value
    span: Span
    percentile: Name | None = None   # latency: p50, p95, p99


@dataclass(slots=True)
class PolicyItem:
    key: str             # budget, limit, allow_targets, allow_providers, allow_tags, compliance,
                         # capabilities, prefer, fallback, require, timezone
    value: Any           # list[Budget] | list[RateLimit] | list[Name] | Value | list[Requirement]
    span: Span
    otherwise: Name | None = None    # require: `otherwise refuse` / `otherwise serve best`


@dataclass(slots=True)
class PolicyDef:
    kind: str            # workspace, agent
    name: Name
    description: Value | None
    items: list[PolicyItem]
    span: Span


# ---- top-level items -----------------------------------------------------------

@dataclass(slots=True)
class RouterHeader:
    name: Name
    description: Value | None
    span: Span


@dataclass(slots=True)
class MetadataBlock:
    value: Value
    span: Span


@dataclass(slots=True)
class Import:
    module: str | None   # std.providers
    path: Value | None   # "common.route"
    span: Span


@dataclass(slots=True)
class ProviderDef:
    name: Name
    settings: Settings | None
    span: Span


@dataclass(slots=True)
class ProfileDef:
    name: Name
    settings: Settings
    span: Span


@dataclass(slots=True)
class DefaultsDef:
    settings: Settings
    span: Span


@dataclass(slots=True)
class TargetDef:
    name: Name
    target: TargetExpr
    span: Span


@dataclass(slots=True)
class ConditionDef:
    name: Name
    expr: Expr
    span: Span


@dataclass(slots=True)
class SchemaField:
    path: FieldPath
    type: str            # string, number, integer, bool, list, object, any, enum
    enum: list[Value]
    span: Span


@dataclass(slots=True)
class SchemaDef:
    fields: list[SchemaField]
    span: Span


@dataclass(slots=True)
class RuleDef:
    name: Name
    span: Span
    priority: Value | None = None
    description: Value | None = None
    enabled: Name | None = None      # the `enabled` / `disabled` keyword, if written
    whens: list[Expr] = field(default_factory=list)
    strategies: list[Strategy] = field(default_factory=list)


@dataclass(slots=True)
class Expectation:
    kind: str            # rule, target, target_in, targets, shadow, no_match
    name: Name | None    # rule, target, shadow
    span: Span
    names: list[Name] = field(default_factory=list)   # target_in, targets


@dataclass(slots=True)
class TestDef:
    name: Value
    requests: list[Value]
    expectations: list[Expectation]
    span: Span


Item = (
    RouterHeader | MetadataBlock | Import | ProviderDef | ProfileDef
    | DefaultsDef | TargetDef | ConditionDef | SchemaDef | RuleDef | TestDef | PolicyDef
)


@dataclass(slots=True)
class Comment:
    text: str
    span: Span


@dataclass(slots=True)
class File:
    items: list[Item]
    comments: list[Comment]
    span: Span
