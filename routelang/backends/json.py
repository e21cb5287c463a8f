"""IR -> Mixtrain routing-config JSON.

The output loads in Mixtrain's `RoutingConfig` and routes there as
routelang's semantics say for everything Mixtrain can express. What Mixtrain
cannot express travels in `x-routelang` extension fields, which Mixtrain
ignores (its models drop unknown keys) and routelang's runtime reads:

rule["x-routelang"]:
    when        the exact condition tree ({"all"|"any": [...]}, {"not": c},
                or a condition), when `conditions` alone is not exact
    strategy    {"kind": K, ...K's parameters}, for a strategy Mixtrain lacks or a
                parameter it lacks (a sticky split's "sticky_by", "salt"; hybrid's
                "cost_weight", "latency_weight", "reliability_weight"); see
                vocab/strategies.py for which. When members are strategies
                themselves (A11), the whole tree: each node also has "members"
                (an int is an index into the rule's `targets`, an object a
                nested node), and a split node "weights" and "labels", one per
                member. A nested split's salt defaults to "RULE/PATH", PATH
                the member indices from the root ("canary/0.1").
    enabled     routelang's enabled flag, when Mixtrain's view had to differ
    part_of     set on the extra rules an `or` expands into; routelang skips them
target["x-routelang"]:
    name, cost_per_1k_tokens, circuit_breaker, health_check

Each approximation comes with an RL901 note that says what Mixtrain will do.
"""

from __future__ import annotations

import re
from typing import Any

from .. import __version__, ir
from ..diagnostics import MIXTRAIN_APPROXIMATION, Diagnostic
from ..envvars import has_refs as envvars_in
from ..vocab import strategies

FORMAT_VERSION = 1
MAX_EXPANDED_RULES = 32  # beyond this many `or` branches, don't expand for Mixtrain
EXT = "x-routelang"


# ---- conditions ----------------------------------------------------------------

def condition_tree(cond) -> dict:
    """The exact condition tree, as the runtime reads it."""
    if isinstance(cond, ir.Compare):
        out: dict[str, Any] = {"field": cond.field, "operator": cond.operator}
        if cond.operator not in ir.UNARY_OPERATORS:
            out["value"] = cond.value
        return out
    if isinstance(cond, ir.Not):
        return {"not": condition_tree(cond.item)}
    key = "all" if isinstance(cond, ir.AllOf) else "any"
    return {key: [condition_tree(c) for c in cond.items]}


class _Inexact(Exception):
    """A condition Mixtrain's operators cannot state exactly."""

    def __init__(self, what: str):
        self.what = what


def _mixtrain_literal(cmp: ir.Compare, negated: bool) -> ir.Compare:
    """One Mixtrain condition equal in meaning to `cmp` (or its negation)."""
    if isinstance(cmp.value, dict):
        raise _Inexact("an object as a condition value")  # RoutingCondition.value cannot hold one
    op = cmp.operator
    if negated:
        if op not in ir.NEGATED_OPERATOR:
            raise _Inexact(f"`not` of `{op}`")
        if op in ("contains", "not_contains") and not isinstance(cmp.value, str):
            raise _Inexact(f"`not` of `{op}` with a non-string value")  # both sides are False
        op = ir.NEGATED_OPERATOR[op]
        return cmp.model_copy(update={"operator": op, "description": None})
    if op == "starts_with":
        # re.search("^" + escaped) on str(actual) == str(actual).startswith(value)
        return cmp.model_copy(update={"operator": "regex", "value": "^" + re.escape(cmp.value)})
    if op == "ends_with":
        return cmp.model_copy(update={"operator": "regex", "value": re.escape(cmp.value) + r"\Z"})
    if op in ("greater_or_equal", "less_or_equal"):
        raise _Inexact(f"`{'>=' if op == 'greater_or_equal' else '<='}`")
    return cmp


def _dnf(cond, negated: bool = False) -> list[list[ir.Compare]]:
    """Disjunctive normal form over Mixtrain literals; raises _Inexact."""
    if isinstance(cond, ir.Compare):
        return [[_mixtrain_literal(cond, negated)]]
    if isinstance(cond, ir.Not):
        return _dnf(cond.item, not negated)
    conjunction = isinstance(cond, ir.AllOf) != negated  # De Morgan
    parts = [_dnf(c, negated) for c in cond.items]
    if not conjunction:
        out = [term for part in parts for term in part]
    else:
        out = [[]]
        for part in parts:
            out = [left + right for left in out for right in part]
            if len(out) > MAX_EXPANDED_RULES:
                raise _Inexact(f"more than {MAX_EXPANDED_RULES} `or` branches")
    if len(out) > MAX_EXPANDED_RULES:
        raise _Inexact(f"more than {MAX_EXPANDED_RULES} `or` branches")
    return out


def _condition_json(cmp: ir.Compare) -> dict:
    out: dict[str, Any] = {"field": cmp.field, "operator": cmp.operator}
    if cmp.operator not in ir.UNARY_OPERATORS:
        out["value"] = cmp.value
    if cmp.description is not None:
        out["description"] = cmp.description
    return out


