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

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from .source import NO_SPAN, Span, SpanMap
from .vocab import operators
from .vocab import settings as target_settings

# Condition operators, from the one table (routelang/vocab/operators.py).
OperatorName = Literal[operators.NAMES]



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


def walk_conditions(cond: Condition | None) -> Iterator[Compare]:
    """Every comparison of a condition, in written order."""
    if cond is None:
        return
    if isinstance(cond, Compare):
        yield cond
    elif isinstance(cond, Not):
        yield from walk_conditions(cond.item)
    else:
        for item in cond.items:
            yield from walk_conditions(item)


def condition_tree(cond: Condition) -> dict:
    """The exact condition tree, as the runtime reads it (x-routelang.when)."""
    if isinstance(cond, Compare):
        out: dict[str, Any] = {"field": cond.field, "operator": cond.operator}
        if cond.operator not in operators.UNARY:
            out["value"] = cond.value
        return out
    if isinstance(cond, Not):
        return {"not": condition_tree(cond.item)}
    key = "all" if isinstance(cond, AllOf) else "any"
    return {key: [condition_tree(c) for c in cond.items]}


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
    "headers": dict[str, str], "money": int, "strings": tuple[str, ...],
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
# One model per strategy of vocab/strategies.py, each with only its own fields,
# discriminated by `kind` (as conditions are). `targets` is every target a
# strategy can reach, flattened in written order (what Mixtrain's JSON lists);
# split arms and fallback steps may be strategies themselves (`Member`).

class _Strategy(Node):
    """What every strategy model has. Each defines `members` (the targets or
    nested strategies it chooses among, in written order) and `_with_members`."""

    @property
    def targets(self) -> tuple[Target, ...]:
        out: list[Target] = []
        for member in self.members:
            inner = member.strategy if isinstance(member, NestedArm) else member
            out.extend(inner.targets if isinstance(inner, _Strategy) else (inner,))
        return tuple(out)

    def nested(self) -> tuple[Strategy, ...]:
        """The strategies written as members of this one (not recursively)."""
        return tuple(m.strategy if isinstance(m, NestedArm) else m for m in self.members
                     if isinstance(m, (_Strategy, NestedArm)))

    def walk(self):
        """This strategy and every strategy nested in it, depth first."""
        yield self
        for inner in self.nested():
            yield from inner.walk()

    def map_targets(self, fn) -> Strategy:
        """A copy with every target replaced by `fn(target)`."""
        def member(m):
            if isinstance(m, NestedArm):
                return m.model_copy(update={"strategy": m.strategy.map_targets(fn)})
            return m.map_targets(fn) if isinstance(m, _Strategy) else fn(m)
        return self._with_members(tuple(member(m) for m in self.members))


class Single(_Strategy):
    kind: Literal["single"] = "single"
    target: Target

    @property
    def members(self) -> tuple:
        return (self.target,)

    def _with_members(self, members):
        return self.model_copy(update={"target": members[0]})

    @classmethod
    def of(cls, members: tuple, **fields) -> Single:
        return cls(target=members[0], **fields)


class Shadow(_Strategy):
    kind: Literal["shadow"] = "shadow"
    primary: Target
    shadow: Target

    @property
    def members(self) -> tuple:
        return (self.primary, self.shadow)

    def _with_members(self, members):
        return self.model_copy(update={"primary": members[0], "shadow": members[1]})

    @classmethod
    def of(cls, members: tuple, **fields) -> Shadow:
        return cls(primary=members[0], shadow=members[1], **fields)


class NestedArm(Node):
    """A split arm that is a strategy: `80% primary: (fallback a, b)`. (An arm
    that is a target carries its weight and label on the Target, as Mixtrain's
    JSON does.)"""

    weight: float
    label: str | None = None
    strategy: Strategy


class Split(_Strategy):
    kind: Literal["split"] = "split"
    arms: tuple[Target | NestedArm, ...]
    sticky_by: str | None = None           # field whose value buckets the request
    salt: str | None = None                # hash salt (defaults to the rule name)
    failover: bool = True                  # False (`no failover`): a request never moves to another arm

    @property
    def members(self) -> tuple:
        return self.arms

    def _with_members(self, members):
        return self.model_copy(update={"arms": members})

    @classmethod
    def of(cls, members: tuple, **fields) -> Split:
        return cls(arms=members, **fields)


class _Listed(_Strategy):
    @property
    def members(self) -> tuple:
        return self.candidates

    def _with_members(self, members):
        return self.model_copy(update={"candidates": members})

    @classmethod
    def of(cls, members: tuple, **fields) -> _Listed:
        return cls(candidates=members, **fields)


class Fallback(_Listed):
    kind: Literal["fallback"] = "fallback"
    candidates: tuple[Member, ...]         # the steps, tried in order


