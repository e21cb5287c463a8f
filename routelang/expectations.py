"""Test blocks must be deterministic: the checker's view of what a rule may select.

What each `expect` checks is in runtime/testing.py (`target_problems`), which
`routelang test` runs; this module applies the same function to every
selection a rule may make. Which targets a rule selects may vary from run to
run: a split without `sticky by` (or whose request lacks the sticky field)
picks at random, round_robin depends on the requests before, least_latency
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
from .backends.json import condition_tree
from .runtime.operators import evaluate, lookup
from .runtime.strategies import sticky_key
from .runtime.testing import Picked, picked, target_problems

MAX_ALL_ORDERS = 7  # up to this many targets, every order of a ranked rule is tried (7! = 5040)


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


def varying_selections(rule: ir.Rule, request: Any, expect: ir.Expectation) -> Varying | None:
    """None when `rule` selects the same targets for `request` on every run of a
    freshly loaded router; else the selections it may make (for a ranked rule
    with many targets, enough of them to decide whether `expect` varies)."""
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
        why = f"rule `{rule.name}` orders {_names(targets)} by {measured[s.kind]}"
        return Varying([tuple(picked(t) for t in order) for order in _orders(targets, expect)], why, "")
    return None  # single, shadow, fallback, lowest_cost (by written cost): fixed


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