def _is_plain_conjunction(cond) -> bool:
    if cond is None:
        return True
    items = cond.items if isinstance(cond, ir.AllOf) else (cond,)
    return all(isinstance(c, ir.Compare) and c.operator in ir.MIXTRAIN_OPERATORS and not isinstance(c.value, dict)
               for c in items)


def _flat_conjunction(cond) -> list[ir.Compare]:
    if cond is None:
        return []
    return list(cond.items) if isinstance(cond, ir.AllOf) else [cond]


# ---- targets and strategies ------------------------------------------------------

def target_json(t: ir.Target, weight: float | None = None) -> dict:
    out: dict[str, Any] = {
        "provider": t.provider,
        "model_name": t.model_name,
        "endpoint": t.endpoint,
        "weight": weight if weight is not None else (t.weight if t.weight is not None else 1.0),
    }
    for key in ("label", "timeout_ms", "retry_count", "function_name", "request_class", "headers", "is_shadow"):
        value = getattr(t, key)
        if value is not None:
            out[key] = value
    ext: dict[str, Any] = {}
    if t.name is not None:
        ext["name"] = t.name
    if t.cost_per_1k_tokens is not None:
        ext["cost_per_1k_tokens"] = t.cost_per_1k_tokens
    if t.circuit_breaker is not None:
        ext["circuit_breaker"] = t.circuit_breaker.model_dump()
    if t.health_check is not None:
        ext["health_check"] = {k: v for k, v in t.health_check.model_dump().items() if v is not None}
    if ext:
        out[EXT] = ext
    return out


def _parameters(s: ir.Strategy, default_salt: str) -> dict[str, Any]:
    """The strategy's own parameters, as x-routelang carries them."""
    out: dict[str, Any] = {}
    if isinstance(s, ir.Split) and s.sticky_by is not None:
        out = {"sticky_by": s.sticky_by, "salt": s.salt if s.salt is not None else default_salt}
    for factor in strategies.strategy(s.kind).score_factors:
        out[f"{factor}_weight"] = getattr(s, f"{factor}_weight") or 0.0
    return out


def _strategy(rule: ir.Rule, notes: list[Diagnostic]) -> tuple[str, list[dict], dict | None]:
    s = rule.strategy
    defn = strategies.strategy(s.kind)
    if s.nested():
        return _nested(rule, defn, notes)
    lowering = defn.mixtrain
    share = 1.0 / len(s.targets) if lowering.weights == "equal" else None
    targets = [target_json(t, weight=share) for t in s.targets]
    ext: dict[str, Any] | None = None
    params = _parameters(s, rule.name)
    if not defn.mixtrain_native or params:
        ext = {"kind": s.kind, **params}
    if lowering.note is not None:
        _note(notes, rule, lowering.note.format(rule=rule.name, keyword=defn.keyword))
    if isinstance(s, ir.Split) and s.sticky_by is not None:
        _note(notes, rule, f"rule `{rule.name}`: Mixtrain splits at random; routelang buckets by "
                           f"`{s.sticky_by}`, so a given user always gets the same target")
    return lowering.strategy, targets, ext


def _nested(rule: ir.Rule, defn: strategies.StrategyDef, notes: list[Diagnostic]) -> tuple[str, list[dict], dict]:
    """A strategy with strategies among its members (A11). Mixtrain gets the
    outer strategy over every target, flattened (see MixtrainLowering.nested);
    x-routelang.strategy carries the exact tree, whose leaves are indices into
    the rule's `targets`."""
    leaves = list(rule.strategy.targets)
    index = {id(t): i for i, t in enumerate(leaves)}

    def tree(s: ir.Strategy, path: tuple[int, ...]) -> dict:
        salt = rule.name if not path else f"{rule.name}/{'.'.join(map(str, path))}"
        out: dict[str, Any] = {"kind": s.kind, **_parameters(s, salt)}
        members = []
        for i, m in enumerate(s.members):
            inner = m.strategy if isinstance(m, ir.NestedArm) else m
            members.append(index[id(inner)] if isinstance(inner, ir.Target) else tree(inner, (*path, i)))
        out["members"] = members
        if isinstance(s, ir.Split):
            out["weights"] = [arm.weight if arm.weight is not None else 1.0 for arm in s.arms]
            out["labels"] = [arm.label for arm in s.arms]
        return out

    ext = tree(rule.strategy, ())
    lowering = defn.mixtrain
    if lowering.nested_weights == "first_choice":
        first = _first_choice(rule.strategy, index)
        # Targets Mixtrain can pick first come first; the rest (weight 0) only routelang tries,
        # and after them Mixtrain's cumulative pick never lands.
        order = sorted(range(len(leaves)), key=lambda i: first.get(i, 0.0) == 0.0)
        # 12 significant digits: 0.8 * 0.7 is written 0.56, not 0.5599999999999999.
        targets = [target_json(leaves[i], weight=float(f"{first.get(i, 0.0):.12g}")) for i in order]
        position = {old: new for new, old in enumerate(order)}
        _renumber(ext, position)
    else:
        targets = [target_json(t) for t in leaves]
    _note(notes, rule, lowering.nested.format(rule=rule.name, keyword=defn.keyword, count=len(targets)))
    for node in rule.strategy.walk():
        if isinstance(node, ir.Split) and node.sticky_by is not None:
            _note(notes, rule, f"rule `{rule.name}`: Mixtrain splits at random; routelang buckets by "
                               f"`{node.sticky_by}`, so a given user always gets the same target")
    return lowering.strategy, targets, ext


