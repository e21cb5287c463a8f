"""What `routelang test` and `routelang coverage` compute (the CLI prints it).

- `describe`: one request routed, with each condition of the matched rule
  and whether it held.
- `run_tests`: the `test` blocks of a `.route` file, like `opa test`.
- `coverage`: Mixtrain's coverage numbers, plus the conditions that were
  never decisive: for no request did flipping that condition's outcome
  (the others fixed) flip its rule's match.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import ir
from . import operators
from .engine import Router, rule_coverage
from .model import RuleSpec
from .operators import RequestError


def describe(router: Router, request: Any, expected: str | None = None) -> dict[str, Any]:
    """The routing of one request as a JSON-ready dict."""
    try:
        result = router.route(request)
    except RequestError as exc:
        out: dict[str, Any] = {"matched_rule": None, "selected_targets": [], "error": str(exc)}
    else:
        out = result.to_dict()
        if result.matched_rule is not None:
            out["conditions"] = [
                {"field": leaf["field"], "operator": leaf["operator"], "value": leaf.get("value"),
                 "actual": jsonable(actual), "held": held}
                for leaf, actual, held in router.condition_report(result.matched_rule, request)
            ]
    if expected is not None:
        out["expected_rule"] = expected
        out["passed"] = out["matched_rule"] == expected
    return out


def jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:200]
    return value


def render_description(out: dict[str, Any], title: str) -> str:
    """Text for one described request."""
    lines = [title]
    if "error" in out:
        lines.append(f"  refused: {out['error']}")
    elif out["matched_rule"] is None:
        lines.append("  no rule matched")
    else:
        lines.append(f"  matched rule {out['matched_rule']!r} (priority {out['priority']}, {out['strategy']})")
        for c in out.get("conditions", []):
            value = "" if c["operator"] in ("exists", "not_exists") else " " + json.dumps(c["value"])
            mark = "held" if c["held"] else "did not hold"
            lines.append(f"    {c['field']} {c['operator']}{value}: {mark} (request has {json.dumps(c['actual'])})")
        if not out["selected_targets"]:
            lines.append(f"  no targets: {out['explanation']}")
        for t in out["selected_targets"]:
            tags = [f"label {t['label']}"] if t.get("label") else []
            if t.get("is_shadow"):
                tags.append("shadow")
            suffix = f" ({', '.join(tags)})" if tags else ""
            lines.append(f"  -> {t['provider']} {t['model_name']} {t['endpoint']}{suffix}")
    if "passed" in out:
        lines.append("  ok: expected rule matched" if out["passed"]
                     else f"  FAIL: expected rule {out['expected_rule']!r}")
    return "\n".join(lines)


# ---- test blocks ----------------------------------------------------------------------

# A test routes one request. `expect rule R` and `expect no match` look at the
# matched rule; the others at the targets it selected:
# - `target T`: the target that serves the request (the first selected) answers to T;
# - `target in [A, B]`: it answers to one of them;
# - `targets [A, B]`: the serving targets, in order (the first, then its
#   fallbacks); a shadow copy is not one of them;
# - `shadow S`: a copy of the request goes to S.
# A target answers to its definition's name, its split label, its model name or
# its endpoint. The checker (routelang/expectations.py) rejects an expectation
# whose outcome could differ between runs.

@dataclass(frozen=True)
class Picked:
    """One selected target, as an expectation sees it."""

    names: frozenset[str]      # what it answers to
    shown: str                 # how a message names it
    shadow: bool = False


def picked(target: Any, shadow: bool = False) -> Picked:
    """An ir.Target or a runtime Target (both have these four fields)."""
    names = frozenset(x for x in (target.name, target.label, target.model_name, target.endpoint) if x)
    return Picked(names, target.name or target.label or target.model_name, shadow)


def target_problems(expect: ir.Expectation, selected: Sequence[Picked]) -> list[str]:
    """What the selected targets get wrong, one phrase per expectation that fails."""
    serving = [p for p in selected if not p.shadow]
    shadows = [p for p in selected if p.shadow]
    first = serving[0] if serving else None
    got = "no target" if first is None else repr(first.shown)
    out = []
    if expect.target is not None and (first is None or expect.target not in first.names):
        out.append(f"expected target {expect.target!r}, got {got}")
    if expect.target_in is not None and (first is None or first.names.isdisjoint(expect.target_in)):
        out.append(f"expected a target in [{', '.join(expect.target_in)}], got {got}")
    if expect.targets is not None and (len(serving) != len(expect.targets)
                                       or any(n not in p.names for n, p in zip(expect.targets, serving))):
        out.append(f"expected targets [{', '.join(expect.targets)}], got [{', '.join(p.shown for p in serving)}]")
    if expect.shadow is not None and not any(expect.shadow in p.names for p in shadows):
        mirrored = ", ".join(repr(p.shown) for p in shadows) or "no shadow"
        out.append(f"expected shadow {expect.shadow!r}, got {mirrored}")
    return out


def problems(expect: ir.Expectation, rule: str | None, selected: Sequence[Picked]) -> list[str]:
    """Everything a routing outcome (matched rule name or None, selected targets) gets wrong."""
    if expect.no_match:
        return [] if rule is None else [f"expected no match, got rule {rule!r}"]
    if expect.rule is not None and rule != expect.rule:
        return [f"expected rule {expect.rule!r}, got {'no match' if rule is None else repr(rule)}"]
    if rule is None and expect.names_targets():
        return ["expected a target, but no rule matched"]
    return target_problems(expect, selected)


@dataclass
class TestOutcome:
    name: str
    passed: bool
    detail: str


def run_tests(router: Router, tests: tuple[ir.Test, ...]) -> list[TestOutcome]:
    outcomes = []
    for test in tests:
        try:
            result = router.route(test.request)
        except RequestError as exc:
            outcomes.append(TestOutcome(test.name, False, f"the request is refused: {exc}"))
            continue
        got = None if result.matched_rule is None else result.matched_rule.name
        selected = [picked(t, shadow=t.is_shadow) for t in result.selected_targets]
        found = problems(test.expect, got, selected)
        outcomes.append(TestOutcome(test.name, not found, "; ".join(found) or
                                    (f"rule {got!r}" if got is not None else "no match")))
    return outcomes


# ---- coverage -------------------------------------------------------------------------

@dataclass
class Coverage:
    mixtrain: dict[str, Any]                                    # get_rule_coverage's numbers
    never_decisive: list[tuple[str, dict]] = field(default_factory=list)   # (rule name, condition)
    refused_requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.mixtrain, refused_requests=self.refused_requests, never_decisive_conditions=[
            {"rule": rule, "field": c["field"], "operator": c["operator"], "value": c.get("value")}
            for rule, c in self.never_decisive])


def _evaluate(tree: dict | None, outcomes: list[bool], counter: list[int]) -> bool:
    """The tree's value with leaf outcomes taken from `outcomes` (pre-order)."""
    if tree is None:
        return True
    for key, combine in (("all", all), ("any", any)):
        if key in tree:
            return combine([_evaluate(c, outcomes, counter) for c in tree[key]])
    if "not" in tree:
        return not _evaluate(tree["not"], outcomes, counter)
    index = counter[0]
    counter[0] += 1
    return outcomes[index]


