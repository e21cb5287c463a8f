"""What the rules of a router do to the space of requests.

`RouterAnalysis(router)` turns every enabled rule's condition into a region
(regions.py) over candidates built from every literal in the router
(domain.py) and answers: which requests reach each rule first, which rules
cover it, which requests match no rule. Every witness it returns has been
routed concretely with `runtime.operators.evaluate` in
`Router.evaluation_order()` before it is handed out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .. import ir
from ..runtime.operators import evaluate, lookup
from ..vocab import operators, request_document
from ..vocab.operators import apply, text
from .domain import _plain, atom_of, build_variables, regex_prefix
from .regions import Region, Space, TooComplex, find_point, is_empty_minus, meets_region


class Verdict(str, Enum):
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


@dataclass
class RuleFacts:
    rule: ir.Rule
    position: int                       # index in evaluation order
    region: Region | None               # None: too complex to track
    atoms: frozenset = frozenset()      # the atoms its condition reads
    verdict: Verdict = Verdict.UNKNOWN
    witness: dict | None = None         # a request this rule routes (verified)
    covered_by: list[ir.Rule] = field(default_factory=list)  # unreachable: the earlier rules that take its requests


def atoms_of_condition(cond) -> frozenset:
    return frozenset(atom_of(c.field, c.operator, None if c.operator in operators.UNARY else c.value)
                     for c in ir.walk_conditions(cond))


def atoms_of(routers) -> set:
    return set().union(*(atoms_of_condition(rule.when) for router in routers for rule in router.rules))


def schema_atoms(router: ir.Router) -> dict:
    """Declared enums, as `in` atoms: with a schema, a request's enum field holds a declared value."""
    return {f.path: atom_of(f.path, "in", list(f.values)) for f in router.schema_fields if f.type == "enum"}


def first_match(order: list[ir.Rule], trees: list, request: dict) -> ir.Rule | None:
    for rule, tree in zip(order, trees):
        if evaluate(tree, request):
            return rule
    return None


def guard(tree: dict | None) -> list[dict] | None:
    """Comparisons (condition-tree leaves) at least one of which holds whenever
    `tree` does, or None when there is no such set (a `not`, a rule with no
    condition). An `and` is guarded by any one of its parts (the cheapest to
    look up), an `or` by all of its parts' guards together."""
    if tree is None or "not" in tree:
        return None
    if "any" in tree:
        parts = [guard(item) for item in tree["any"]]
        return None if any(p is None for p in parts) else [leaf for p in parts for leaf in p]
    if "all" in tree:
        return min((g for g in map(guard, tree["all"]) if g is not None), key=_lookup_cost, default=None)
    return [tree]


def _lookup_cost(leaves: list[dict]) -> tuple[int, int]:
    """(leaves that need an operator call per request, values to index): dict
    lookups first."""
    return sum(_equality_values(leaf) is None for leaf in leaves), len(leaves)


def _equality_values(leaf: dict) -> list | None:
    """The values a leaf holds for when it is `==` or `in` over values whose
    equality a dict lookup decides exactly (`_plain`); None otherwise."""
    op = operators.ALIASES.get(leaf["operator"], leaf["operator"])
    value = leaf.get("value")
    if op == "equals" and _plain(value):
        return [value]
    if op == "in" and isinstance(value, list) and all(_plain(v) for v in value):
        return value
    return None


def _regex_prefix(leaf: dict) -> str:
    if operators.ALIASES.get(leaf["operator"], leaf["operator"]) != "regex":
        return ""
    return regex_prefix(str(leaf.get("value")))


