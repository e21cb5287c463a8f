"""The runtime's one model of a router, read from a JSON config.

Both executors (the interpreter in `engine` and the generated Python of
`backends.python`) work from a `Plan`: the enabled rules in evaluation
order, each with its exact condition tree, strategy and targets. A Plan is
read from Mixtrain-schema JSON, plain or compiled by routelang (whose
`x-routelang` extension fields carry what Mixtrain cannot express; see
backends/json.py). A `.route` file reaches here through that same JSON, so
there is one loader and one meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..vocab import operators, strategies
from ..vocab import settings as target_settings

EXT = "x-routelang"
BREAKER_SETTINGS = ("failure_threshold", "cooldown_ms", "success_threshold")


class ConfigError(ValueError):
    """A JSON config the runtime cannot load."""


@dataclass(frozen=True, slots=True)
class Target:
    """A selected endpoint, with Mixtrain's `RoutingTarget` fields and
    routelang's extensions (`name`, `cost_per_1k_tokens`, `circuit_breaker`)."""

    provider: str
    model_name: str
    endpoint: str
    weight: float = 1.0
    label: str | None = None
    timeout_ms: int | None = None
    retry_count: int | None = None
    headers: dict[str, str] | None = None
    is_shadow: bool = False
    function_name: str | None = None
    request_class: str | None = None
    name: str | None = None
    cost_per_1k_tokens: float | None = None
    circuit_breaker: dict | None = None
    # Tenancy (docs/tenants.md): prices in micro-dollars per 1k tokens, and what restrictions read.
    input_micros_per_1k: int | None = None
    output_micros_per_1k: int | None = None
    capabilities: tuple[str, ...] = ()
    compliance: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # Identity for metrics and circuit breakers: the same endpoint used by several rules shares
    # one breaker and one latency record. Built once (read several times per routed request).
    key: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.provider, self.model_name, self.endpoint))

    def to_dict(self) -> dict[str, Any]:
        """Mixtrain's `RoutingTarget.model_dump()` fields, plus `name` when known."""
        out = {
            "provider": self.provider, "model_name": self.model_name, "endpoint": self.endpoint,
            "weight": self.weight, "label": self.label, "timeout_ms": self.timeout_ms,
            "retry_count": self.retry_count, "function_name": self.function_name,
            "request_class": self.request_class, "headers": self.headers, "is_shadow": self.is_shadow,
        }
        if self.name is not None:
            out["name"] = self.name
        return out

    def answers_to(self, name: str) -> bool:
        return name in (self.name, self.label, self.model_name, self.endpoint)


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """How a rule (or a split arm, or a fallback step) picks targets: a node
    of vocab/strategies.py's `kind` over its members, in written order. A
    member is a Target, or a StrategySpec when strategies nest."""

    kind: str
    members: tuple[Target | StrategySpec, ...]
    weights: tuple[float, ...]            # one per member: a split arm's share (a target's own weight otherwise)
    sticky_by: str | None = None          # split: the field that buckets a request
    salt: str | None = None
    failover: bool = True                 # split: False (`no failover`) keeps a request in its arm
    score_weights: tuple[float, ...] = ()  # one per `score_factors` of the kind (hybrid: cost, latency, reliability)

    def leaves(self) -> list[Target]:
        """Every target reachable from here, in written order."""
        out: list[Target] = []
        for m in self.members:
            out.extend(m.leaves() if isinstance(m, StrategySpec) else (m,))
        return out

    def walk(self):
        """This node and every node nested in it, depth first."""
        yield self
        for m in self.members:
            if isinstance(m, StrategySpec):
                yield from m.walk()

    def swapped(self, new_of: dict[int, Target]) -> StrategySpec:
        """A copy whose targets `t` are `new_of[id(t)]` (where given)."""
        members = tuple(m.swapped(new_of) if isinstance(m, StrategySpec) else new_of.get(id(m), m)
                        for m in self.members)
        return replace(self, members=members)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One routelang rule as the runtime runs it."""

    name: str
    priority: int
    description: str | None
    enabled: bool
    when: dict | None                     # exact condition tree (operators.evaluate's form)
    selection: StrategySpec               # how targets are picked
    targets: tuple[Target, ...]           # the JSON's `targets`: every target, flattened
    location: tuple[str, int, int] | None = None   # .route file, line, column, when compiled from one

    @property
    def strategy(self) -> str:
        """The kind of the rule's (outermost) strategy: single, split, ... (vocab/strategies.py)."""
        return self.selection.kind

    def with_targets(self, targets: tuple[Target, ...]) -> RuleSpec:
        """A copy with `targets` (one for each of `self.targets`, in order) in place
        of the old ones, in the strategy tree too (loading fills `${VAR}`s so)."""
        new_of = {id(old): new for old, new in zip(self.targets, targets)}
        return replace(self, targets=targets, selection=self.selection.swapped(new_of))

    @property
    def conditions(self) -> list[dict]:
        """The leaf conditions, in written order (for explanations)."""
        out: list[dict] = []
        _leaves(self.when, out)
        return out


