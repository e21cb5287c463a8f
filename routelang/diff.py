"""`routelang diff OLD NEW`: which requests change rule or target.

Both routers are analysed over one shared set of candidate values (built from
the literals of both), so their regions are comparable. A rule's *behaviour*
is what it does with a request, independent of names and layout: the strategy
kind and its parameters, and each target's provider, model, endpoint, shadow
flag and (in a split) weight. For each pair of an old and a new outcome with
different behaviours, the requests both take are split into kinds (see
`_changes`); each kind is one change, with a witness request routed
concretely by both. Renamed rules or definitions, reformatting and
reorderings that keep the meaning give no changes. A sticky split's salt
defaults to its rule's name, so renaming such a rule *does* change where
users land, and is reported. docs/analysis.md says when "no change" is proven.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import ir
from .analysis import RouterAnalysis, Space, TooComplex, atoms_of, build_variables
from .analysis.regions import find_point, intersect
from .vocab import strategies

NO_MATCH = "no match"
MAX_CHANGES_PER_PAIR = 10  # kinds of request shown per (old rule, new rule); beyond, "and more"


def _targets(strategy: ir.Strategy) -> tuple[ir.Target, ...]:
    """The targets a strategy chooses among (the one place that reads them)."""
    return strategy.targets


def behaviour(rule: ir.Rule | None) -> tuple | str:
    """What a rule does with a request it matches; equal behaviours route alike.
    Weights matter to a split only: other strategies ignore them."""
    if rule is None:
        return NO_MATCH
    return _strategy_behaviour(rule.strategy, rule.name)


def _strategy_behaviour(s: ir.Strategy, salt_default: str) -> tuple:
    """(kind, members, sticky_by, salt, failover, *score weights): a target member is
    (provider, model, endpoint, weight in a split, shadow flag); a nested
    strategy is (its arm weight, its own behaviour)."""
    members: list[tuple] = []
    for m in s.members:
        if isinstance(m, ir.Target):
            members.append((m.provider, m.model_name, m.endpoint, m.weight if s.kind == "split" else None,
                            bool(m.is_shadow)))
        elif isinstance(m, ir.NestedArm):
            members.append((m.weight, _strategy_behaviour(m.strategy, salt_default)))
        else:
            members.append((None, _strategy_behaviour(m, salt_default)))
    sticky_by = s.sticky_by if isinstance(s, ir.Split) else None
    salt = (s.salt if s.salt is not None else salt_default) if sticky_by is not None else None
    failover = s.failover if isinstance(s, ir.Split) else None
    weights = tuple(getattr(s, f"{f}_weight", None) for f in strategies.SCORE_FACTORS)
    return (s.kind, tuple(members), sticky_by, salt, failover, *weights)


def describe(rule: ir.Rule | None, detailed: bool = False) -> str:
    """A rule's behaviour in one line; `detailed` adds endpoints, shadow flags,
    the salt and hybrid weights (for changes the short form does not show)."""
    if rule is None:
        return "no rule (unrouted)"
    return f"rule `{rule.name}` ({_describe_strategy(rule.strategy, rule.name, detailed)})"


def _describe_strategy(s: ir.Strategy, salt_default: str, detailed: bool) -> str:
    parts = []
    for m in s.members:
        share = f"{m.weight * 100:g}% " if s.kind == "split" and m.weight is not None else ""
        inner = m.strategy if isinstance(m, ir.NestedArm) else m
        if isinstance(inner, ir.Target):
            text = f"{share}{inner.provider}:{inner.model_name}"
            if detailed:
                text += f" at {inner.endpoint}" + (" (is_shadow)" if inner.is_shadow else "")
        else:
            text = f"{share}({_describe_strategy(inner, salt_default, detailed)})"
        parts.append(text)
    sticky_by = s.sticky_by if isinstance(s, ir.Split) else None
    extra = f" sticky by {sticky_by}" if sticky_by else ""
    if detailed and sticky_by:
        extra += f" salt {json.dumps(s.salt if s.salt is not None else salt_default)}"
    if isinstance(s, ir.Split) and not s.failover:
        extra += " no failover"
    factors = strategies.strategy(s.kind).score_factors
    if detailed and factors:
        extra += " (" + ", ".join(f"{f} {getattr(s, f'{f}_weight') or 0:g}" for f in factors) + ")"
    return f"{s.kind}{extra}: {', '.join(parts)}"


def differences(old: ir.Rule | None, new: ir.Rule | None) -> list[str]:
    """What differs between two versions of one rule (same name or same condition),
    setting by setting, when they use the same strategy over as many targets;
    otherwise the two descriptions say it."""
    if old is None or new is None or (old.name != new.name and _condition_key(old) != _condition_key(new)):
        return []
    if old.strategy.nested() or new.strategy.nested():
        return []  # members are not all targets: the two descriptions say what changed
    a, b = behaviour(old), behaviour(new)
    if a[0] != b[0] or len(a[1]) != len(b[1]):
        return []
    out = []
    fields = ("provider", "model", "endpoint", "weight", "is_shadow")
    for t_old, t_new, before, after in zip(_targets(old.strategy), _targets(new.strategy), a[1], b[1]):
        for name, x, y in zip(fields, before, after):
            if x != y:
                out.append(f"{name} of {t_old.provider}:{t_old.model_name}: {json.dumps(x)} -> {json.dumps(y)}")
    for name, x, y in zip(("sticky by", "salt", "failover", *(f"{f} weight" for f in strategies.SCORE_FACTORS)),
                          a[2:], b[2:]):
        if x != y:
            out.append(f"{name}: {json.dumps(x)} -> {json.dumps(y)}")
    return out


@dataclass
class Change:
    old_rule: str | None
    new_rule: str | None
    old: str
    new: str
    witness: dict
    changed: list[str] = field(default_factory=list)   # setting by setting, when the rules are comparable

    def to_json(self) -> dict:
        return {"old_rule": self.old_rule, "new_rule": self.new_rule, "old": self.old, "new": self.new,
                "changed": self.changed, "witness": self.witness}


@dataclass
class DiffResult:
    changes: list[Change]
    exact: bool                    # False: "no change" is not proven
    caveats: list[str]
    more: list[tuple] = field(default_factory=list)   # (old rule, new rule) with more kinds than shown
    policies: list[str] = field(default_factory=list)  # workspaces and agents added, removed or changed


# What a policy change shows: explain's words for each part (policy_data).
_POLICY_PARTS = ("budgets", "limits", "timezone", "restrictions", "requirements", "when_none_qualifies")


def policy_changes(old: ir.Router, new: ir.Router) -> list[str]:
    """`workspace W: budgets: 100 USD per day -> 150 USD per day`, one line per part changed."""
    from .explain import policy_data

    before = {(p.kind, p.name): policy_data(old, p) for p in old.policies}
    after = {(p.kind, p.name): policy_data(new, p) for p in new.policies}
    out = []
    for key in [*before, *(k for k in after if k not in before)]:
        label = f"{key[0]} {key[1]}"
        if key not in after:
            out.append(f"{label}: removed")
        elif key not in before:
            out.append(f"{label}: added")
        else:
            for part in _POLICY_PARTS:
                x, y = before[key][part], after[key][part]
                if x != y:
                    words = (lambda v: ", ".join(v) or "none") if isinstance(x, list) else str
                    out.append(f"{label}: {part.replace('_', ' ')}: {words(x)} -> {words(y)}")
    return out


@dataclass
class _Outcome:
    """A rule (or "no match", rule None) in one router's evaluation order."""

    rule: ir.Rule | None
    region: list | None            # None: too complex to analyse
    atoms: frozenset
    key: str | None                # the condition, as _condition_key


