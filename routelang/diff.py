"""`routelang diff OLD NEW`: which requests change rule or target.

Both routers are analysed over one shared set of candidate values (built from
the literals of both), so their regions are comparable. A rule's *behaviour*
is what it does with a request, independent of names and layout: the strategy
kind and its parameters, and each target's provider, model, endpoint and
weight. For every behaviour, the requests the old router gives it and the new
one does not are intersected with each new rule's requests; each non-empty
piece is one change, with a witness request routed concretely by both.
Renamed rules or definitions, reformatting and reorderings that keep the
meaning give no changes. A sticky split's salt defaults to its rule's name,
so renaming such a rule *does* change where users land, and is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import ir
from .analysis import RouterAnalysis, Space, TooComplex, atoms_of, build_variables
from .analysis.regions import find_point, intersect, meets_region
from .backends.json import condition_tree
from .vocab import strategies

NO_MATCH = "no match"


def behaviour(rule: ir.Rule | None) -> tuple | str:
    if rule is None:
        return NO_MATCH
    return _strategy_behaviour(rule.strategy, rule.name)


def _strategy_behaviour(s: ir.Strategy, salt_default: str) -> tuple:
    """What a strategy does, independent of names: its kind, parameters and
    members (a target's provider, model, endpoint, weight and shadow flag; a
    nested strategy's behaviour with its arm weight)."""
    members = []
    for m in s.members:
        if isinstance(m, ir.Target):
            members.append((m.provider, m.model_name, m.endpoint, m.weight, bool(m.is_shadow)))
        elif isinstance(m, ir.NestedArm):
            members.append((m.weight, _strategy_behaviour(m.strategy, salt_default)))
        else:
            members.append(_strategy_behaviour(m, salt_default))
    sticky_by = getattr(s, "sticky_by", None)
    salt = (s.salt if s.salt is not None else salt_default) if sticky_by is not None else None
    weights = tuple(getattr(s, f"{f}_weight", None) for f in strategies.SCORE_FACTORS)
    return (s.kind, tuple(members), sticky_by, salt, *weights)


def describe(rule: ir.Rule | None) -> str:
    if rule is None:
        return "no rule (unrouted)"
    return f"rule `{rule.name}` ({_describe_strategy(rule.strategy)})"


def _describe_strategy(s: ir.Strategy) -> str:
    parts = []
    for m in s.members:
        share = f"{m.weight * 100:g}% " if s.kind == "split" and m.weight is not None else ""
        inner = m.strategy if isinstance(m, ir.NestedArm) else m
        what = f"{inner.provider}:{inner.model_name}" if isinstance(inner, ir.Target) else f"({_describe_strategy(inner)})"
        parts.append(f"{share}{what}")
    sticky_by = getattr(s, "sticky_by", None)
    extra = f" sticky by {sticky_by}" if sticky_by else ""
    return f"{s.kind}{extra}: {', '.join(parts)}"


@dataclass
class Change:
    old_rule: str | None
    new_rule: str | None
    old: str
    new: str
    witness: dict

    def to_json(self) -> dict:
        return {"old_rule": self.old_rule, "new_rule": self.new_rule, "old": self.old, "new": self.new,
                "witness": self.witness}


@dataclass
class DiffResult:
    changes: list[Change]
    exact: bool                    # False: "no change" is not proven
    caveats: list[str]


def diff(old: ir.Router, new: ir.Router) -> DiffResult:
    space = Space(build_variables(atoms_of([old, new])))
    before, after = RouterAnalysis(old, space), RouterAnalysis(new, space)
    caveats = [f"`{v.root}`: {v.why_inexact}" for v in space.variables if not v.exact]
    caveats += [f"rule `{f.rule.name}` is too complex to analyse" for f in before.facts + after.facts
                if f.region is None]
    # Outcomes in evaluation order, then "no match" (every request, after all rules).
    old_out = [(f.rule, f.region) for f in before.facts] + [(None, [{}])]
    new_out = [(f.rule, f.region) for f in after.facts] + [(None, [{}])]
    old_prior = _prefix_boxes(before)
    new_prior = _prefix_boxes(after)
    first_in_new = _first_positions(after)
    first_in_old = _first_positions(before)
    old_limits = [first_in_new.get(_condition_key(rule), len(new_out)) for rule, _ in old_out]
    new_floors = [first_in_old.get(_condition_key(rule), len(old_out)) for rule, _ in new_out]
    new_keys = [behaviour(rule) for rule, _ in new_out]
    changes: list[Change] = []
    for i, (old_rule, old_region) in enumerate(old_out):
        if not old_region:
            continue
        key = behaviour(old_rule)
        # A request that old_rule matches also matches a rule with the same
        # condition in the new router, so it cannot pass that rule there.
        for j in range(min(old_limits[i], len(new_out) - 1) + 1):
            new_rule, new_region = new_out[j]
            if new_floors[j] < i or not new_region or new_keys[j] == key:
                continue
            if not meets_region(old_region, new_region):
                continue
            witness = _witness(space, old_region, new_region, old_prior[i] + new_prior[j])
            if witness is not None and before.route(witness) is old_rule and after.route(witness) is new_rule:
                changes.append(Change(old_rule.name if old_rule else None, new_rule.name if new_rule else None,
                                      describe(old_rule), describe(new_rule), witness))
    return DiffResult(changes, exact=not caveats, caveats=caveats)


def _condition_key(rule: ir.Rule | None) -> str | None:
    """Rules with equal keys match exactly the same requests (None: "no match")."""
    if rule is None:
        return None
    return json.dumps(condition_tree(rule.when) if rule.when is not None else "*", sort_keys=True)


def _first_positions(analysis: RouterAnalysis) -> dict[str, int]:
    out: dict[str, int] = {}
    for facts in analysis.facts:
        out.setdefault(_condition_key(facts.rule), facts.position)
    return out


def _prefix_boxes(analysis: RouterAnalysis) -> list[list]:
    """For each position (and one past the end), the boxes of every rule before it."""
    out, boxes = [], []
    for facts in analysis.facts:
        out.append(list(boxes))
        boxes.extend(facts.region or [])
    out.append(boxes)
    return out


def _witness(space: Space, old_region, new_region, avoid) -> dict | None:
    try:
        boxes = intersect(old_region, new_region)
    except TooComplex:
        return None
    for box in boxes:
        point = find_point(space, box, avoid)
        if point is not None:
            return space.witness(point)
    return None


def render_text(result: DiffResult) -> str:
    if not result.changes:
        lines = ["no behavioural change"]
        if not result.exact:
            lines[0] += " found (not proven; the analysis was inexact here:)"
            lines += [f"  - {c}" for c in result.caveats]
        return "\n".join(lines)
    lines = [f"{len(result.changes)} kind(s) of request change route:"]
    for c in result.changes:
        lines.append(f"~ requests like {json.dumps(c.witness, sort_keys=True)}")
        lines.append(f"    before: {c.old}")
        lines.append(f"    after:  {c.new}")
    if not result.exact:
        lines.append("note: the analysis was inexact here, so other changes may exist:")
        lines += [f"  - {c}" for c in result.caveats]
    return "\n".join(lines)


def render_json(result: DiffResult) -> str:
    return json.dumps({"changes": [c.to_json() for c in result.changes], "exact": result.exact,
                       "caveats": result.caveats}, indent=2, ensure_ascii=False)