def _leaves(tree: dict | None, out: list[dict]) -> None:
    if tree is None:
        return
    for key in ("all", "any"):
        if key in tree:
            for item in tree[key]:
                _leaves(item, out)
            return
    if "not" in tree:
        _leaves(tree["not"], out)
        return
    out.append(tree)


@dataclass(frozen=True)
class Plan:
    name: str
    description: str | None
    rules: tuple[RuleSpec, ...]                  # every rule, in file order
    order: tuple[RuleSpec, ...] = field(init=False)  # enabled rules in evaluation order
    # The workspaces and agents (x-routelang.policies, as the JSON backend writes them): the
    # gateway's tenancy reads them; routing does not.
    policies: tuple[dict, ...] = ()

    def __post_init__(self):
        # Priority high to low, ties in file order (Python's sort is stable), as Mixtrain.
        object.__setattr__(self, "order", tuple(sorted((r for r in self.rules if r.enabled),
                                                       key=lambda r: -r.priority)))


# ---- reading JSON ----------------------------------------------------------------

def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _condition(tree: Any, where: str) -> dict:
    _require(isinstance(tree, dict), f"{where}: a condition must be an object")
    for key in ("all", "any"):
        if key in tree:
            _require(isinstance(tree[key], list), f"{where}: `{key}` must be a list")
            return {key: [_condition(c, where) for c in tree[key]]}
    if "not" in tree:
        return {"not": _condition(tree["not"], where)}
    field_name, op = tree.get("field"), tree.get("operator")
    _require(isinstance(field_name, str), f"{where}: a condition needs a string `field`")
    _require(isinstance(op, str) and operators.ALIASES.get(op, op) in operators.BY_NAME,
             f"{where}: unknown operator {op!r}")
    op = operators.get(op).name
    return {"field": field_name, "operator": op, "value": tree.get("value")}


def _number(value: Any, default: float, where: str) -> float:
    if value is None:
        return default
    _require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
             f"{where}: expected a number, got {value!r}")
    return float(value)