def _outcomes(analysis: RouterAnalysis) -> list[_Outcome]:
    out = [_Outcome(f.rule, f.region, f.atoms, _condition_key(f.rule)) for f in analysis.facts]
    return out + [_Outcome(None, [{}], frozenset(), None)]


def diff(old: ir.Router, new: ir.Router) -> DiffResult:
    space = Space(build_variables(atoms_of([old, new])))
    before, after = RouterAnalysis(old, space), RouterAnalysis(new, space)
    old_out, new_out = _outcomes(before), _outcomes(after)
    first_in_new = _first_positions(new_out)
    first_in_old = _first_positions(old_out)
    old_limits = [first_in_new.get(o.key, len(new_out) - 1) if o.rule else len(new_out) - 1 for o in old_out]
    new_floors = [first_in_old.get(o.key, len(old_out)) if o.rule else len(old_out) for o in new_out]
    new_keys = [behaviour(o.rule) for o in new_out]
    questions = _Questions(space, old_out, new_out)
    changes: list[Change] = []
    more: list[tuple] = []
    for i, o in enumerate(old_out):
        key = behaviour(o.rule)
        # A request that o.rule matches also matches a rule with the same
        # condition in the new router, so it cannot pass that rule there; a
        # new rule whose condition an earlier old rule has is never reached
        # from o.rule. Both hold whatever the analysis can decide.
        for j in range(old_limits[i] + 1):
            n = new_out[j]
            if new_floors[j] < i or new_keys[j] == key:
                continue
            questions.asked(i, j)  # even an empty region is only as exact as its candidates
            if not o.region or not n.region:
                continue
            found = _changes(space, questions, i, j, before, after)
            if not found:
                continue
            old_text, new_text = describe(o.rule), describe(n.rule)
            if old_text == new_text:  # the short form hides what changed
                old_text, new_text = describe(o.rule, detailed=True), describe(n.rule, detailed=True)
            changed = differences(o.rule, n.rule)
            for witness in found[:MAX_CHANGES_PER_PAIR]:
                changes.append(Change(_name(o.rule), _name(n.rule), old_text, new_text, witness, changed))
            if len(found) > MAX_CHANGES_PER_PAIR:
                more.append((_name(o.rule), _name(n.rule)))
    caveats = questions.caveats()
    return DiffResult(changes, exact=not caveats, caveats=caveats, more=more, policies=policy_changes(old, new))


