"""IR -> Portkey gateway config (JSON): `routelang compile FILE --target portkey`.

Enabled rules, in evaluation order, become a `conditional` strategy: one
condition per rule with a `when` (its `then` the target node named after the
rule), the first rule without one the `default` (rules after it are never
reached). A router whose first rule has no condition is that rule's node
alone. Strategies nest as Portkey's targets do: `split` is `loadbalance`,
`fallback` is `fallback`, `route T` a single target.

Conditions become queries that Portkey's conditionalRouter.ts evaluates as
routelang does, where it can: each leaf is an object alone (`$and`, `$or` and
`$regex` end what they are in, so nothing shares one), `not` is pushed down to
the leaves (`!=`, `$nin`, a negative lookahead for a pattern). What Portkey
cannot state exactly (`exists`, fields other than `metadata.K`, body fields
`K` and `request.path`, a pattern that also matches the text `undefined`,
which Portkey tests when the key is missing, strategies Portkey lacks) is
lowered to the closest query and reported as RL911 with a request on which
the two decide differently: found by routing candidate requests through
routelang and through the config as `routelang import` reads it (whose
agreement with Portkey tests/test_import_peers.py checks on generated
configs). Settings Portkey has no place for are RL910 notes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import ir
from ..diagnostics import PEER_APPROXIMATION, Diagnostic
from ..vocab import operators
from .peer import find_witness, inexact_warning, requests_matching, rule_text, with_field

# routelang moves on after these (docs/gateway.md); Portkey, without a list, after any non-2xx answer.
FALLBACK_STATUS_CODES = [408, 409, 429, 500, 502, 503, 504]
PROBES = ("", "undefined", "zz", 0, 1.5)   # field values tried for a witness when a miss names none


@dataclass
class Miss:
    """A leaf Portkey cannot state exactly: what was written, why, and a value of `field` to try."""

    written: str
    why: str
    field: str | None = None
    value: Any = None


def _key(field: str) -> str | None:
    """The Portkey context key for a routelang field, when it reads the same value."""
    parts = field.split(".")
    if len(parts) == 2 and parts[0] == "metadata":
        return field
    if field == "request.path":
        return "url.pathname"
    if field == "request.model":
        return "params.model"
    if len(parts) == 1 and parts[0] not in ("metadata", "headers", "request"):
        return f"params.{field}"
    return None


def _matches_undefined(pattern: str) -> bool:
    try:
        return re.search(pattern, "undefined") is not None
    except re.error:
        return False


class _Lowering:
    def __init__(self):
        self.notes: list[Diagnostic] = []

    # ---- conditions -------------------------------------------------------------------

    def query(self, cond, misses: list[Miss], negated: bool = False) -> dict:
        if isinstance(cond, ir.Not):
            return self.query(cond.item, misses, not negated)
        if isinstance(cond, (ir.AllOf, ir.AnyOf)):
            joint = "$and" if isinstance(cond, ir.AllOf) != negated else "$or"
            return {joint: [self.query(c, misses, negated) for c in cond.items]}
        return self.leaf(cond, misses, negated)

    def leaf(self, c: ir.Compare, misses: list[Miss], negated: bool) -> dict:
        entry = operators.get(c.operator)
        written = f"{'not ' if negated else ''}{c.field} {entry.text}" + ("" if entry.unary else f" {json.dumps(c.value)}")
        key = _key(c.field)
        if key is None:
            key = f"params.{c.field}"
            misses.append(Miss(written, f"Portkey reads metadata.K, params.K (the body's fields, two levels "
                                        f"deep) and url.pathname; `{c.field}` is none of them", c.field))
        op, value = c.operator, c.value
        exact_ops = {"equals": ("$eq", "$ne"), "not_equals": ("$ne", "$eq"), "in": ("$in", "$nin"),
                     "not_in": ("$nin", "$in")}
        if op in exact_ops:
            return {key: {exact_ops[op][negated]: value}}
        numeric = {"greater_than": ("$gt", "$lte"), "greater_or_equal": ("$gte", "$lt"),
                   "less_than": ("$lt", "$gte"), "less_or_equal": ("$lte", "$gt")}
        if op in numeric:
            if negated:
                misses.append(Miss(written, "a negated comparison also holds where the field is missing or not "
                                            "a number; Portkey's opposite comparison does not", c.field, None))
            return {key: {numeric[op][negated]: value}}
        pattern = {"regex": str(value), "starts_with": "^" + re.escape(str(value)),
                   "ends_with": re.escape(str(value)) + "$", "contains": re.escape(str(value))}.get(op)
        if pattern is not None:
            if _matches_undefined(pattern):
                misses.append(Miss(written, "Portkey tests a missing key as the text `undefined`, which this "
                                            "pattern matches", c.field, None))
            if negated:
                pattern = f"^(?![\\s\\S]*(?:{pattern}))"
            return {key: {"$regex": pattern}}
        # exists / not_exists: no operator; a missing key reads `undefined` in Portkey.
        present = (op == "exists") != negated
        misses.append(Miss(written, "Portkey has no `exists`; written as a pattern on the text Portkey reads "
                                    "for a missing key (`undefined`)", c.field, "undefined"))
        return {key: {"$regex": "^(?!undefined$)" if present else "^undefined$"}}

    # ---- strategies ---------------------------------------------------------------------

    def target(self, t: ir.Target, rule: ir.Rule) -> dict:
        node: dict[str, Any] = {"provider": t.provider, "override_params": {"model": t.model_name},
                                "custom_host": t.endpoint}
        if t.retry_count:
            node["retry"] = {"attempts": t.retry_count}
        if t.timeout_ms:
            node["request_timeout"] = t.timeout_ms
        for header, value in (t.headers or {}).items():
            if header.lower() == "authorization" and value.startswith("Bearer "):
                node["api_key"] = value[len("Bearer "):]
            elif header.lower() in ("x-api-key", "api-key"):
                node["api_key"] = value
            else:
                self.note(rule, f"target `{t.name or t.model_name}`: header `{header}` has no place in a Portkey "
                                f"target; left out")
        for setting, what in (("circuit_breaker", "circuit breaker"), ("health_check", "health check"),
                              ("cost_per_1k_tokens", "cost")):
            if getattr(t, setting) is not None:
                self.note(rule, f"target `{t.name or t.model_name}`: Portkey has no {what}; left out")
        return node

    def member(self, m, rule: ir.Rule, problems: list[str]) -> dict:
        return self.target(m, rule) if isinstance(m, ir.Target) else self.strategy(m, rule, problems)

    def strategy(self, s, rule: ir.Rule, problems: list[str]) -> dict:
        if isinstance(s, ir.Single):
            return self.target(s.target, rule)
        if isinstance(s, ir.Shadow):
            self.note(rule, "Portkey does not mirror requests: the shadow target is left out")
            return self.target(s.primary, rule)
        if isinstance(s, ir.Split):
            if s.sticky_by is not None:
                problems.append(f"the split is sticky by `{s.sticky_by}`; Portkey's loadbalance draws anew for "
                                f"every request, so one {s.sticky_by} reaches several arms")
            targets = []
            for arm in s.arms:
                node = self.member(arm.strategy if isinstance(arm, ir.NestedArm) else arm, rule, problems)
                targets.append(dict(node, weight=arm.weight))
            return {"strategy": {"mode": "loadbalance"}, "targets": targets}
        if isinstance(s, ir.Fallback):
            return {"strategy": {"mode": "fallback", "on_status_codes": FALLBACK_STATUS_CODES},
                    "targets": [self.member(m, rule, problems) for m in s.candidates]}
        problems.append(f"Portkey has no `{s.kind}`; written as a loadbalance with equal weights, which picks "
                        f"at random instead")
        return {"strategy": {"mode": "loadbalance"}, "targets": [self.target(t, rule) for t in s.candidates]}

    def note(self, rule: ir.Rule, message: str) -> None:
        self.notes.append(Diagnostic(PEER_APPROXIMATION, f"rule `{rule.name}`: {message}", rule.span,
                                     rule=rule.name))


def lower(router: ir.Router, exact: bool = False) -> tuple[dict, list[Diagnostic]]:
    """The Portkey config for `router`, and notes on what Portkey does differently;
    with `exact` (`compile --target portkey --exact`) the RL911 warnings are errors."""
    low = _Lowering()
    order = router.evaluation_order()
    conditions, targets, default = [], [], None
    inexact: list[tuple[ir.Rule, list[Miss], list[str]]] = []
    for rule in order:
        problems: list[str] = []
        node = dict(low.strategy(rule.strategy, rule, problems), name=rule.name)
        misses: list[Miss] = []
        if rule.when is not None:
            conditions.append({"query": low.query(rule.when, misses), "then": rule.name})
        targets.append(node)
        if misses or problems:
            inexact.append((rule, misses, problems))
        if rule.when is None:
            default = rule.name
            for later in order[order.index(rule) + 1:]:
                low.note(later, f"never reached: rule `{rule.name}` before it has no condition; left out")
            break
    if not conditions and targets:
        config = {k: v for k, v in targets[0].items() if k != "name"}
    else:
        strategy: dict[str, Any] = {"mode": "conditional", "conditions": conditions}
        if default is not None:
            strategy["default"] = default
        config = {"strategy": strategy, "targets": targets}
    notes = low.notes + _inexact_warnings(router, config, inexact, exact)
    return config, notes


def portkey_decider(config: dict) -> Callable[[dict], str | None]:
    """request -> the rule (by the name routelang gave its target) a conditional
    config picks in Portkey, decided by the config as `routelang import` reads it."""
    from ..compiler import compile_text
    from ..importers.portkey import import_portkey
    from ..loader import make_router, plan_from_compiled

    strategy = config["strategy"]
    text, _ = import_portkey(config, "portkey.json")
    router = make_router(plan_from_compiled(compile_text(text, "<portkey>")))

    def choice(request: dict) -> str | None:
        rule = router.route(request).matched_rule
        if rule is None:
            return None
        if rule.name == "default":
            return strategy["default"]
        return strategy["conditions"][int(rule.name.rsplit("_", 1)[1])]["then"]

    return choice


def _inexact_warnings(router: ir.Router, config: dict, inexact: list, exact: bool) -> list[Diagnostic]:
    order = router.evaluation_order()
    portkey_choice = portkey_decider(config) if any(misses for _, misses, _ in inexact) else None
    out = []
    for rule, misses, problems in inexact:
        message = f"rule `{rule.name}`: " + "; ".join([f"`{m.written}`: {m.why}" for m in misses] + problems)
        witness = None
        if misses:
            bases = requests_matching(order, rule) + [{}]
            candidates = list(bases)
            for miss in misses:
                values = [miss.value] if miss.value is not None else list(PROBES)
                candidates += [with_field(b, miss.field, v) for b in bases for v in [*values, None]]
            found = find_witness(router, rule, candidates, portkey_choice)
            if found is None:
                message += " (no request tried showed the difference)"
            else:
                witness, ours, theirs = found
                message += f"; a request routelang routes by {rule_text(ours)} goes to {rule_text(theirs)} in Portkey"
        out.append(inexact_warning("Portkey", rule, message, witness, exact))
    return out