def _decisive(rule: RuleSpec, request: Any) -> list[bool]:
    leaves = rule.conditions
    outcomes = [operators.apply(leaf["operator"], operators.lookup(request, leaf["field"]), leaf.get("value"))
                for leaf in leaves]
    base = _evaluate(rule.when, outcomes, [0])
    out = []
    for i in range(len(leaves)):
        flipped = list(outcomes)
        flipped[i] = not flipped[i]
        out.append(_evaluate(rule.when, flipped, [0]) != base)
    return out


def coverage(router: Router, requests: list[Any]) -> Coverage:
    numbers = rule_coverage(router, requests)
    order = router.plan.order
    decisive = {rule.name: [False] * len(rule.conditions) for rule in router.plan.rules}
    refused = 0
    for request in requests:
        try:
            matched = router.matched_rule(request)
        except RequestError:
            refused += 1
            continue
        for rule in order:  # every rule evaluated for this request, up to the match
            for i, flag in enumerate(_decisive(rule, request)):
                decisive[rule.name][i] = decisive[rule.name][i] or flag
            if rule is matched:
                break
    never = [(rule.name, leaf) for rule in router.plan.rules
             for leaf, seen in zip(rule.conditions, decisive[rule.name]) if not seen]
    return Coverage(numbers, never, refused)


def render_coverage(report: Coverage) -> str:
    m = report.mixtrain
    lines = [(f"coverage: {m['covered_rules']}/{m['total_rules']} rules ({m['coverage_percentage']:.1f}%), "
             f"{m['total_requests']} request(s), {m['unmatched_requests']} unmatched")]
    if report.refused_requests:
        lines.append(f"refused requests (not JSON objects): {report.refused_requests}")
    lines.append("rule hits:")
    width = max((len(name) for name in m["rule_hits"]), default=0)
    lines.extend(f"  {name:<{width}}  {hits}" for name, hits in m["rule_hits"].items())
    if m["uncovered_rules"]:
        lines.append("uncovered rules: " + ", ".join(m["uncovered_rules"]))
    if report.never_decisive:
        lines.append("conditions never decisive (flipping them changed no request's rule match):")
        for rule, c in report.never_decisive:
            value = "" if c["operator"] in ("exists", "not_exists") else " " + json.dumps(c.get("value"))
            lines.append(f"  {rule}: {c['field']} {c['operator']}{value}")
    return "\n".join(lines)
