"""Test blocks must be deterministic: the checker's view of what a rule may select.

What each `expect` checks is in runtime/testing.py (`problems`), which
`routelang test` runs; this module applies the same function to every
selection a rule may make. Which targets a rule selects may vary from run to run: a split without
`sticky by` (or whose request lacks the sticky field) picks at random,
round_robin depends on the requests before, least_latency and hybrid (with a
latency or reliability weight) on live measurements. `varying_selections`
lists what a rule may select for a request, and the checker rejects an
expectation that holds for some of those and not for others: a test passes
or fails the same way on every run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from . import ir
from .backends.json import condition_tree
from .runtime.operators import evaluate, lookup
from .runtime.strategies import sticky_key
from .runtime.testing import Picked, picked, target_problems

MAX_ORDERS = 5040  # orderings of a ranked rule's targets considered (7!)


# ---- what a rule may select -----------------------------------------------------------

def matched_rule(router: ir.Router, request: Any) -> ir.Rule | None:
    """The rule every engine routes `request` by (conditions are deterministic)."""
    for rule in router.evaluation_order():
        if evaluate(condition_tree(rule.when) if rule.when is not None else None, request):
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


def varying_selections(rule: ir.Rule, request: Any) -> Varying | None:
    """None when `rule` selects the same targets for `request` on every run of a
    freshly loaded router; else every selection it may make."""
    s = rule.strategy
    targets = _targets(s)
    if s.kind == "split":
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
    if s.kind == "round_robin":
        why = f"rule `{rule.name}` takes {_names(targets)} in turn, so its target depends on the requests before"
        return Varying([(picked(t),) for t in targets], why, "")
    measured = {"least_latency": "measured latency",
                "hybrid": "measured latency and reliability" if s.latency_weight or s.reliability_weight else None}
    if measured.get(s.kind) and len(targets) > 1:
        orders = itertools.islice(itertools.permutations(targets), MAX_ORDERS)
        why = f"rule `{rule.name}` orders {_names(targets)} by {measured[s.kind]}"
        return Varying([tuple(picked(t) for t in order) for order in orders], why, "")
    return None  # single, shadow, fallback, lowest_cost (by written cost): fixed


def flaky_expectation(expect: ir.Expectation, varying: Varying) -> bool:
    """Does the expectation hold for some of the selections and fail for others?"""
    outcomes = {not target_problems(expect, selection) for selection in varying.selections}
    return len(outcomes) > 1
