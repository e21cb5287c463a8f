"""Errors over the IR: types, values, bounds, the schema.

The line between an error here and a lint warning: an error is something the
Mixtrain validator rejects or routelang cannot run (`user.credits > "ten"`,
a timeout under 100 ms, split weights summing to 90%). Something that runs
but is surely a mistake (`contains 5`, which never matches) is a lint finding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import envvars, expectations, ir
from .diagnostics import (
    BAD_TEST,
    EMPTY_NAME,
    HYBRID_WEIGHTS,
    INCOMPLETE_TARGET,
    INVALID_ENDPOINT,
    INVALID_REGEX,
    INVALID_SETTING,
    NEGATIVE_PRIORITY,
    NOT_IN_ENUM,
    NULL_IN_CONDITION,
    RETRIES_OUT_OF_RANGE,
    SHADOW_TARGETS,
    SPLIT_WEIGHTS,
    TIMEOUT_TOO_SHORT,
    TYPE_MISMATCH,
    UNKNOWN_FIELD,
    WEIGHT_OUT_OF_RANGE,
    Diagnostic,
)
from .source import Span
from .vocab import operators, strategies
from .vocab import settings as target_settings

if TYPE_CHECKING:  # the checker reads what the resolver built; it does not resolve
    from .resolve import UnbuiltRule

# How messages write each operator: its canonical .route spelling.
OPERATOR_TEXT = {op.name: op.text for op in operators.TABLE}
NUMERIC_OPERATORS = tuple(op.name for op in operators.TABLE if op.operand == "number")
TEXT_OPERATORS = tuple(op.name for op in operators.TABLE if op.operand in ("text", "pattern"))
# Bounds of target settings (vocab/settings.py).
_SETTING = target_settings.BY_SURFACE
_BREAKER = {s.surface: s for s in _SETTING["circuit_breaker"].block}
_HEALTH = {s.surface: s for s in _SETTING["health_check"].block}
SPLIT_TOLERANCE = 0.001  # Mixtrain's tolerance for weights summing to 1.0


def is_numeric(value: Any) -> bool:
    """Would Mixtrain's `float(value)` succeed? (bools and numeric strings do)."""
    if isinstance(value, (list, dict)) or value is None:
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class Checker:
    def __init__(self, router: ir.Router):
        self.router = router
        self.diagnostics: list[Diagnostic] = []
        self.schema = {f.path: f for f in router.schema_fields}
        self.schema_prefixes = {p.rsplit(".", i)[0] for p in self.schema for i in range(1, p.count(".") + 1)}
        self._seen: set = set()

    def error(self, code, message, span: Span, help=None, rule=None):
        key = (code.code, span.file, span.line, span.column, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.diagnostics.append(Diagnostic(code, message, span, help=help, rule=rule))

    def run(self, unbuilt_rules: Iterable[UnbuiltRule] = ()) -> list[Diagnostic]:
        r = self.router
        if not r.name.strip():
            self.error(EMPTY_NAME, "the router's name is empty", r.span)
        for rule in r.rules:
            self.rule(rule)
        for unbuilt in unbuilt_rules:
            self.rule_parts(unbuilt)
        self.tests()
        return self.diagnostics

    # ---- rules -------------------------------------------------------------------

    def rule(self, rule: ir.Rule) -> None:
        name = rule.name
        if not name.strip():
            self.error(EMPTY_NAME, "a rule's name is empty", rule.span, rule=name)
        if rule.priority < 0:
            self.error(NEGATIVE_PRIORITY, f"priority {rule.priority} is negative", rule.spans.get("priority", rule.span),
                       help="Mixtrain rejects negative priorities; use 0 for the lowest", rule=name)
        for cmp in ir.walk_conditions(rule.when):
            self.compare(cmp, name)
        self.strategy(rule.strategy, name)

    def rule_parts(self, rule: UnbuiltRule) -> None:
        """What resolved of a rule the resolver could not build, checked as in a whole rule."""
        for part in rule.parts:
            if isinstance(part, ir.Compare):
                self.compare(part, rule.name)
            elif isinstance(part, ir.Target):
                self.target(part, rule.name, split=part.weight is not None)
            else:
                self.strategy(part.strategy if isinstance(part, ir.NestedArm) else part, rule.name)

    def compare(self, cmp: ir.Compare, rule: str | None) -> None:
        op, value = cmp.operator, cmp.value
        entry = operators.get(op)
        value_span = cmp.spans.get("value", cmp.span)
        field_span = cmp.spans.get("field", cmp.span)
        text = entry.text
        # Mixtrain's validator rejects a blank field and `..`; an empty first or last
        # segment it accepts, so that is a lint warning (empty-path-segment).
        if not cmp.field.strip():
            self.error(EMPTY_NAME, "the field path is empty", field_span, rule=rule)
        elif ".." in cmp.field:
            self.error(EMPTY_NAME, f"field path `{cmp.field}` has an empty segment between two others", field_span,
                       help="Mixtrain's validator rejects `..` in a field path", rule=rule)
        if not entry.unary and value is None:
            alt = "not exists" if op == "equals" else "exists"
            self.error(NULL_IN_CONDITION, f"`{text} null` compares with null", value_span,
                       help=f"a missing field reads as null: write `{cmp.field} {alt}`", rule=rule)
            return
        if entry.operand == "number" and not is_numeric(value):
            self.error(TYPE_MISMATCH, f"`{text}` compares numbers, but {_describe(value)} is not a number",
                       value_span, help=f"write a number, e.g. `{cmp.field} {text} 10`", rule=rule)
        if entry.operand == "pattern":
            try:
                re.compile(str(value))
            except re.error as exc:
                self.error(INVALID_REGEX, f"invalid regular expression: {exc.msg}", value_span,
                           help="regexes use Python's `re` syntax; raw strings r\"...\" keep backslashes", rule=rule)
        if entry.operand == "text" and entry.strict_operand and not isinstance(value, str):
            self.error(TYPE_MISMATCH, f"`{text}` takes a string, not {_describe(value)}", value_span, rule=rule)
        if self.schema:
            self.schema_check(cmp, rule)

    def schema_check(self, cmp: ir.Compare, rule: str | None) -> None:
        field_span = cmp.spans.get("field", cmp.span)
        value_span = cmp.spans.get("value", cmp.span)
        decl = self.schema.get(cmp.field)
        if decl is None:
            if cmp.field in self.schema_prefixes:
                return  # an object that declared fields live in
            close = _closest(cmp.field, list(self.schema))
            self.error(UNKNOWN_FIELD, f"field `{cmp.field}` is not declared in the schema", field_span,
                       help=f"did you mean `{close}`?" if close else "declare it in the `schema { ... }` block",
                       rule=rule)
            return
        op, value = cmp.operator, cmp.value
        if op in operators.UNARY or decl.type == "any":
            return
        values = value if operators.get(op).operand == "list" and isinstance(value, list) else [value]
        if op in NUMERIC_OPERATORS:
            if decl.type not in ("number", "integer", "any") and not (
                decl.type == "enum" and all(is_numeric(v) for v in decl.values)
            ):
                self.error(TYPE_MISMATCH, f"`{cmp.field}` is declared {decl.type}, but `{OPERATOR_TEXT[op]}` compares numbers",
                           cmp.span, rule=rule)
            return
        if op in TEXT_OPERATORS:
            if decl.type in ("number", "integer", "bool"):
                self.error(TYPE_MISMATCH, f"`{cmp.field}` is declared {decl.type}; `{OPERATOR_TEXT[op]}` matches text",
                           cmp.span, rule=rule)
            return
        for v in values:
            if decl.type == "enum":
                if v not in decl.values:
                    allowed = ", ".join(_literal(x) for x in decl.values)
                    self.error(NOT_IN_ENUM, f"{_literal(v)} is not a declared value of `{cmp.field}`", value_span,
                               help=f"`{cmp.field}` is one of: {allowed}", rule=rule)
            elif not _fits(decl.type, v):
                self.error(TYPE_MISMATCH, f"`{cmp.field}` is declared {decl.type}, but {_describe(v)} is not",
                           value_span, rule=rule)

    # ---- strategies and targets --------------------------------------------------

    def strategy(self, root: ir.Strategy, name: str) -> None:
        for strat in root.walk():
            defn = strategies.strategy(strat.kind)
            for member in strat.members:
                if isinstance(member, ir.Target):
                    self.target(member, name, split=strat.kind == "split")
            count = len(strat.members)
            if count < defn.min_targets or (defn.max_targets is not None and count > defn.max_targets):
                self.error(SHADOW_TARGETS if defn.mirrors else INVALID_SETTING,
                           f"{defn.keyword} takes {_bounds(defn)}, got {count}", strat.span,
                           help=f"write `{defn.syntax}`", rule=name)
            if strat.kind == "split":
                self.split(strat, name)
            for factor in defn.score_factors:
                w = getattr(strat, f"{factor}_weight")
                if w is not None and not (0.0 <= w <= 1.0):
                    self.error(HYBRID_WEIGHTS, f"{defn.keyword} {factor} weight {w:g} is outside 0..1",
                               strat.spans.get(f"{factor}_weight", strat.span), rule=name)
            if defn.score_factors and not any(getattr(strat, f"{f}_weight") for f in defn.score_factors):
                self.error(HYBRID_WEIGHTS, f"{defn.keyword} needs at least one positive weight", strat.span,
                           help=f"e.g. {defn.syntax}", rule=name)

    def split(self, strat: ir.Split, name: str) -> None:
        total = sum(arm.weight or 0.0 for arm in strat.arms)
        if abs(total - 1.0) > SPLIT_TOLERANCE:
            self.error(SPLIT_WEIGHTS, f"split weights add up to {_percent(total)}, not 100%", strat.span,
                       help="make the shares add up to 100% (or to 1.0 as fractions)", rule=name)
        elif len(strat.arms) > 1 and any(arm.weight == 1.0 for arm in strat.arms):
            self.error(SPLIT_WEIGHTS, "a 100% share leaves nothing for the other split entries", strat.span,
                       help="route to one target with `route T` instead", rule=name)
        for arm in strat.arms:
            if isinstance(arm, ir.NestedArm) and not (0.0 <= arm.weight <= 1.0):
                self.error(WEIGHT_OUT_OF_RANGE, f"weight {_percent(arm.weight)} is outside 0..1 (0%..100%)",
                           arm.spans.get("weight", arm.span), rule=name)
        if strat.sticky_by is not None and self.schema and strat.sticky_by not in self.schema:
            self.error(UNKNOWN_FIELD, f"sticky field `{strat.sticky_by}` is not declared in the schema",
                       strat.spans.get("sticky_by", strat.span), rule=name)

    def target(self, t: ir.Target, rule: str, split: bool) -> None:
        spans = t.spans
        for field, text in (("provider", t.provider), ("model", t.model_name), ("endpoint", t.endpoint)):
            if not text.strip():
                self.error(INCOMPLETE_TARGET, f"the target's {field} is empty", spans.get(field, t.span), rule=rule)
        endpoint = envvars.with_defaults(t.endpoint)
        if endpoint is None:  # filled in at run time: only the text before the first reference is known
            endpoint = t.endpoint[:envvars.ENV_REF.search(t.endpoint).start()]
            if any(scheme.startswith(endpoint) for scheme in ("http://", "https://")):
                endpoint = "https://"
        if t.endpoint.strip() and not endpoint.startswith(("http://", "https://")):
            self.error(INVALID_ENDPOINT, f"endpoint `{t.endpoint}` is not an http(s) URL",
                       spans.get("endpoint", t.span), help="endpoints start with https:// or http://", rule=rule)
        timeout, retries = _SETTING["timeout"], _SETTING["retries"]
        if t.timeout_ms is not None and t.timeout_ms < timeout.minimum:
            self.error(TIMEOUT_TOO_SHORT, f"timeout {t.timeout_ms}ms is under {timeout.minimum}ms",
                       spans.get("timeout", t.span), help=f"Mixtrain requires at least {timeout.minimum}ms", rule=rule)
        if t.retry_count is not None and not (retries.minimum <= t.retry_count <= retries.maximum):
            self.error(RETRIES_OUT_OF_RANGE, f"{t.retry_count} retries is outside {retries.minimum}..{retries.maximum}",
                       spans.get("retries", t.span), rule=rule)
        weight = _SETTING["weight"]
        if t.weight is not None and not (weight.minimum <= t.weight <= weight.maximum) or (t.weight is not None and math.isnan(t.weight)):
            what = _percent(t.weight) if split else f"{t.weight:g}"
            self.error(WEIGHT_OUT_OF_RANGE, f"weight {what} is outside 0..1 (0%..100%)",
                       spans.get("weight", t.span), rule=rule)
        if t.cost_per_1k_tokens is not None and t.cost_per_1k_tokens < _SETTING["cost"].minimum:
            self.error(INVALID_SETTING, "cost per 1k tokens is negative", spans.get("cost", t.span), rule=rule)
        cb = t.circuit_breaker
        if cb is not None:
            if cb.failure_threshold < _BREAKER["failures"].minimum:
                self.error(INVALID_SETTING, "a circuit breaker needs `failures` of at least 1",
                           spans.get("circuit_breaker.failures", t.span), rule=rule)
            if cb.success_threshold < _BREAKER["successes"].minimum:
                self.error(INVALID_SETTING, "a circuit breaker needs `successes` of at least 1",
                           spans.get("circuit_breaker.successes", t.span), rule=rule)
            if cb.cooldown_ms < _BREAKER["cooldown"].minimum:
                self.error(INVALID_SETTING, "a circuit breaker's cooldown must be positive",
                           spans.get("circuit_breaker.cooldown", t.span), rule=rule)
        hc = t.health_check
        if hc is not None:
            if hc.interval_ms < _HEALTH["interval"].minimum:
                self.error(INVALID_SETTING, "health checks run at most once a second",
                           spans.get("health_check.interval", t.span), rule=rule)
            if hc.timeout_ms is not None and hc.timeout_ms < _HEALTH["timeout"].minimum:
                self.error(INVALID_SETTING, f"a health probe's timeout of {hc.timeout_ms}ms fails every probe",
                           spans.get("health_check.timeout", t.span), rule=rule,
                           help="give the probe time to be answered (`timeout 2s`), or leave it out for the default")
            if not hc.path.startswith("/"):
                self.error(INVALID_SETTING, f"health-check path `{hc.path}` must start with `/`",
                           spans.get("health_check.path", t.span), rule=rule)

    # ---- tests -------------------------------------------------------------------

    def tests(self) -> None:
        names = set()
        for rule in self.router.rules:
            for t in rule.strategy.targets:
                names.update(x for x in (t.name, t.label, t.model_name) if x)
        for test in self.router.tests:
            if not isinstance(test.request, dict):
                self.error(BAD_TEST, f"test `{test.name}`: the request must be an object", test.span)
                continue
            e = test.expect
            written = [("target", e.target), ("shadow", e.shadow)] + [
                (f"{kind}.{i}", name) for kind in ("target_in", "targets") for i, name in enumerate(getattr(e, kind) or ())]
            for where, target in written:
                if target is not None and target not in names:
                    close = _closest(target, names)
                    self.error(BAD_TEST, f"test `{test.name}` expects target `{target}`, which no rule routes to",
                               e.spans.get(where, e.span), help=f"did you mean `{close}`?" if close else None)
            if e.names_targets():
                self.deterministic(test)

    def deterministic(self, test: ir.Test) -> None:
        """A target expectation must pass or fail the same way on every run."""
        rule = expectations.matched_rule(self.router, test.request)
        if rule is None or test.expect.rule not in (None, rule.name):
            return  # fails the same way every run
        varying = expectations.varying_selections(rule, test.request, test.expect)
        if varying is None or not expectations.flaky_expectation(test.expect, varying):
            return
        e = test.expect
        kind = next((k for k in ("target", "target_in", "targets", "shadow") if getattr(e, k) is not None
                     and expectations.flaky_expectation(_only(e, k), varying)), "target")
        choices = list(dict.fromkeys(sel[0].shown for sel in varying.selections))
        remedy = f"expect every target it may pick: `expect target in [{', '.join(choices)}]`"
        if varying.remedy:
            remedy += f", or {varying.remedy}"
        self.error(BAD_TEST, f"test `{test.name}` would pass on some runs and fail on others: {varying.why}",
                   e.spans.get(kind, e.span), help=remedy, rule=rule.name)


def _only(expect: ir.Expectation, kind: str) -> ir.Expectation:
    """The expectation with only its `kind` part (to say which part is flaky)."""
    return ir.Expectation(**{kind: getattr(expect, kind)})


def _fits(type_name: str, value: Any) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "list":
        return isinstance(value, list)
    if type_name == "object":
        return isinstance(value, dict)
    return True


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "`null`"
    return f"`{value}`"


def _literal(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _bounds(defn: strategies.StrategyDef) -> str:
    low, high = defn.min_targets, defn.max_targets
    if low == high:
        return f"exactly {low} target{'s' if low != 1 else ''}"
    return f"at least {low} target{'s' if low != 1 else ''}" if high is None else f"{low} to {high} targets"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def _closest(name: str, candidates) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


def check(router: ir.Router, unbuilt_rules: Iterable[UnbuiltRule] = ()) -> list[Diagnostic]:
    """Every error of a resolved router, and of the parts of the rules the resolver could not build."""
    return Checker(router).run(unbuilt_rules)
