"""IR -> Mixtrain routing-config JSON.

The output loads in Mixtrain's `RoutingConfig` and routes there as
routelang's semantics say for everything Mixtrain can express. What Mixtrain
cannot express travels in `x-routelang` extension fields, which Mixtrain
ignores (its models drop unknown keys) and routelang's runtime reads:

rule["x-routelang"]:
    when        the exact condition tree ({"all"|"any": [...]}, {"not": c},
                or a condition), when `conditions` alone is not exact
    strategy    {"kind": K, ...K's parameters}, for a strategy Mixtrain lacks or a
                parameter it lacks (a sticky split's "sticky_by", "salt"; a split's
                "failover": false, written `no failover`; hybrid's
                "cost_weight", "latency_weight", "reliability_weight"); see
                vocab/strategies.py for which. When members are strategies
                themselves, the whole tree: each node also has "members"
                (an int is an index into the rule's `targets`, an object a
                nested node), and a split node "weights" and "labels", one per
                member. A nested split's salt defaults to "RULE/PATH", PATH
                the member indices from the root ("canary/0.1").
    enabled     routelang's enabled flag, when Mixtrain's view had to differ
    part_of     set on the extra rules an `or` expands into; routelang skips them
target["x-routelang"]:
    name, cost_per_1k_tokens, input_micros_per_1k, output_micros_per_1k, capabilities,
    compliance, tags, circuit_breaker, health_check
config["x-routelang"]["policies"]:
    the workspaces and agents (ir.Policy as JSON, money in micro-dollars), when there are any

Each approximation comes with an RL901 note that says what Mixtrain will do.

Conditions: each operator's entry in vocab/operators.py gives its Mixtrain
form (`lower`, and `lower_negated` for `not`), exact where one exists (`>=`
as `greater_than nextafter(v, -inf)`, a prefix or suffix test as an anchored regex, the
exact negations). A form that is not exact holds on a subset of the rule's
requests; the rule gets an RL902 warning with a witness request (routed both
ways before it is reported), an error under `lower(..., exact=True)`
(`compile --mixtrain-exact`). docs/semantics.md has the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import __version__, ir
from ..diagnostics import MIXTRAIN_APPROXIMATION, MIXTRAIN_INEXACT, Diagnostic, Related, Severity
from ..envvars import has_refs as envvars_in
from ..vocab import operators, strategies
from ..vocab import settings as target_settings
from .peer import requests_matching, with_field

FORMAT_VERSION = 1
MAX_EXPANDED_RULES = 32  # beyond this many `or` branches, don't expand for Mixtrain
EXT = "x-routelang"


# ---- conditions ----------------------------------------------------------------

@dataclass
class Miss:
    """A condition Mixtrain's operators cannot state exactly: what was written,
    for which values the lowering differs, and a field value it differs on."""

    written: str
    differs: str
    field: str | None = None
    value: Any = None


@dataclass
class Lowered:
    """A condition as Mixtrain conditions: a disjunction of conjunctions, and
    the conditions that could not be stated exactly (empty: `terms` is exact).
    Every term holds only where the condition does."""

    terms: list[list[ir.Compare]]
    misses: list[Miss] = field(default_factory=list)


def _written(cmp: ir.Compare, negated: bool) -> str:
    op = operators.get(cmp.operator)
    text = f"{cmp.field} {op.text}" if op.unary else f"{cmp.field} {op.text} {json.dumps(cmp.value)}"
    return f"not ({text})" if negated else text


def _literal(cmp: ir.Compare, negated: bool) -> Lowered:
    """The Mixtrain conditions for `cmp` (or its negation), from the operator table."""
    if isinstance(cmp.value, dict):  # RoutingCondition.value cannot hold one
        return Lowered([], [Miss(_written(cmp, negated), "every request (Mixtrain cannot compare with an object)")])
    entry = operators.get(cmp.operator)
    lowering = (entry.lower_negated if negated else entry.lower)(cmp.value)
    keep = {} if negated or lowering.terms != (((entry.name, cmp.value),),) else {"description": cmp.description}
    terms = [[ir.Compare(field=cmp.field, operator=op, value=value, span=cmp.span, spans=cmp.spans,
                         **keep) for op, value in term] for term in lowering.terms]
    if lowering.exact:
        return Lowered(terms)
    return Lowered(terms, [Miss(_written(cmp, negated), lowering.differs, cmp.field, lowering.witness)])


def _dnf(cond, negated: bool = False) -> Lowered:
    """Disjunctive normal form over Mixtrain conditions."""
    if isinstance(cond, ir.Compare):
        return _literal(cond, negated)
    if isinstance(cond, ir.Not):
        return _dnf(cond.item, not negated)
    conjunction = isinstance(cond, ir.AllOf) != negated  # De Morgan
    parts = [_dnf(c, negated) for c in cond.items]
    misses = [m for part in parts for m in part.misses]
    if not conjunction:
        terms = [term for part in parts for term in part.terms]
    else:
        terms = [[]]
        for part in parts:
            terms = [left + right for left in terms for right in part.terms]
            if len(terms) > MAX_EXPANDED_RULES:
                break
    if len(terms) > MAX_EXPANDED_RULES:
        return Lowered([], [*misses, Miss(f"more than {MAX_EXPANDED_RULES} `or` branches",
                                          "every request (the rule is disabled in Mixtrain's view)")])
    return Lowered(terms, misses)


def _condition_json(cmp: ir.Compare) -> dict:
    out: dict[str, Any] = {"field": cmp.field, "operator": cmp.operator}
    if cmp.operator not in operators.UNARY:
        out["value"] = cmp.value
    if cmp.description is not None:
        out["description"] = cmp.description
    return out


def _is_plain_conjunction(cond) -> bool:
    if cond is None:
        return True
    items = cond.items if isinstance(cond, ir.AllOf) else (cond,)
    return all(isinstance(c, ir.Compare) and operators.get(c.operator).mixtrain and not isinstance(c.value, dict)
               for c in items)


def _flat_conjunction(cond) -> list[ir.Compare]:
    if cond is None:
        return []
    return list(cond.items) if isinstance(cond, ir.AllOf) else [cond]


# ---- targets and strategies ------------------------------------------------------

def target_json(t: ir.Target, weight: float | None = None) -> dict:
    out: dict[str, Any] = {s.json_field: getattr(t, s.ir_field) for s in target_settings.IDENTITY}
    out["weight"] = weight if weight is not None else (t.weight if t.weight is not None else 1.0)
    for setting in target_settings.MIXTRAIN_OPTIONAL:
        value = getattr(t, setting.ir_field)
        if value is not None:
            out[setting.json_field] = value
    ext: dict[str, Any] = {}
    if t.name is not None:
        ext["name"] = t.name
    for setting in target_settings.EXTENSIONS:
        value = getattr(t, setting.ir_field)
        if value is not None:
            # A block writes every field, bar the optional ones left unset.
            if isinstance(value, tuple):
                value = list(value)
            ext[setting.json_field] = value if not setting.block else {
                sub.json_field: v for sub in setting.block if (v := getattr(value, sub.ir_field)) is not None}
    if ext:
        out[EXT] = ext
    return out


def policy_json(policy: ir.Policy) -> dict:
    """A workspace or agent as the runtime reads it (fields left unwritten are left out)."""
    return policy.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {
        "kind": policy.kind, "name": policy.name, "timezone": policy.timezone}


def _parameters(s: ir.Strategy, default_salt: str) -> dict[str, Any]:
    """The strategy's own parameters, as x-routelang carries them."""
    out: dict[str, Any] = {}
    if isinstance(s, ir.Split) and s.sticky_by is not None:
        out = {"sticky_by": s.sticky_by, "salt": s.salt if s.salt is not None else default_salt}
    if isinstance(s, ir.Split) and not s.failover:
        out["failover"] = False
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
    """A strategy with strategies among its members. Mixtrain gets the
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


def _runtime_endpoints_note(router: ir.Router) -> list[Diagnostic]:
    """One note for every `${VAR}` endpoint of the router (a fact about targets,
    not rules: a target used by many rules is listed once), at the first one."""
    found: dict[tuple[str, str], ir.Target] = {}
    for rule in router.rules:
        for t in rule.strategy.targets:
            if envvars_in(t.endpoint):
                found.setdefault((t.name or t.label or t.model_name, t.endpoint), t)
    if not found:
        return []
    listed = ", ".join(f"`{name}` (`{endpoint}`)" for name, endpoint in found)
    subject = (f"the endpoint of target {listed} is" if len(found) == 1
               else f"the endpoints of targets {listed} are")
    spans = {}  # by position: spans compare equal whatever they point at
    for t in found.values():
        span = t.spans.get("endpoint", t.span)
        spans.setdefault((span.file, span.line, span.column), span)
    first, *others = spans.values()
    return [Diagnostic(MIXTRAIN_APPROXIMATION, f"{subject} filled in at run time; Mixtrain's validator rejects "
                       f"{'it' if len(found) == 1 else 'them'} unless you compile with --env", first,
                       related=[Related(span, "also filled in at run time") for span in others])]


# ---- rules -------------------------------------------------------------------------

def _rules(rule: ir.Rule, taken: set[str], notes: list[Diagnostic], misses: list[Miss]) -> list[dict]:
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

    ext["when"] = ir.condition_tree(rule.when)
    lowered = _dnf(rule.when)
    if lowered.misses:
        misses.extend(lowered.misses)
    terms = lowered.terms
    if not terms:  # no Mixtrain condition holds only where this rule does
        if rule.enabled:
            ext["enabled"] = True
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
    same = "that match the same requests" if not lowered.misses else "(see the warning on what they miss)"
    _note(notes, rule, f"rule `{rule.name}`: Mixtrain has no `or`; it gets {len(terms)} rules "
                       f"({', '.join(f'`{n}`' for n in names)}) {same}")
    out = [finish(terms[0], rule.name, ext)]
    for name, term in zip(names[1:], terms[1:]):
        out.append(finish(term, name, {"part_of": rule.name}))
    return out


def lower(router: ir.Router, exact: bool = False) -> tuple[dict, list[Diagnostic]]:
    """The JSON config for `router`, and notes on what Mixtrain does differently.
    A condition Mixtrain cannot state exactly gets a warning (an error with
    `exact`, as `compile --mixtrain-exact`) carrying a witness request."""
    notes: list[Diagnostic] = []
    taken = {r.name for r in router.rules}
    rules: list[dict] = []
    inexact: list[tuple[ir.Rule, list[Miss]]] = []
    for rule in router.rules:
        misses: list[Miss] = []
        rules.extend(_rules(rule, taken, notes, misses))
        if misses and rule.enabled:
            inexact.append((rule, misses))
    notes.extend(_runtime_endpoints_note(router))
    out: dict[str, Any] = {"name": router.name}
    if router.description is not None:
        out["description"] = router.description
    if router.metadata:
        out["metadata"] = router.metadata
    out["rules"] = rules
    out[EXT] = {"format": FORMAT_VERSION, "compiler": f"routelang {__version__}"}
    if router.policies:
        out[EXT]["policies"] = [policy_json(p) for p in router.policies]
    if inexact:
        notes.extend(_inexact_warnings(router, out, inexact, exact))
    return out, notes


def dumps(config: Any) -> str:
    """`json.dumps(config, indent=2, ensure_ascii=False)`, byte for byte, with
    orjson where it writes the same (10x faster on a 10,000-rule config): it
    refuses integers beyond 64 bits, non-string keys and lone surrogates, and
    writes some floats differently (`0.00001` for `1e-05`, `null` for NaN), so
    configs holding any of those go through the standard library."""
    if not _floats_print_alike(config):
        return json.dumps(config, indent=2, ensure_ascii=False)
    try:
        return orjson.dumps(config, option=orjson.OPT_INDENT_2).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(config, indent=2, ensure_ascii=False)


def _floats_print_alike(value: Any) -> bool:
    """Whether orjson writes every float inside `value` as `repr` does (json.dumps
    writes repr). Strings, the bulk of a config, are skipped without a call."""
    kind = type(value)
    if kind is float:
        return orjson.dumps(value) == repr(value).encode()
    items = value.values() if kind is dict else value if kind is list or kind is tuple else ()
    for item in items:
        kind = type(item)
        if (kind is dict or kind is list or kind is tuple or kind is float) and not _floats_print_alike(item):
            return False
    return True


# ---- what stays inexact ---------------------------------------------------------------

def mixtrain_choice(config: dict, request: dict) -> str | None:
    """The rule Mixtrain's engine picks for `request` (by the name routelang gave
    it, `or` expansions mapped back), reading only what Mixtrain reads:
    enabled rules by priority, each a conjunction of `conditions`. The
    operators mean what Mixtrain's do (vocab/operators.py; tests check this
    against the mixtrain package)."""
    from ..runtime.operators import evaluate

    order = sorted((r for r in config["rules"] if r.get("is_enabled", True)), key=lambda r: -r.get("priority", 0))
    for r in order:
        if evaluate({"all": r["conditions"]}, request):
            return r.get(EXT, {}).get("part_of", r["name"])
    return None


def _printable(request: dict) -> bool:
    try:
        json.dumps(request)
    except (ValueError, RecursionError, TypeError):
        return False
    return True


def _describe_value(value: Any) -> str:
    if isinstance(value, int) and not _printable({"v": value}):
        return "an integer of more than 4,300 digits"
    return json.dumps(value)


PROBES = ("", "zz", 0, 1.5, True, [], {})  # field values tried when a miss names none


def _inexact_warnings(router: ir.Router, config: dict, inexact: list, exact: bool) -> list[Diagnostic]:
    """One warning per rule whose conditions Mixtrain cannot state exactly, with
    a request routelang routes by that rule and Mixtrain does not: found by the
    analysis, then checked by routing it in both engines."""
    from ..analysis.router import first_match

    order = router.evaluation_order()
    trees = [ir.condition_tree(r.when) if r.when is not None else None for r in order]
    out = []
    for rule, misses in inexact:
        bases = requests_matching(order, rule)
        # (request, the miss it was built to show, the request it was built from)
        candidates: list[tuple[dict, Miss | None, dict]] = [(b, None, b) for b in bases]
        for miss in misses:
            if miss.field is not None:
                values = [miss.value] if miss.value is not None else list(PROBES)
                candidates += [(with_field(b, miss.field, v), miss, b) for v in values for b in [*bases, {}]]
        witness = next(((request, miss, base, theirs) for request, miss, base in candidates
                        if first_match(order, trees, request) is rule
                        and (theirs := mixtrain_choice(config, request)) != rule.name), None)
        what = "; ".join(f"`{m.written}` (it differs for {m.differs})" for m in misses)
        message = f"rule `{rule.name}`: Mixtrain's conditions cannot state {what}"
        request = None
        if witness is None:
            message += " (no request tried showed the difference)"
        else:
            request, miss, base, theirs = witness
            elsewhere = f"rule `{theirs}`" if theirs is not None else "no rule"
            message += f"; a request routelang routes by `{rule.name}` goes to {elsewhere} in Mixtrain"
            if not _printable(request):  # a huge integer or a deep list: say what it holds
                rest = with_field(base, miss.field, None)
                message += (f": {json.dumps(rest, sort_keys=True)} with `{miss.field}` holding "
                            f"{_describe_value(miss.value)}")
                request = None
        out.append(Diagnostic(MIXTRAIN_INEXACT, message, rule.span, rule=rule.name, witness=request,
                              severity=Severity.ERROR if exact else None,
                              help="docs/semantics.md lists what Mixtrain can state exactly; "
                                   "`compile --mixtrain-exact` makes this an error"))
    return out
