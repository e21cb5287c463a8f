"""What the backends to other engines (Mixtrain, LiteLLM, Portkey) share: finding a
request on which the engine decides differently from routelang (the witness of an
RL902 or RL911 warning)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .. import ir
from ..analysis.router import first_match
from ..diagnostics import PEER_INEXACT, Diagnostic, Severity


def rule_text(name: str | None) -> str:
    return f"rule `{name}`" if name is not None else "no rule"


def find_witness(router: ir.Router, rule: ir.Rule, candidates: Iterable[dict],
                 theirs_for: Callable[[dict], str | None]) -> tuple[dict, str | None, str | None] | None:
    """The first candidate request that routelang and the peer (`theirs_for`: the
    rule name the peer's config picks) route differently, one of them by `rule`:
    (request, routelang's rule, the peer's rule)."""
    order = router.evaluation_order()
    trees = [ir.condition_tree(r.when) if r.when is not None else None for r in order]
    for request in candidates:
        ours = first_match(order, trees, request)
        ours_name, theirs = (ours.name if ours is not None else None), theirs_for(request)
        if ours_name != theirs and rule.name in (ours_name, theirs):
            return request, ours_name, theirs
    return None


def with_field(request: dict, path: str, value: Any) -> dict:
    """A copy of `request` with `path` set to `value` (removed when None)."""
    out = json.loads(json.dumps(request))
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return out



MAX_WITNESS_BASES = 16
MAX_ANALYSED_EARLIER_RULES = 100  # the analysis grows about quadratically with the rules it reads


def requests_matching(order: list[ir.Rule], rule: ir.Rule) -> list[dict]:
    """Requests the rule's condition holds for: first one that reaches it past
    the rules before it (when there are few enough of those to analyse), then
    one per region box from an analysis of the rule alone. Whether an earlier
    rule takes them is checked afterwards by routing them."""
    from ..analysis.regions import find_point
    from ..analysis.router import RouterAnalysis

    out = []
    earlier = order[:order.index(rule)]
    if len(earlier) <= MAX_ANALYSED_EARLIER_RULES:
        reached = RouterAnalysis(ir.Router(name="witness", rules=(*earlier, rule))).facts[-1].witness
        if reached is not None:
            out.append(reached)
    alone = RouterAnalysis(ir.Router(name="witness", rules=(rule,)))
    for box in (alone.facts[0].region or [])[:MAX_WITNESS_BASES]:
        point = find_point(alone.space, box, [])
        if point is not None:
            out.append(alone.space.witness(point))
    return out


def inexact_warning(peer: str, rule: ir.Rule, message: str, witness: dict | None, exact: bool) -> Diagnostic:
    """RL911: the peer would route some request of `rule` differently (an error under `--exact`)."""
    return Diagnostic(PEER_INEXACT, message, rule.span, rule=rule.name, witness=witness,
                      severity=Severity.ERROR if exact else None,
                      help=f"docs/import.md lists what {peer} can state exactly; `--exact` makes this an error")
