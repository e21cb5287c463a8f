"""Findings about which requests reach which rule, from the analysis."""

from __future__ import annotations

import json

from .. import ir
from ..analysis import Verdict
from ..analysis.regions import TooComplex, intersect, meets_region
from ..analysis.router import atoms_of_condition
from ..check import OPERATOR_TEXT
from ..diagnostics import Diagnostic, Related, Severity
from ..runtime.operators import evaluate
from ..vocab import operators
from .registry import lint_rule

W = Severity.WARNING


def _names(rules) -> str:
    return ", ".join(f"`{r.name}`" for r in rules)


UNREACHABLE_RULE = lint_rule(
    "RL310", "unreachable-rule", W, "no request can ever select this rule",
    what="An enabled rule that no request can select: its own conditions contradict each other, or the rules "
         "evaluated before it (higher priority, or equal priority and earlier in the file) together match every "
         "request it matches.",
    why="The rule is dead code that looks alive: whoever reads the file believes those requests go to its "
        "targets, and they never do.",
    example='rule p priority 10 { when tier == "premium" route big }\n'
            'rule s priority 9 { when tier == "standard" route mid }\n'
            'rule c priority 8 { when tier in ["premium", "standard"] route small }  # covered by p and s',
    fix="Delete the rule, narrow the rules that cover it, or give it a higher priority.",
)
OVERLAPPING_RULES = lint_rule(
    "RL311", "overlapping-rules", W, "rules at the same priority match a common request",
    what="Two enabled rules with the same priority both match some request that reaches them; only their "
         "order in the file decides which one routes it. The finding carries such a request.",
    why="Reordering the file (or a formatter, or a merge) silently changes where traffic goes.",
    example='rule a priority 10 { when tier == "pro" route x }\nrule b priority 10 { when region == "eu" route y }',
    fix="Give the rule that should win a higher priority, or make the conditions exclusive.",
)
MISSING_CATCH_ALL = lint_rule(
    "RL312", "missing-catch-all", W, "some request matches no rule",
    what="Some request matches no enabled rule; the finding carries one. With a `schema`, fields declared as "
         "enums are assumed to hold one of their values, so rules covering every value are exhaustive.",
    why="An unmatched request gets no route at all: an error for the caller.",
    example='rule pro priority 10 { when tier == "pro" route x }',
    fix="Add a lowest-priority rule without `when`, or cover the missing case.",
)
CONTRADICTORY_CONDITIONS = lint_rule(
    "RL313", "contradictory-conditions", W, "conditions joined by `and` can never all hold",
    what="An `and` whose parts can never hold together, under routelang's exact semantics "
         "(e.g. `n > 5 and n < 3`, `tier == \"a\" and tier == \"b\"`).",
    why="The expression never matches; if it is the whole `when`, the rule is dead.",
    example="rule r priority 1 { when n > 5 and n < 3 route x }",
    fix="Fix the comparison that is wrong (often `and` where `or` was meant).",
)
REDUNDANT_CONDITION = lint_rule(
    "RL314", "redundant-condition", W, "a condition is implied by the others",
    what="Part of an `and` that the other parts already imply (`n > 5 and n > 3`), or part of an `or` that "
         "the other parts already cover.",
    why="It adds nothing to the rule and suggests the author meant something else.",
    example="rule r priority 1 { when n > 5 and n > 3 route x }",
    fix="Delete the redundant part, or correct it.",
)


@UNREACHABLE_RULE.check
def unreachable_rule(ctx):
    for facts in ctx.analysis.facts:
        if facts.verdict is not Verdict.UNREACHABLE:
            continue
        rule = facts.rule
        if facts.region == []:
            message = f"rule `{rule.name}` is unreachable: no request satisfies its condition"
            related = []
        else:
            message = (f"rule `{rule.name}` is unreachable: every request it matches is taken first by "
                       f"rule{'s' if len(facts.covered_by) > 1 else ''} {_names(facts.covered_by)}")
            related = [Related(ctx.rule_span(r), f"rule `{r.name}` (priority {r.priority})") for r in facts.covered_by]
        yield Diagnostic(UNREACHABLE_RULE.code, message, ctx.rule_span(rule), rule=rule.name, related=related,
                         help="delete it, narrow the rules before it, or give it a higher priority")


@OVERLAPPING_RULES.check
def overlapping_rules(ctx):
    analysis = ctx.analysis
    by_priority: dict[int, list] = {}
    for facts in analysis.facts:
        by_priority.setdefault(facts.rule.priority, []).append(facts)
    for group in by_priority.values():
        for j, later in enumerate(group):
            if later.region is None or later.verdict is Verdict.UNREACHABLE or not later.region:
                continue
            later_tree = ir.condition_tree(later.rule.when) if later.rule.when is not None else None
            for earlier in group[:j]:
                if not earlier.region or not meets_region(earlier.region, later.region):
                    continue
                witness = _common_witness(analysis, earlier, later, later_tree)
                if witness is None:
                    continue
                yield Diagnostic(
                    OVERLAPPING_RULES.code,
                    f"rules `{earlier.rule.name}` and `{later.rule.name}` both have priority {later.rule.priority} "
                    f"and both match some requests; file order sends them to `{earlier.rule.name}`",
                    ctx.rule_span(later.rule), rule=later.rule.name, witness=witness,
                    related=[Related(ctx.rule_span(earlier.rule), f"rule `{earlier.rule.name}`")],
                    help="give the rule that should win a higher priority, or make the conditions exclusive",
                )