def _first_choice(s: ir.Strategy, index: dict[int, int]) -> dict[int, float]:
    """Target index -> the share of requests routelang tries that target first
    (no failures, no breakers; ranked strategies count their written order)."""
    defn = strategies.strategy(s.kind)
    members = s.members
    if defn.shares == "weighted":
        weights = [arm.weight or 0.0 for arm in members]
    elif defn.shares == "equal":
        weights = [1.0 / len(members)] * len(members)
    else:  # the first member serves (single, shadow, a fallback chain, a ranking's written order)
        weights = [1.0] + [0.0] * (len(members) - 1)
    out: dict[int, float] = {}
    for member, weight in zip(members, weights):
        inner = member.strategy if isinstance(member, ir.NestedArm) else member
        if weight <= 0:
            continue
        if isinstance(inner, ir.Target):
            out[index[id(inner)]] = out.get(index[id(inner)], 0.0) + weight
        else:
            for i, share in _first_choice(inner, index).items():
                out[i] = out.get(i, 0.0) + weight * share
    return out


def _renumber(tree: dict, position: dict[int, int]) -> None:
    tree["members"] = [position[m] if isinstance(m, int) else m for m in tree["members"]]
    for m in tree["members"]:
        if isinstance(m, dict):
            _renumber(m, position)


def _note(notes: list[Diagnostic], rule: ir.Rule, message: str) -> None:
    notes.append(Diagnostic(MIXTRAIN_APPROXIMATION, message, rule.span, rule=rule.name))


# ---- rules -------------------------------------------------------------------------

def _rules(rule: ir.Rule, taken: set[str], notes: list[Diagnostic]) -> list[dict]:
    strategy, targets, strategy_ext = _strategy(rule, notes)
    base: dict[str, Any] = {"name": rule.name}
    if rule.description is not None:
        base["description"] = rule.description
    base["priority"] = rule.priority
    base["is_enabled"] = rule.enabled
    ext: dict[str, Any] = {}
    if strategy_ext is not None:
        ext["strategy"] = strategy_ext

    def finish(conditions: list[ir.Compare], name: str, extra: dict) -> dict:
        out = dict(base, name=name)
        out["conditions"] = [_condition_json(c) for c in conditions]
        out["strategy"] = strategy
        out["targets"] = targets
        merged = {**extra}
        if merged:
            out[EXT] = merged
        return out

    if _is_plain_conjunction(rule.when):
        return [finish(_flat_conjunction(rule.when), rule.name, ext)]

    ext["when"] = condition_tree(rule.when)
    try:
        terms = _dnf(rule.when)
    except _Inexact as exc:
        if rule.enabled:
            ext["enabled"] = True
            _note(notes, rule, f"rule `{rule.name}`: Mixtrain cannot express {exc.what}; the rule is "
                               f"disabled in Mixtrain's view and only routelang's runtime routes by it")
        out = finish([], rule.name, ext)
        out["is_enabled"] = False
        return [out]
    if len(terms) == 1:
        return [finish(terms[0], rule.name, ext)]
    names = [rule.name]
    for i in range(2, len(terms) + 1):
        candidate = f"{rule.name} (or {i})"
        while candidate in taken:
            candidate += "'"
        taken.add(candidate)
        names.append(candidate)
    _note(notes, rule, f"rule `{rule.name}`: Mixtrain has no `or`; it gets {len(terms)} rules "
                       f"({', '.join(f'`{n}`' for n in names)}) that match the same requests")
    out = [finish(terms[0], rule.name, ext)]
    for name, term in zip(names[1:], terms[1:]):
        out.append(finish(term, name, {"part_of": rule.name}))
    return out


def lower(router: ir.Router) -> tuple[dict, list[Diagnostic]]:
    """The JSON config for `router`, and notes on what Mixtrain does differently."""
    notes: list[Diagnostic] = []
    taken = {r.name for r in router.rules}
    rules: list[dict] = []
    for rule in router.rules:
        rules.extend(_rules(rule, taken, notes))
        for t in rule.strategy.targets:
            if envvars_in(t.endpoint):
                _note(notes, rule, f"rule `{rule.name}`: endpoint `{t.endpoint}` is filled in at run time; "
                                   f"Mixtrain's validator rejects it unless you compile with --env")
    out: dict[str, Any] = {"name": router.name}
    if router.description is not None:
        out["description"] = router.description
    if router.metadata:
        out["metadata"] = router.metadata
    out["rules"] = rules
    out[EXT] = {"format": FORMAT_VERSION, "compiler": f"routelang {__version__}"}
    return out, notes
