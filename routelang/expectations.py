"""Test blocks must be deterministic: the checker's view of what a rule may select.

What each `expect` checks is in runtime/testing.py (`target_problems`), which
`routelang test` runs; this module applies the same function to every
selection a rule may make. Which targets a rule selects may vary from run to
run: a split without `sticky by` (or whose request lacks the sticky field)
picks at random, round-robin depends on the requests before, least_latency
and hybrid (with a latency or reliability weight) on live measurements.
`varying_selections` lists what a rule may select for a request, and the
checker rejects an expectation that holds for some of those and not for
others: a test passes or fails the same way on every run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from . import ir
from .runtime.operators import evaluate, lookup
from .runtime.strategies import pick_sticky, sticky_key, sticky_point
from .runtime.testing import Picked, picked, target_problems
from .vocab import strategies

MAX_ALL_ORDERS = 7  # up to this many targets, every order of a ranked rule is tried (7! = 5040)


# ---- what a rule may select -----------------------------------------------------------

def matched_rule(router: ir.Router, request: Any) -> ir.Rule | None:
    """The rule every engine routes `request` by (conditions are deterministic)."""
    for rule in router.evaluation_order():
        if evaluate(ir.condition_tree(rule.when) if rule.when is not None else None, request):
            return rule
    return None


@dataclass
class Varying:
    """The selections a rule may make for one request, and why they vary."""

    selections: list[tuple[Picked, ...]]
    why: str
    remedy: str                # how to make the rule's choice fixed, or "" when only the test can change


def _targets(strategy: ir.Strategy) -> tuple[ir.Target, ...]:
    """The targets a strategy chooses among (the one place that reads them)."""
    return strategy.targets


def _names(targets) -> str:
    return ", ".join(picked(t).shown for t in targets)


# Score factors fed by live measurements (a hybrid ranking by cost alone is fixed).
MEASURED_FACTORS = ("latency", "reliability")
MAX_SELECTIONS = 5040  # a nested rule's possible selections, enumerated up to this many


def varying_selections(rule: ir.Rule, request: Any, expect: ir.Expectation) -> Varying | None:
    """None when `rule` selects the same targets for `request` on every run of a
    freshly loaded router; else the selections it may make (for a ranked rule
    with many targets, enough of them to decide whether `expect` varies)."""
    s = rule.strategy
    if s.nested():
        return _nested_varying(rule, request, expect)
    defn = strategies.strategy(s.kind)
    targets = _targets(s)
    if defn.selector == "weighted_pick":
        if s.sticky_by is not None and sticky_key(lookup(request, s.sticky_by)) is not None:
            return None  # the published hash of salt and key decides
        arms = [t for t in targets if (t.weight or 0.0) > 0] or list(targets[:1])
        if len(arms) < 2:
            return None
        if s.sticky_by is None:
            why = f"rule `{rule.name}` splits at random between {_names(arms)}"
            remedy = "make the split sticky: `split sticky by FIELD { ... }`, with FIELD in the test's request"
        else:
            why = (f"the request has no `{s.sticky_by}`, so rule `{rule.name}` splits at random "
                   f"between {_names(arms)}")
            remedy = f"put `{s.sticky_by}` in the test's request"
        return Varying([(picked(t),) for t in arms], why, remedy)
    if defn.selector == "rotate":
        why = f"rule `{rule.name}` takes {_names(targets)} in turn, so its target depends on the requests before"
        return Varying([(picked(t),) for t in targets], why, "")
    measured = _measured(s, defn)
    if measured and len(targets) > 1:
        why = f"rule `{rule.name}` orders {_names(targets)} by {measured}"
        return Varying([tuple(picked(t) for t in order) for order in _orders(targets, expect)], why, "")
    return None  # single, shadow, fallback, lowest_cost (by written cost): fixed


def _measured(s: ir.Strategy, defn: strategies.StrategyDef) -> str | None:
    """What live measurement orders a ranking strategy, or None when it is fixed."""
    if defn.selector == "rank_by_latency":
        return "measured latency"
    if defn.score_factors and any(getattr(s, f"{f}_weight") for f in MEASURED_FACTORS):
        return "measured latency and reliability"
    return None


def _nested_varying(rule: ir.Rule, request: Any, expect: ir.Expectation) -> Varying | None:
    """A rule whose split arms or fallback steps are strategies: every selection
    its tree may make (runtime/strategies.py's recursion), and why they differ."""
    reasons: list[str] = []
    options = _tree_selections(rule.strategy, request, rule.name, (), expect, reasons)
    selections = list(dict.fromkeys(
        tuple(picked(t) for t in attempts) + tuple(picked(t, shadow=True) for t in shadows)
        for attempts, shadows in options))
    if len(selections) < 2:
        return None
    why = f"rule `{rule.name}` chooses per request inside its strategy: {'; '.join(dict.fromkeys(reasons))}"
    return Varying(selections, why, "")


def _tree_selections(s: ir.Strategy, request: Any, rule: str, path: tuple[int, ...], expect: ir.Expectation,
                     reasons: list[str]) -> list[tuple[tuple, tuple]]:
    """(attempts, shadows) that strategy `s` may select for `request` (no breakers open)."""
    defn = strategies.strategy(s.kind)

    def member(m, i: int) -> list[tuple[tuple, tuple]]:
        inner = m.strategy if isinstance(m, ir.NestedArm) else m
        if isinstance(inner, ir.Target):
            return [((inner,), ())]
        return _tree_selections(inner, request, rule, (*path, i), expect, reasons)

    if defn.selector == "first":
        return [((s.members[0],), ())]
    if defn.selector == "primary_shadow":
        return [((s.members[0],), (s.members[1],))]
    if defn.selector == "in_order":
        out: list[tuple[tuple, tuple]] = [((), ())]
        for i, m in enumerate(s.members):
            out = [(a + a2, sh + sh2) for a, sh in out for a2, sh2 in member(m, i)][:MAX_SELECTIONS]
        return out
    if defn.selector == "weighted_pick":
        weights = [m.weight or 0.0 for m in s.members]
        key = sticky_key(lookup(request, s.sticky_by)) if s.sticky_by is not None else None
        if key is not None:
            salt = s.salt if s.salt is not None else (rule if not path else f"{rule}/{'.'.join(map(str, path))}")
            chosen = [pick_sticky(weights, sticky_point(salt, key))]
        else:
            chosen = [i for i, w in enumerate(weights) if w > 0] or [0]
            if len(chosen) > 1:
                reasons.append("a split picks at random" if s.sticky_by is None
                               else f"the request has no `{s.sticky_by}` for a sticky split")
        return [sel for i in chosen for sel in member(s.members[i], i)][:MAX_SELECTIONS]
    targets = s.members
    if defn.selector == "rotate":
        reasons.append(f"{defn.keyword} takes {_names(targets)} in turn")
        return [((t,), ()) for t in targets]
    if _measured(s, defn) and len(targets) > 1:
        reasons.append(f"{defn.keyword} orders {_names(targets)} by {_measured(s, defn)}")
        return [(tuple(order), ()) for order in _orders(tuple(targets), expect)]
    return [(tuple(_fixed_ranking(s, defn)), ())]


def _fixed_ranking(s: ir.Strategy, defn: strategies.StrategyDef) -> list[ir.Target]:
    """A ranking that no measurement moves, as runtime/strategies.py orders it."""
    targets = list(s.members)
    if defn.selector == "rank_by_cost":
        return sorted(targets, key=lambda t: (t.cost_per_1k_tokens is None, t.cost_per_1k_tokens or 0.0))
    if defn.score_factors:  # by cost score alone: cheapest / cost, 1.0 for free, 0.5 without a cost
        costs = [t.cost_per_1k_tokens for t in targets]
        cheapest = min((c for c in costs if c is not None and c > 0), default=None)
        score = [0.5 if c is None else 1.0 if c <= 0 or cheapest is None else cheapest / c for c in costs]
        return [targets[i] for i in sorted(range(len(targets)), key=lambda i: -score[i])]
    return targets


def _orders(targets: tuple[ir.Target, ...], expect: ir.Expectation) -> list[tuple[ir.Target, ...]]:
    """Orders a ranked rule may return. Every order for a few targets; beyond,
    each target first (all a first-target expectation can see), plus an order
    that `expect targets [...]` accepts, when there is one (so that whether it
    can pass and whether it can fail are both represented)."""
    n = len(targets)
    if n <= MAX_ALL_ORDERS:
        return list(itertools.permutations(targets))
    out = [targets[k:] + targets[:k] for k in range(n)]
    if expect.targets is not None and len(expect.targets) == n:
        match = _matching(targets, expect.targets)
        if match is not None:
            out.append(match)
    return out


def _matching(targets: tuple[ir.Target, ...], names: tuple[str, ...]) -> tuple[ir.Target, ...] | None:
    """An order of `targets` whose k-th answers to names[k] (augmenting paths), or None."""
    answers = [picked(t).names for t in targets]
    at: dict[int, int] = {}   # position -> target index

    def place(position: int, seen: set[int]) -> bool:
        for index, names_of in enumerate(answers):
            if names[position] in names_of and index not in seen:
                seen.add(index)
                holder = next((p for p, i in at.items() if i == index), None)
                if holder is None or place(holder, seen):
                    at[position] = index
                    return True
        return False

    if not all(place(position, set()) for position in range(len(names))):
        return None
    return tuple(targets[at[position]] for position in range(len(names)))


def flaky_expectation(expect: ir.Expectation, varying: Varying) -> bool:
    """Does the expectation hold for some of the selections and fail for others?"""
    outcomes = {not target_problems(expect, selection) for selection in varying.selections}
    return len(outcomes) > 1
