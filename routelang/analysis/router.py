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
from .domain import atom_of, build_variables
from .regions import Region, Space, TooComplex, meets_region


class Verdict(str, Enum):
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


@dataclass
class RuleFacts:
    rule: ir.Rule
    position: int                       # index in evaluation order
    region: Region | None               # None: too complex to track
    variables: set[int] = field(default_factory=set)
    verdict: Verdict = Verdict.UNKNOWN
    witness: dict | None = None         # a request this rule routes (verified)
    covered_by: list[ir.Rule] = field(default_factory=list)
    first_region: Region | None = None  # requests this rule routes


def atoms_of(routers) -> set:
    atoms = set()
    for router in routers:
        for rule in router.rules:
            for cmp in walk_conditions(rule.when):
                value = None if cmp.operator in ir.UNARY_OPERATORS else cmp.value
                atoms.add(atom_of(cmp.field, cmp.operator, value))
    return atoms


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
        space = self.space
        earlier: list[RuleFacts] = []
        for position, rule in enumerate(self.order):
            region = self.region(rule.when)
            facts = RuleFacts(rule, position, region, self._variables(rule.when))
            self.facts.append(facts)
            if region is None:
                earlier.append(facts)
                continue
            remaining: Region | None = region
            for prior in earlier:
                if prior.region is None or not remaining or not meets_region(remaining, prior.region):
                    continue
                facts.covered_by.append(prior.rule)
                try:
                    remaining = space.subtract(remaining, prior.region)
                except TooComplex:
                    remaining = None
                    break
            earlier.append(facts)
            facts.first_region = remaining
            for box in (remaining or [])[:16]:
                witness = space.witness(box)
                if self.route(witness) is rule:
                    facts.verdict, facts.witness = Verdict.REACHABLE, witness
                    break
            if remaining == []:
                cover = self._exact_cover(facts, earlier)
                if cover is not None:
                    facts.verdict, facts.covered_by = Verdict.UNREACHABLE, [c.rule for c in cover]

    def _variables(self, cond) -> set[int]:
        """The variables a condition reads (not only those its region constrains:
        an empty region constrains none, yet its emptiness depends on them)."""
        return {self.space.var_of_field[c.field] for c in walk_conditions(cond)}

    def _exact_cover(self, facts: RuleFacts, earlier: list[RuleFacts]) -> list[RuleFacts] | None:
        """A small set of earlier rules that provably covers `facts`' region:
        every variable involved has complete candidates. None if there is none."""
        space = self.space
        if not space.exact(facts.variables):
            return None
        names = {id(r) for r in facts.covered_by}
        usable = [p for p in earlier if id(p.rule) in names and p.region is not None and space.exact(p.variables)]
        for prior in usable:
            if not space.subtract(facts.region, prior.region):
                return [prior]
        if self._left(facts.region, usable):
            return None
        cover = list(usable)
        if len(cover) <= 32:
            for prior in list(cover):
                rest = [c for c in cover if c is not prior]
                if not self._left(facts.region, rest):
                    cover = rest
        return cover

    def _left(self, region: Region, rules: list[RuleFacts]) -> Region:
        for prior in rules:
            region = self.space.subtract(region, prior.region)
            if not region:
                break
        return region

    def unmatched(self, use_schema: bool) -> tuple[Region | None, bool]:
        """Requests no rule matches (restricted to the schema's enums when asked),
        and whether an empty answer is exact."""
        space = self.space
        start: Region = [{}]
        if use_schema:
            for path, atom in schema_atoms(self.router).items():
                index = space.var_of_field[path]
                mask = space.variables[index].masks[atom]
                start = [{**box, index: box.get(index, space.variables[index].full) & mask} for box in start]
        tracked = [f for f in self.facts if f.region is not None]
        exact_rules = [f for f in tracked if space.exact(f.variables)]
        try:
            if not self._left(start, exact_rules):
                return [], True
            return self._left(start, tracked), False
        except TooComplex:
            return None, False

    def unmatched_witness(self, use_schema: bool) -> tuple[dict | None, Verdict]:
        remaining, exact = self.unmatched(use_schema)
        if remaining is None:
            return None, Verdict.UNKNOWN
        for box in remaining[:16]:
            witness = self.space.witness(box)
            if self.route(witness) is None:
                return witness, Verdict.REACHABLE
        if not remaining:
            return None, Verdict.UNREACHABLE if exact else Verdict.UNKNOWN
        return None, Verdict.UNKNOWN