def _common_witness(analysis, earlier, later, later_tree) -> dict | None:
    """A request both rules match that reaches `earlier` (no rule before it matches)."""
    try:
        boxes = intersect(earlier.region, later.region)
    except TooComplex:
        return None
    for box in boxes[:64]:
        witness = analysis.reaching(earlier.position, box)
        if witness is not None and analysis.route(witness) is earlier.rule and evaluate(later_tree, witness):
            return witness
    return None


@MISSING_CATCH_ALL.check
def missing_catch_all(ctx):
    use_schema = any(f.type == "enum" for f in ctx.router.schema_fields)
    witness, verdict = ctx.analysis.unmatched_witness(use_schema)
    if verdict is Verdict.REACHABLE:
        yield Diagnostic(MISSING_CATCH_ALL.code,
                         f"some requests match no rule, for example {json.dumps(witness, sort_keys=True)}",
                         ctx.router_span, witness=witness,
                         help="add a lowest-priority rule without `when`, or cover the missing case")


def _conjunctions(cond):
    """AllOf / AnyOf nodes, outermost first."""
    if isinstance(cond, (ir.AllOf, ir.AnyOf)):
        yield cond
        for item in cond.items:
            yield from _conjunctions(item)
    elif isinstance(cond, ir.Not):
        yield from _conjunctions(cond.item)


@CONTRADICTORY_CONDITIONS.check
def contradictory_conditions(ctx):
    analysis = ctx.analysis
    for rule in ctx.router.rules:
        reported: list = []
        for node in _conjunctions(rule.when):
            if not isinstance(node, ir.AllOf) or any(_inside(node, r) for r in reported):
                continue
            region = analysis.region(node)
            if region != [] or not _exact(analysis, node):
                continue
            reported.append(node)
            pair = _clashing_pair(analysis, node.items)
            detail = f": `{_text(ctx, pair[0])}` and `{_text(ctx, pair[1])}` never hold together" if pair else ""
            yield Diagnostic(CONTRADICTORY_CONDITIONS.code, f"these conditions can never all hold{detail}",
                             node.span, rule=rule.name,
                             help="check the comparisons (was `or` meant?)")


def _inside(node, outer) -> bool:
    return any(node is n for n in _conjunctions(outer))


def _exact(analysis, cond) -> bool:
    return analysis.space.exact(atoms_of_condition(cond))


def _clashing_pair(analysis, items):
    regions = [analysis.region(i) for i in items]
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            if regions[a] is not None and regions[b] is not None and not meets_region(regions[a], regions[b]):
                return items[a], items[b]
    return None


def _text(ctx, cond) -> str:
    written = ctx.text(cond.span)
    if written:
        return " ".join(written.split())
    if isinstance(cond, ir.Compare):
        op = OPERATOR_TEXT[cond.operator]
        if cond.operator in operators.UNARY:
            return f"{cond.field} {op}"
        return f"{cond.field} {op} {json.dumps(cond.value)}"
    return "this part"


@REDUNDANT_CONDITION.check
def redundant_condition(ctx):
    analysis = ctx.analysis
    space = analysis.space
    for rule in ctx.router.rules:
        for node in _conjunctions(rule.when):
            regions = [analysis.region(i) for i in node.items]
            if any(r is None for r in regions) or not _exact(analysis, node):
                continue
            is_and = isinstance(node, ir.AllOf)
            if is_and and analysis.region(node) == []:
                continue  # contradictory-conditions reports it
            kept = list(range(len(node.items)))
            for k in reversed(range(len(node.items))):
                if not is_and and regions[k] == []:
                    continue  # a dead branch: contradictory-conditions reports it
                others = [regions[i] for i in kept if i != k]
                if not others:
                    continue
                try:
                    if is_and:
                        rest = [{}]
                        for r in others:
                            rest = intersect(rest, r)
                        redundant = not space.subtract(rest, regions[k])
                    else:
                        redundant = not space.subtract(regions[k], [b for r in others for b in r])
                except TooComplex:
                    continue
                if redundant:
                    kept.remove(k)
                    word = "implied by" if is_and else "already covered by"
                    yield Diagnostic(REDUNDANT_CONDITION.code,
                                     f"`{_text(ctx, node.items[k])}` is {word} the rest of the "
                                     f"`{'and' if is_and else 'or'}`", node.items[k].span, rule=rule.name,
                                     help="delete it, or correct it if it was meant to say something else")

