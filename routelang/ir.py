"""The typed IR: what a router means, after names, imports and defaults are
resolved. Backends, the checker's later passes, the linter, `explain` and the
runtime all read this.

Conventions:
- Every node may carry a `span`; spans never affect equality (see source.Span).
- Condition operators use the names of routelang/vocab/operators.py
  (Mixtrain's names, where Mixtrain has the operator).
- Durations are whole milliseconds; weights are fractions in 0..1.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from .source import NO_SPAN, Span, SpanMap
from .vocab import operators
from .vocab import settings as target_settings

# Condition operators, from the one table (routelang/vocab/operators.py).
OperatorName = Literal[operators.NAMES]

STRATEGIES = (
    "single", "split", "shadow", "fallback",
    "round_robin", "least_latency", "lowest_cost", "hybrid",
)
MIXTRAIN_STRATEGIES = ("single", "split", "shadow", "fallback")


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    span: Span = Field(default=NO_SPAN, exclude=True, repr=False)
    # Spans of individual parts (a setting, a value), for precise diagnostics.
    spans: SpanMap = Field(default_factory=SpanMap, exclude=True, repr=False)


# ---- conditions ----------------------------------------------------------------

class Compare(Node):
    kind: Literal["compare"] = "compare"
    field: str
    operator: OperatorName
    value: Any = None
    description: str | None = None


class AllOf(Node):
    kind: Literal["all"] = "all"
    items: tuple[Condition, ...]


class AnyOf(Node):
    kind: Literal["any"] = "any"
    items: tuple[Condition, ...]


class Not(Node):
    kind: Literal["not"] = "not"
    item: Condition


Condition = Annotated[Compare | AllOf | AnyOf | Not, Field(discriminator="kind")]
for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


# ---- targets -------------------------------------------------------------------

class CircuitBreaker(Node):
    failure_threshold: int = 5
    cooldown_ms: int = 30_000
    success_threshold: int = 1


class HealthCheck(Node):
    path: str = "/health"
    interval_ms: int = 30_000
    timeout_ms: int | None = None


_SETTING_TYPES: dict[str, Any] = {
    "string": str, "int": int, "duration": int, "fraction": float, "number": float, "bool": bool,
    "headers": dict[str, str],
}
_BLOCK_TYPES = {"circuit_breaker": CircuitBreaker, "health_check": HealthCheck}


def _setting_field(setting: target_settings.Setting) -> tuple[Any, Any]:
    kind = _BLOCK_TYPES[setting.surface] if setting.block else _SETTING_TYPES[setting.kind]
    return (kind, ...) if setting.required else (kind | None, None)  # None: not written


# A concrete endpoint: one field per target setting of vocab/settings.py (weight None:
# not written, Mixtrain's default 1.0), and `name`, the definition's name if it had one.
Target = create_model(
    "Target", __base__=Node, __module__=__name__,
    name=(str | None, None),
    **{s.ir_field: _setting_field(s) for s in target_settings.TABLE},
)


# ---- strategies ----------------------------------------------------------------

class Strategy(Node):
    kind: str                              # one of STRATEGIES
    targets: tuple[Target, ...]
    sticky_by: str | None = None           # split: field whose value buckets the request
    salt: str | None = None                # split: hash salt (defaults to the rule name)
    cost_weight: float | None = None       # hybrid
    latency_weight: float | None = None
    reliability_weight: float | None = None


# ---- rules, tests, router ------------------------------------------------------

class Rule(Node):
    name: str
    priority: int = 0
    description: str | None = None
    enabled: bool = True
    when: Condition | None = None          # None: matches every request
    strategy: Strategy


class Expectation(Node):
    """What a test expects (docs/language.md, Tests); `spans` has one entry per
    part written (rule, target, target_in, targets, shadow, no_match)."""

    rule: str | None = None
    target: str | None = None                      # the target that serves
    target_in: tuple[str, ...] | None = None       # ... is one of these
    targets: tuple[str, ...] | None = None         # the serving targets in order (fallbacks after the first)
    shadow: str | None = None                      # the target the request is mirrored to
    no_match: bool = False

    def names_targets(self) -> bool:
        return any(x is not None for x in (self.target, self.target_in, self.targets, self.shadow))


class Test(Node):
    name: str
    request: Any
    expect: Expectation


class SchemaField(Node):
    path: str
    type: str                              # string, number, integer, bool, list, object, any, enum
    values: tuple[Any, ...] = ()           # for enum


class Router(Node):
    name: str
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    rules: tuple[Rule, ...]
    tests: tuple[Test, ...] = ()
    schema_fields: tuple[SchemaField, ...] = ()

    def evaluation_order(self) -> list[Rule]:
        """Enabled rules as every engine tries them: priority high to low,
        ties in file order (Python's sort is stable)."""
        return sorted((r for r in self.rules if r.enabled), key=lambda r: -r.priority)