class RoundRobin(_Listed):
    kind: Literal["round_robin"] = "round_robin"
    candidates: tuple[Target, ...]


class LeastLatency(_Listed):
    kind: Literal["least_latency"] = "least_latency"
    candidates: tuple[Target, ...]


class LowestCost(_Listed):
    kind: Literal["lowest_cost"] = "lowest_cost"
    candidates: tuple[Target, ...]


class Hybrid(_Listed):
    kind: Literal["hybrid"] = "hybrid"
    candidates: tuple[Target, ...]
    cost_weight: float | None = None       # None: not written, which counts as 0
    latency_weight: float | None = None
    reliability_weight: float | None = None


Strategy = Annotated[
    Single | Shadow | Split | Fallback | RoundRobin | LeastLatency | LowestCost | Hybrid,
    Field(discriminator="kind"),
]
Member = Target | Strategy
for _model in (NestedArm, Split, Fallback):
    _model.model_rebuild()
# kind -> model, for building a strategy from its vocab entry.
STRATEGY_MODELS: dict[str, type[_Strategy]] = {
    m.model_fields["kind"].default: m
    for m in (Single, Shadow, Split, Fallback, RoundRobin, LeastLatency, LowestCost, Hybrid)
}


# ---- tenants: workspaces and agents --------------------------------------------
# Money is whole micro-dollars (1 USD = 1_000_000), so sums are exact.

MICROS_PER_USD = 1_000_000
BudgetPeriod = Literal["day", "week", "month"]
RatePeriod = Literal["second", "minute", "hour", "day"]
SECONDS_PER = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}


class Budget(Node):
    period: BudgetPeriod                   # a calendar day, week (from Monday) or month in the policy's zone
    micros: int


class RateLimit(Node):
    unit: Literal["requests", "tokens"]
    amount: int
    per: RatePeriod

    @property
    def seconds(self) -> int:
        return SECONDS_PER[self.per]


class Requirements(Node):
    """Quality a target must show to stay in selection (None: not required)."""

    min_success: float | None = None       # 0..1
    max_latency_ms: int | None = None
    latency_percentile: int | None = None  # 50, 95, 99
    max_micros_per_1k: int | None = None   # the target's price of 1k tokens (the dearer of input and output)
    refuse_when_none: bool = False         # no target qualifies: refuse (True) or serve the best left


class Policy(Node):
    """A `workspace` or an `agent`: what its requests may reach and spend.
    A request belongs to workspace `workspace.id` and agent `agent.id`."""

    kind: Literal["workspace", "agent"]
    name: str
    description: str | None = None
    budgets: tuple[Budget, ...] = ()
    limits: tuple[RateLimit, ...] = ()
    allow_targets: tuple[str, ...] | None = None     # None: any
    allow_providers: tuple[str, ...] | None = None
    allow_tags: tuple[str, ...] | None = None        # a target carrying one of them
    compliance: tuple[str, ...] = ()                 # a target carrying all of them
    capabilities: tuple[str, ...] = ()               # a target having all of them
    prefer: tuple[str, ...] = ()                     # an agent's preferred targets ...
    fallback: tuple[str, ...] = ()                   # ... and its fallbacks: together, the ones it may use
    requirements: Requirements | None = None
    timezone: str = "UTC"

    @property
    def request_field(self) -> str:
        return f"{self.kind}.id"

    def refusals(self, target: Target) -> list[str]:
        """Why `target` is outside this policy's restrictions (empty: it is inside)."""
        out = []
        named = self.allow_targets if self.allow_targets is not None else (
            self.prefer + self.fallback if self.prefer or self.fallback else None)
        if named is not None and target.name not in named:
            out.append(f"it is not one of the allowed targets ({', '.join(named)})")
        if self.allow_providers is not None and target.provider not in self.allow_providers:
            out.append(f"its provider `{target.provider}` is not allowed")
        if self.allow_tags is not None and not set(self.allow_tags) & set(target.tags or ()):
            out.append(f"it carries none of the tags {', '.join(self.allow_tags)}")
        missing = [c for c in self.compliance if c not in (target.compliance or ())]
        if missing:
            out.append(f"it lacks compliance {', '.join(missing)}")
        lacking = [c for c in self.capabilities if c not in (target.capabilities or ())]
        if lacking:
            out.append(f"it lacks the capabilities {', '.join(lacking)}")
        return out


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
    policies: tuple[Policy, ...] = ()      # workspaces and agents, in written order

    def evaluation_order(self) -> list[Rule]:
        """Enabled rules as every engine tries them: priority high to low,
        ties in file order (Python's sort is stable)."""
        return sorted((r for r in self.rules if r.enabled), key=lambda r: -r.priority)