def _name(rule: ir.Rule | None) -> str | None:
    return None if rule is None else rule.name


class _Questions:
    """Which (old, new) pairs the diff had to decide, and whether the analysis
    decides each exactly: the candidates must be complete for the atoms of both
    rules and of every rule before them, and each of those must be tracked.
    Pairs never asked (identical conditions, equal behaviours) need no caveat,
    so a file diffed with itself is proven unchanged whatever it contains."""

    def __init__(self, space: Space, old_out: list[_Outcome], new_out: list[_Outcome]):
        self.space = space
        self.sides = (old_out, new_out)
        self.everything_exact = space.exact(frozenset().union(*(o.atoms for o in old_out + new_out)))
        self._prefixes: tuple | None = None
        self._caveats: dict[str, None] = {}

    def _prefix_atoms(self) -> tuple:
        """Per side, per position: the atoms of that rule and every rule before it."""
        if self._prefixes is None:
            sides = []
            for outcomes in self.sides:
                acc: frozenset = frozenset()
                prefix = []
                for o in outcomes:
                    acc = acc | o.atoms
                    prefix.append(acc)
                sides.append(prefix)
            self._prefixes = tuple(sides)
        return self._prefixes

    def asked(self, i: int, j: int) -> None:
        for outcomes, position in zip(self.sides, (i, j)):
            for o in outcomes[:position + 1]:
                if o.region is None:
                    self._caveats.setdefault(f"rule `{o.rule.name}` is too complex to analyse")
        if self.everything_exact:
            return
        old_prefix, new_prefix = self._prefix_atoms()
        atoms = old_prefix[i] | new_prefix[j]
        if self.space.exact(atoms):
            return
        fields = {a.field for a in atoms}
        for v in self.space.variables:
            if not v.exact and fields.intersection(v.paths):
                self._caveats.setdefault(f"`{v.root}`: {v.why_inexact}")

    def caveats(self) -> list[str]:
        return list(self._caveats)


