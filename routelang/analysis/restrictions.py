"""The static guarantee for workspaces and agents: no rule a request of a
workspace (`workspace.id == NAME`) or agent (`agent.id == NAME`) can reach
sends it to a target outside the policy's restrictions.

For each policy and each rule (in evaluation order) that can route to a
target the policy refuses, the analysis looks for a request of that policy
that no earlier rule takes and this one does. Found: an RL241 error naming
the rule, the target, why it is refused, and that request (routed concretely
before it is reported). Proven impossible (the rule's requests of the policy
are all taken by earlier rules, or it has none): nothing. When the analysis
cannot decide (a condition too complex to track, operators without exact
candidates) it says so with an RL241 error as well: a guarantee that is not
proven is not given.
"""

from __future__ import annotations

from .. import ir
from ..diagnostics import RESTRICTION_VIOLATED, Diagnostic
from .domain import atom_of, build_variables
from .regions import Space, intersect
from .router import RouterAnalysis, atoms_of, schema_atoms


def _membership(policy: ir.Policy) -> ir.Compare:
    return ir.Compare(field=policy.request_field, operator="equals", value=policy.name)


def prove(router: ir.Router) -> list[Diagnostic]:
    if not router.policies:
        return []
    refused = {}  # (policy index, rule name) -> [(target, reasons)]
    for index, policy in enumerate(router.policies):
        for rule in router.evaluation_order():
            outside = [(t, policy.refusals(t)) for t in rule.strategy.targets]
            outside = [(t, why) for t, why in outside if why]
            if outside:
                refused[(index, rule.name)] = outside
    if not refused:
        return []
    atoms = atoms_of([router]) | set(schema_atoms(router).values())
    atoms |= {atom_of(p.request_field, "equals", p.name) for p in router.policies}
    analysis = RouterAnalysis(router, Space(build_variables(atoms)))
    out = []
    for index, policy in enumerate(router.policies):
        members = analysis.space.region(_membership(policy))
        for facts in analysis.facts:
            outside = refused.get((index, facts.rule.name))
            if outside is None:
                continue
            out.extend(_judge(analysis, policy, facts, members, outside))
    return out


def _judge(analysis: RouterAnalysis, policy: ir.Policy, facts, members, outside) -> list[Diagnostic]:
    rule = facts.rule
    target, why = outside[0]
    name = target.name or f"{target.provider}/{target.model_name}"
    what = f"{policy.kind} `{policy.name}`"
    span = target.span if target.span.line > 0 else rule.span
    unknown = facts.region is None
    if not unknown:
        for box in intersect(facts.region, members):
            witness = analysis.reaching(facts.position, box)
            if witness is None:
                if any(f.region is None for f in analysis.facts[:facts.position]):
                    unknown = True
                continue
            if analysis.route(witness) is not rule:
                unknown = True
                continue
            return [Diagnostic(
                RESTRICTION_VIOLATED,
                f"rule `{rule.name}` can send a request of {what} to target `{name}`: {'; '.join(why)}",
                span, rule=rule.name,
                help=f"for example {_request(witness)}; exclude the {policy.kind} from the rule"
                     f" (`and {policy.request_field} != \"{policy.name}\"`) or route it to a target it may use",
            )]
        read = facts.atoms.union({atom_of(policy.request_field, "equals", policy.name)},
                                 *(f.atoms for f in analysis.facts[:facts.position]))
        if not unknown and not analysis.space.exact(read):
            unknown = True  # no request found, but the candidates may not cover every one
    if not unknown:
        return []
    return [Diagnostic(
        RESTRICTION_VIOLATED,
        f"cannot prove that rule `{rule.name}` keeps {what} away from target `{name}` ({'; '.join(why)})",
        span, rule=rule.name,
        help=f"state it in the condition: `and {policy.request_field} != \"{policy.name}\"`",
    )]


def _request(witness: dict) -> str:
    import json

    return json.dumps(witness, ensure_ascii=False, sort_keys=True)
