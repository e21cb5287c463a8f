"""What the rules of a router do to the space of requests.

`RouterAnalysis(router)` turns every enabled rule's condition into a region
(regions.py) over candidates built from every literal in the router
(domain.py) and answers: which requests reach each rule first, which rules
cover it, which requests match no rule. Every witness it returns has been
routed concretely with `runtime.operators.evaluate` in
`Router.evaluation_order()` before it is handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .. import ir
from ..backends.json import condition_tree
from ..check import walk_conditions
from ..runtime.operators import evaluate
from ..vocab import operators
from .domain import atom_of, build_variables
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
    covered_by: list[ir.Rule] = field(default_factory=list)


def atoms_of_condition(cond) -> frozenset:
    return frozenset(atom_of(c.field, c.operator, None if c.operator in operators.UNARY else c.value)
                     for c in walk_conditions(cond))


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


class RouterAnalysis:
    def __init__(self, router: ir.Router, space: Space | None = None):
        self.router = router
        self.order = router.evaluation_order()
        self.trees = [condition_tree(r.when) if r.when is not None else None for r in self.order]
        if space is None:
            atoms = atoms_of([router]) | set(schema_atoms(router).values())
            space = Space(build_variables(atoms))
        self.space = space
        self.facts: list[RuleFacts] = []
        self._analyse()

    def route(self, request: dict) -> ir.Rule | None:
        return first_match(self.order, self.trees, request)

    def region(self, cond) -> Region | None:
        try:
            return self.space.region(cond)
        except TooComplex:
            return None

    def _analyse(self) -> None:
        earlier: list[RuleFacts] = []
        for position, rule in enumerate(self.order):
            region = self.region(rule.when)
            facts = RuleFacts(rule, position, region, atoms_of_condition(rule.when))
            self.facts.append(facts)
            if region is not None:
                facts.covered_by = [p.rule for p in earlier if p.region and meets_region(region, p.region)]
                prior_boxes = [b for p in earlier if p.region for b in p.region]
                if any(p.region is None for p in earlier):
                    prior_boxes = None  # a rule before it could not be analysed
                self._decide(facts, earlier, prior_boxes)
            earlier.append(facts)

    def _decide(self, facts: RuleFacts, earlier: list[RuleFacts], prior_boxes: list | None) -> None:
        for box in facts.region:
            point = find_point(self.space, box, prior_boxes or [])
            if point is None:
                continue
            witness = self.space.witness(point)
            if self.route(witness) is facts.rule:
                facts.verdict, facts.witness = Verdict.REACHABLE, witness
                return
        if prior_boxes is None and facts.region:
            return
        cover = self._exact_cover(facts, earlier)
        if cover is not None:
            facts.verdict, facts.covered_by = Verdict.UNREACHABLE, [c.rule for c in cover]

    def _exact_cover(self, facts: RuleFacts, earlier: list[RuleFacts]) -> list[RuleFacts] | None:
        """A small set of earlier rules that provably covers `facts`' region:
        every variable involved has complete candidates. None if there is none."""
        space = self.space
        if not space.exact(facts.atoms):
            return None
        if not facts.region:
            return []
        names = {id(r) for r in facts.covered_by}
        usable = [p for p in earlier if id(p.rule) in names and p.region is not None
                  and space.exact(facts.atoms | p.atoms)]
        for prior in usable:
            if is_empty_minus(space, facts.region, prior.region):
                return [prior]
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
        return None if point is None else self.space.witness(point)

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