def _changes(space: Space, questions: _Questions, i: int, j: int, before: RouterAnalysis,
             after: RouterAnalysis) -> list[dict]:
    """A verified witness for every kind of request that old outcome i and new
    outcome j route differently. The requests both match are cut by the earlier
    rules whose condition only one router has (each piece left is one kind of
    change: `credits <= 20`, `beta is true`); earlier rules both routers have
    are only avoided, so they do not split the changes further."""
    old_out, new_out = questions.sides
    o, n = old_out[i], new_out[j]
    try:
        both = intersect(o.region, n.region)
    except TooComplex:
        return []
    old_keys = {p.key for p in old_out[:i]}
    new_keys = {p.key for p in new_out[:j]}
    shared = old_keys & new_keys
    earlier = [p for p in old_out[:i] + new_out[:j] if p.region]
    context = [b for p in earlier if p.key in shared for b in p.region]
    differing = [b for p in earlier if p.key not in shared for b in p.region]
    try:
        pieces = space.subtract(both, differing)
        avoid = context
    except TooComplex:
        pieces, avoid = both, context + differing
    found = []
    for piece in pieces:
        point = find_point(space, piece, avoid)
        if point is None:
            continue
        witness = space.witness(point)
        if before.route(witness) is o.rule and after.route(witness) is n.rule:
            found.append(witness)
            if len(found) > MAX_CHANGES_PER_PAIR:
                break  # enough to say there are more
            avoid = avoid + [piece]   # the next witness is of another kind
    return found


def _condition_key(rule: ir.Rule | None) -> str | None:
    """Rules with equal keys match exactly the same requests (None: "no match")."""
    if rule is None:
        return None
    return json.dumps(ir.condition_tree(rule.when) if rule.when is not None else "*", sort_keys=True)


def _first_positions(outcomes: list[_Outcome]) -> dict[str, int]:
    out: dict[str, int] = {}
    for position, o in enumerate(outcomes):
        if o.rule is not None:
            out.setdefault(o.key, position)
    return out


def render_text(result: DiffResult) -> str:
    policies = [f"~ {line}" for line in result.policies]
    if not result.changes:
        lines = ["no behavioural change" if not policies else "no request changes route"]
        if not result.exact:
            lines[0] += " found (not proven; the analysis was inexact here:)"
            lines += [f"  - {c}" for c in result.caveats]
        return "\n".join(lines + policies)
    lines = [*policies, f"{len(result.changes)} kind(s) of request change route:"]
    for c in result.changes:
        lines.append(f"~ requests like {json.dumps(c.witness, sort_keys=True)}")
        lines.append(f"    before: {c.old}")
        lines.append(f"    after:  {c.new}")
        lines += [f"    changed: {what}" for what in c.changed]
    for old_rule, new_rule in result.more:
        lines.append(f"~ and more kinds of request from {_rule_words(old_rule)} to {_rule_words(new_rule)} "
                     f"(the first {MAX_CHANGES_PER_PAIR} are shown)")
    if not result.exact:
        lines.append("note: the analysis was inexact here, so other changes may exist:")
        lines += [f"  - {c}" for c in result.caveats]
    return "\n".join(lines)


def _rule_words(name: str | None) -> str:
    return "no match" if name is None else f"rule `{name}`"


def render_json(result: DiffResult) -> str:
    more = [{"old_rule": old_rule, "new_rule": new_rule} for old_rule, new_rule in result.more]
    return json.dumps({"changes": [c.to_json() for c in result.changes], "more_changes": more,
                       "exact": result.exact, "caveats": result.caveats}
                      | ({"policy_changes": result.policies} if result.policies else {}),
                      indent=2, ensure_ascii=False)
