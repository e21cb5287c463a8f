"""What the LiteLLM and Portkey backends share: finding a request on which the
peer decides differently from routelang (the witness of an RL911 warning)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import ir
from ..analysis.router import first_match


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