def _optional(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        ok = value is None or isinstance(value, bool)
    else:  # bool is an int in Python, but not a timeout
        ok = value is None or (isinstance(value, kind) and not isinstance(value, bool))
    _require(ok, f"{where}: expected {kind.__name__}, got {value!r}")
    return value


# How the reader checks a flat Mixtrain setting of each kind (`is_shadow` and
# `headers` need more than a type check).
_PYTHON_TYPE = {"string": str, "int": int, "duration": int}


def _target(data: Any, where: str) -> Target:
    _require(isinstance(data, dict), f"{where}: a target must be an object")
    for setting in target_settings.IDENTITY:
        key = setting.json_field
        _require(isinstance(data.get(key), str), f"{where}: a target needs a string `{key}`")
    ext = data.get(EXT) or {}
    headers = data.get("headers")
    _require(headers is None or (isinstance(headers, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items())),
        f"{where}: `headers` must map strings to strings")
    breaker = ext.get("circuit_breaker")
    _require(breaker is None or (isinstance(breaker, dict) and set(breaker) <= set(BREAKER_SETTINGS) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in breaker.values())),
        f"{where}: `circuit_breaker` takes non-negative integers {', '.join(BREAKER_SETTINGS)}")
    cost = ext.get("cost_per_1k_tokens")
    return Target(
        provider=data["provider"], model_name=data["model_name"], endpoint=data["endpoint"],
        weight=_number(data.get("weight"), 1.0, where),
        **{s.ir_field: _optional(data.get(s.json_field), _PYTHON_TYPE[s.kind], where)
           for s in target_settings.MIXTRAIN_OPTIONAL if s.kind in _PYTHON_TYPE},
        headers=dict(headers) if headers is not None else None,
        is_shadow=bool(_optional(data.get("is_shadow"), bool, where) or False),
        name=_optional(ext.get("name"), str, where),
        cost_per_1k_tokens=None if cost is None else _number(cost, 0.0, where),
        circuit_breaker=dict(breaker) if breaker is not None else None,
        **{s.ir_field: _price(ext.get(s.json_field), where) for s in target_settings.TENANCY if s.kind == "money"},
        **{s.ir_field: _strings(ext.get(s.json_field), s.json_field, where)
           for s in target_settings.TENANCY if s.kind == "strings"},
    )


def _price(value: Any, where: str) -> int | None:
    _require(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0),
             f"{where}: a price is a whole number of micro-dollars per 1k tokens")
    return value


def _strings(value: Any, field_name: str, where: str) -> tuple[str, ...]:
    _require(value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
             f"{where}: `{field_name}` must be a list of strings")
    return tuple(value or ())


def _rule(data: Any, index: int) -> RuleSpec | None:
    where = f"rule {index + 1}"
    _require(isinstance(data, dict), f"{where}: a rule must be an object")
    ext = data.get(EXT) or {}
    _require(isinstance(ext, dict), f"{where}: `{EXT}` must be an object")
    if "part_of" in ext:
        return None  # an extra rule an `or` expanded into, for Mixtrain only
    name = data.get("name")
    _require(isinstance(name, str), f"{where}: a rule needs a string `name`")
    where = f"rule {name!r}"
    priority = data.get("priority", 0)
    _require(isinstance(priority, int) and not isinstance(priority, bool), f"{where}: `priority` must be an integer")
    enabled = ext.get("enabled", data.get("is_enabled", True))
    _require(isinstance(enabled, bool), f"{where}: `is_enabled` must be true or false")
    if "when" in ext:
        when = None if ext["when"] is None else _condition(ext["when"], where)
    else:
        conditions = data.get("conditions") or []
        _require(isinstance(conditions, list), f"{where}: `conditions` must be a list")
        when = {"all": [_condition(c, where) for c in conditions]} if conditions else None
    targets = data.get("targets")
    _require(isinstance(targets, list) and targets, f"{where}: a rule needs at least one target")
    strategy_ext = ext.get("strategy") or {}
    _require(isinstance(strategy_ext, dict), f"{where}: `{EXT}.strategy` must be an object")
    leaves = tuple(_target(t, where) for t in targets)
    if "members" in strategy_ext:
        selection = _tree(strategy_ext, leaves, name, (), where)
    else:
        kind = strategy_ext.get("kind", data.get("strategy", "single"))
        defn = _definition(kind, where)
        count, high = len(leaves), defn.json_max_targets
        _require(count >= defn.min_targets and (high is None or count <= high),
                 f"{where}: the {kind} strategy needs {_bounds(defn.min_targets, high)} targets")
        selection = StrategySpec(kind, leaves, tuple(t.weight for t in leaves),
                                 **_parameters(strategy_ext, defn, name, where))
    return RuleSpec(name=name, priority=priority, description=data.get("description"), enabled=enabled, when=when,
                    selection=selection, targets=leaves)