class RuleIndex:
    """`first_match` over one rule order, evaluating only the rules whose
    guard holds for the request: a rule whose guard fails cannot match, so the
    first rule that matches is the same as the linear scan's. Guard leaves that
    are `==`/`in` are found by one dict lookup of the request's value per field;
    the others are evaluated once per request (and not at all when the field is
    missing: their outcome on a missing field is computed once, here)."""

    def __init__(self, order: list[ir.Rule], trees: list):
        self.order, self.trees = order, trees
        self.unguarded: list[int] = []
        self.equal: dict[str, dict] = {}          # field -> value -> positions
        self.equal_leaves: dict[str, list] = {}   # field -> [(leaf, positions)], for values no dict can look up
        self.other: dict[str, list] = {}          # field -> [(operator, value, positions)]
        self.prefixed: dict[str, dict] = {}       # field -> literal prefix -> the same, for regexes `^prefix...`
        self.when_missing: dict[str, set] = {}    # field -> positions whose guard holds when it is missing
        other_by_leaf: dict[tuple, tuple] = {}
        for position, tree in enumerate(trees):
            leaves = guard(tree)
            if leaves is None:
                self.unguarded.append(position)
                continue
            for leaf in leaves:
                field_path = leaf["field"]
                values = _equality_values(leaf)
                if values is not None:
                    table = self.equal.setdefault(field_path, {})
                    for value in values:
                        table.setdefault(value, set()).add(position)
                    self.equal_leaves.setdefault(field_path, []).append((leaf, position))
                    continue
                key = (field_path, leaf["operator"], json.dumps(leaf.get("value"), sort_keys=True, default=repr))
                if key not in other_by_leaf:
                    entry = other_by_leaf[key] = (leaf["operator"], leaf.get("value"), set())
                    prefix = _regex_prefix(leaf)
                    if prefix:
                        self.prefixed.setdefault(field_path, {}).setdefault(prefix, []).append(entry)
                    else:
                        self.other.setdefault(field_path, []).append(entry)
                other_by_leaf[key][2].add(position)
                if apply(leaf["operator"], None, leaf.get("value")):
                    self.when_missing.setdefault(field_path, set()).add(position)

    def candidates(self, request: dict) -> list[int]:
        """Positions, in order, of the rules that may match `request`."""
        found = set(self.unguarded)
        for field_path, table in self.equal.items():
            actual = lookup(request, field_path)
            if _plain(actual):
                found.update(table.get(actual, ()))
            else:  # a list, an object, NaN: ask the operator
                found.update(p for leaf, p in self.equal_leaves[field_path]
                             if apply(leaf["operator"], actual, leaf.get("value")))
        for field_path in self.other.keys() | self.prefixed.keys():
            actual = lookup(request, field_path)
            if actual is None:
                found.update(self.when_missing.get(field_path, ()))
                continue
            leaves = list(self.other.get(field_path, ()))
            by_prefix = self.prefixed.get(field_path)
            actual_text = text(actual) if by_prefix else None
            if actual_text is not None:  # a regex `^p...` can only match a text starting with p
                for length in {len(p) for p in by_prefix}:
                    leaves += by_prefix.get(actual_text[:length], ())
            for operator, value, positions in leaves:
                if apply(operator, actual, value):
                    found.update(positions)
        return sorted(found)

    def first_match(self, request: dict) -> ir.Rule | None:
        trees = self.trees
        for position in self.candidates(request):
            if evaluate(trees[position], request):
                return self.order[position]
        return None


def as_served(router: ir.Router) -> ir.Router:
    """The router as `routelang serve` runs it: a field the gateway copies from
    another (`request.model` is the body's `model`) is read as that field, so the
    analysis never separates two values that are always one."""
    def canonical(cond):
        if isinstance(cond, ir.Compare):
            field_read = request_document.canonical_field(cond.field)
            return cond if field_read == cond.field else cond.model_copy(update={"field": field_read})
        if isinstance(cond, ir.Not):
            return cond.model_copy(update={"item": canonical(cond.item)})
        return cond.model_copy(update={"items": tuple(canonical(c) for c in cond.items)})

    rules = tuple(rule if rule.when is None else rule.model_copy(update={"when": canonical(rule.when)})
                  for rule in router.rules)
    return router.model_copy(update={"rules": rules})


class RouterAnalysis:
    def __init__(self, router: ir.Router, space: Space | None = None,
                 complete: Callable[[dict], dict] | None = None):
        """complete: turns each witness into a request the router can really get
        (the gateway's document, with its copied fields) before it is verified."""
        self.router = router
        self.complete = complete
        self.order = router.evaluation_order()
        self.trees = [ir.condition_tree(r.when) if r.when is not None else None for r in self.order]
        self.index = RuleIndex(self.order, self.trees)
        if space is None:
            atoms = atoms_of([router]) | set(schema_atoms(router).values())
            space = Space(build_variables(atoms))
        self.space = space
        self.facts: list[RuleFacts] = []
        self._analyse()

    def route(self, request: dict) -> ir.Rule | None:
        return self.index.first_match(request)

    def _witness(self, point: dict) -> dict:
        witness = self.space.witness(point)
        return witness if self.complete is None else self.complete(witness)

    def region(self, cond) -> Region | None:
        try:
            return self.space.region(cond)
        except TooComplex:
            return None

    def _analyse(self) -> None:
        earlier: list[RuleFacts] = []
        prior_boxes: list = []       # the boxes of every tracked rule so far
        allowed: dict[int, int] = {}  # variable -> candidates some box in prior_boxes allows on it
        untracked_before = False     # a rule before could not be analysed
        for position, rule in enumerate(self.order):
            region = self.region(rule.when)
            facts = RuleFacts(rule, position, region, atoms_of_condition(rule.when))
            self.facts.append(facts)
            if region is not None and not self._reached_directly(facts, allowed):
                self._decide(facts, earlier, None if untracked_before else prior_boxes)
            earlier.append(facts)
            if region is None:
                untracked_before = True
                continue
            prior_boxes.extend(region)
            for box in region:
                for index, mask in box.items():
                    allowed[index] = allowed.get(index, 0) | mask

    def _reached_directly(self, facts: RuleFacts, allowed: dict[int, int]) -> bool:
        """Most rules are reached by a plain request in their region: on each
        field the rule constrains, a candidate no earlier rule allows there if
        there is one, and nothing else. Routing that request is far cheaper than
        searching for a point that avoids every earlier rule; the search runs
        when it is not routed to this rule."""
        for box in facts.region:
            point = {}
            for index, mask in box.items():
                fresh = mask & ~allowed.get(index, 0)
                point[index] = (fresh or mask) & -(fresh or mask)
            witness = self._witness(point)
            if self.route(witness) is facts.rule:
                facts.verdict, facts.witness = Verdict.REACHABLE, witness
                return True
        return False

    def _decide(self, facts: RuleFacts, earlier: list[RuleFacts], prior_boxes: list | None) -> None:
        if prior_boxes is not None and facts.region and self.space.exact(facts.atoms):
            # One earlier rule that takes all its requests is usually among the
            # first few that meet it: then no search over every earlier box is
            # needed (it would find no point), and this is the cover reported.
            single = self._single_cover(facts, earlier)
            if single is not None:
                facts.verdict, facts.covered_by = Verdict.UNREACHABLE, [single.rule]
                return
        for box in facts.region:
            point = find_point(self.space, box, prior_boxes or [])
            if point is None:
                continue
            witness = self._witness(point)
            if self.route(witness) is facts.rule:
                facts.verdict, facts.witness = Verdict.REACHABLE, witness
                return
        if prior_boxes is None and facts.region:
            return
        cover = self._exact_cover(facts, earlier)
        if cover is not None:
            facts.verdict, facts.covered_by = Verdict.UNREACHABLE, [c.rule for c in cover]

    def _usable(self, facts: RuleFacts, earlier: list[RuleFacts]):
        """The earlier rules that meet `facts` over atoms the candidates decide exactly, in order."""
        for prior in earlier:
            if prior.region and meets_region(facts.region, prior.region) and self.space.exact(facts.atoms | prior.atoms):
                yield prior

    def _single_cover(self, facts: RuleFacts, earlier: list[RuleFacts]) -> RuleFacts | None:
        return next((p for p in self._usable(facts, earlier) if is_empty_minus(self.space, facts.region, p.region)),
                    None)

    def _exact_cover(self, facts: RuleFacts, earlier: list[RuleFacts]) -> list[RuleFacts] | None:
        """A small set of the earlier rules that meet `facts` and provably
        cover its region (every variable involved has complete candidates):
        the first single rule that does, else a greedily minimised set. None
        if there is none."""
        space = self.space
        if not space.exact(facts.atoms):
            return None
        if not facts.region:
            return []
        single = self._single_cover(facts, earlier)
        if single is not None:
            return [single]
        usable = list(self._usable(facts, earlier))
        if not self._covers(facts.region, usable) or not space.exact(facts.atoms.union(*(p.atoms for p in usable))):
            return None
        cover = list(usable)
        if len(cover) <= 32:
            for prior in list(cover):
                rest = [c for c in cover if c is not prior]
                if self._covers(facts.region, rest):
                    cover = rest
        return cover

    def _covers(self, region: Region, rules: list[RuleFacts]) -> bool:
        return is_empty_minus(self.space, region, [b for r in rules for b in r.region])

    def point_outside(self, box: dict, rules: list[RuleFacts]) -> dict | None:
        """A request in `box` that none of `rules` matches (None if there is none)."""
        point = find_point(self.space, box, [b for r in rules if r.region for b in r.region])
        return None if point is None else self._witness(point)

    def reaching(self, position: int, box: dict) -> dict | None:
        """A request in `box` that no rule before `position` (in evaluation order) matches."""
        if any(f.region is None for f in self.facts[:position]):
            return None
        return self.point_outside(box, self.facts[:position])

    def unmatched_witness(self, use_schema: bool) -> tuple[dict | None, Verdict]:
        """A request no rule matches (its enum fields holding declared values when
        `use_schema`), or whether there provably is none."""
        space = self.space
        start: dict = {}
        if use_schema:
            for path, atom in schema_atoms(self.router).items():
                index = space.var_of_field[path]
                start[index] = start.get(index, space.variables[index].full) & space.variables[index].masks[atom]
        tracked = [f for f in self.facts if f.region is not None]
        witness = self.point_outside(start, tracked)
        if witness is not None and self.route(witness) is None:
            return witness, Verdict.REACHABLE
        exact_rules = [f for f in tracked if space.exact(f.atoms | set(schema_atoms(self.router).values()))]
        all_atoms = set(schema_atoms(self.router).values()).union(*(f.atoms for f in exact_rules))
        if space.exact(all_atoms) and self.point_outside(start, exact_rules) is None:
            return None, Verdict.UNREACHABLE
        return None, Verdict.UNKNOWN