def _definition(kind: Any, where: str) -> strategies.StrategyDef:
    _require(isinstance(kind, str) and kind in strategies.STRATEGIES, f"{where}: unknown strategy {kind!r}")
    return strategies.STRATEGIES[kind]


def _bounds(low: int, high: int | None) -> str:
    return f"exactly {low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"


def _parameters(node: dict, defn: strategies.StrategyDef, salt: str, where: str) -> dict[str, Any]:
    sticky_by = node.get("sticky_by")
    _require(sticky_by is None or isinstance(sticky_by, str), f"{where}: `sticky_by` must be a string")
    salt = node.get("salt", salt)
    _require(isinstance(salt, str), f"{where}: `salt` must be a string")
    failover = node.get("failover", True)
    _require(isinstance(failover, bool), f"{where}: `failover` must be true or false")
    return {"sticky_by": sticky_by, "salt": salt, "failover": failover,
            "score_weights": tuple(_number(node.get(f"{f}_weight"), 0.0, where) for f in defn.score_factors)}


def _tree(node: Any, leaves: tuple[Target, ...], rule: str, path: tuple[int, ...], where: str) -> StrategySpec:
    """A nested strategy tree (x-routelang.strategy with `members`; see backends/json.py)."""
    _require(isinstance(node, dict), f"{where}: a nested strategy must be an object")
    defn = _definition(node.get("kind"), where)
    members_data = node.get("members")
    _require(isinstance(members_data, list), f"{where}: `members` must be a list")
    members: list[Target | StrategySpec] = []
    for i, m in enumerate(members_data):
        if isinstance(m, dict):
            _require(defn.nests, f"{where}: a {defn.kind} strategy cannot have strategies as members")
            members.append(_tree(m, leaves, rule, (*path, i), where))
        else:
            _require(isinstance(m, int) and not isinstance(m, bool) and 0 <= m < len(leaves),
                     f"{where}: member {m!r} is not the index of one of the rule's targets")
            members.append(leaves[m])
    high = defn.max_targets
    _require(len(members) >= defn.min_targets and (high is None or len(members) <= high),
             f"{where}: the {defn.kind} strategy needs {_bounds(defn.min_targets, high)} members")
    if "weights" in node:
        weights = node["weights"]
        _require(isinstance(weights, list) and len(weights) == len(members),
                 f"{where}: `weights` must give one number per member")
        weights = tuple(_number(w, 1.0, where) for w in weights)
    else:
        weights = tuple(m.weight if isinstance(m, Target) else 1.0 for m in members)
    salt = rule if not path else f"{rule}/{'.'.join(map(str, path))}"
    return StrategySpec(defn.kind, tuple(members), weights, **_parameters(node, defn, salt, where))


def plan_from_config(config: Any, locations: dict[str, tuple[str, int, int]] | None = None) -> Plan:
    """Read a Mixtrain-schema config (plain, or compiled by routelang)."""
    if hasattr(config, "model_dump"):  # a mixtrain RoutingConfig object
        config = config.model_dump()
    _require(isinstance(config, dict), "a routing config must be a JSON object")
    rules_data = config.get("rules")
    _require(isinstance(rules_data, list) and rules_data, "a routing config needs a non-empty `rules` list")
    rules = [r for i, data in enumerate(rules_data) if (r := _rule(data, i)) is not None]
    names = [r.name for r in rules]
    _require(len(names) == len(set(names)), "rule names must be unique")
    if locations:
        rules = [_with_location(r, locations.get(r.name)) for r in rules]
    name = config.get("name")
    policies = (config.get(EXT) or {}).get("policies") or []
    _require(isinstance(policies, list) and all(isinstance(p, dict) for p in policies),
             "x-routelang.policies must be a list of objects")
    return Plan(name=name if isinstance(name, str) else "router", description=config.get("description"),
                rules=tuple(rules), policies=tuple(policies))


def _with_location(rule: RuleSpec, location: tuple[str, int, int] | None) -> RuleSpec:
    return rule if location is None else replace(rule, location=location)
