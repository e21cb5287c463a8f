"""Strategies that run but do less than they seem to."""

from __future__ import annotations

from ..diagnostics import Diagnostic, Related, Severity
from ..vocab import strategies
from .registry import lint_rule

W = Severity.WARNING
HYBRID_TOLERANCE = 0.01

SINGLE_TARGET_FALLBACK = lint_rule(
    "RL330", "single-target-fallback", W, "a fallback chain has one target",
    what="`fallback` with a single target.",
    why="There is nothing to fall back to: it is `route T` that looks resilient.",
    example="rule r priority 0 { fallback primary }",
    fix="Add a backup target: `fallback primary, backup`.",
)
SINGLE_PROVIDER_FALLBACK = lint_rule(
    "RL331", "single-provider-fallback", W, "every target of a fallback chain is on one provider",
    what="A fallback chain whose targets all use the same provider.",
    why="A provider outage takes out the whole chain at once.",
    example='rule r priority 0 { fallback modal("a", "https://a.modal.run"), modal("b", "https://b.modal.run") }',
    fix="Put a target on another provider in the chain.",
)
SPLIT_SINGLE_TARGET = lint_rule(
    "RL332", "split-single-target", W, "a split sends 100% to one target",
    what="A `split` with one entry, whose weight is therefore 100% (1.0).",
    why="Nothing is split; the rule reads like an experiment that is not running.",
    example="rule r priority 0 { split { 100% a } }",
    fix="Write `route a`, or add the other arm of the experiment.",
)
HYBRID_WEIGHT_SUM = lint_rule(
    "RL333", "hybrid-weight-sum", W, "hybrid weights do not add up to 1.0",
    what="`hybrid(cost .., latency .., reliability ..)` whose weights do not add up to 1.0 (within 0.01). "
         "A weight that is not written is 0: `hybrid(cost 0.4, latency 0.4)` ignores reliability.",
    why="Only the ratios matter, but a sum other than 1.0 usually means a typo in one weight, or a "
        "factor left out by accident.",
    example="rule r priority 0 { hybrid(cost 0.5, latency 0.5, reliability 0.5) a, b }",
    fix="Scale the weights so they add up to 1.0.",
)


def _nodes(ctx, lint_name: str | None = None):
    """(rule, strategy, its definition) for every strategy, nested ones included;
    with `lint_name`, only those whose lone member that lint rule flags."""
    for rule in ctx.router.rules:
        for s in rule.strategy.walk():
            defn = strategies.strategy(s.kind)
            if lint_name is None or defn.lint_single_member == lint_name:
                yield rule, s, defn


@SINGLE_TARGET_FALLBACK.check
def single_target_fallback(ctx):
    for rule, s, _ in _nodes(ctx, SINGLE_TARGET_FALLBACK.name):
        if len(s.members) == 1:
            yield Diagnostic(SINGLE_TARGET_FALLBACK.code, "this fallback chain has only one target", s.span,
                             rule=rule.name, help="add a backup target, or write `route`")


@SINGLE_PROVIDER_FALLBACK.check
def single_provider_fallback(ctx):
    for rule, s, defn in _nodes(ctx):
        providers = {t.provider for t in s.targets}
        if defn.falls_back and len(s.targets) > 1 and len(providers) == 1:
            yield Diagnostic(SINGLE_PROVIDER_FALLBACK.code,
                             f"every target of this fallback chain is on provider `{providers.pop()}`", s.span,
                             rule=rule.name, help="put a target on another provider in the chain")


@SPLIT_SINGLE_TARGET.check
def split_single_target(ctx):
    for rule, s, _ in _nodes(ctx, SPLIT_SINGLE_TARGET.name):
        if len(s.members) == 1:
            yield Diagnostic(SPLIT_SINGLE_TARGET.code, "this split has one entry, which gets 100% of requests",
                             s.span, rule=rule.name, help="write `route TARGET` instead")


@HYBRID_WEIGHT_SUM.check
def hybrid_weight_sum(ctx):
    for rule, s, defn in _nodes(ctx):
        if not defn.score_factors:
            continue
        weights = {f: getattr(s, f"{f}_weight") for f in defn.score_factors}
        total = sum(w or 0.0 for w in weights.values())
        if total <= 0 or abs(total - 1.0) <= HYBRID_TOLERANCE:
            continue
        message = f"{defn.keyword} weights add up to {total:g}, not 1.0"
        fix = "scale the weights so they add up to 1.0"
        unwritten = [f for f, w in weights.items() if w is None]
        if unwritten:
            # `hybrid(cost .4, latency .4)` scores reliability with weight 0, which is easy to miss: say so.
            message += f"; {' and '.join(f'`{f}`' for f in unwritten)}, not written, weigh{'s' if len(unwritten) == 1 else ''} 0"
            if len(unwritten) == 1 and total < 1.0:
                fix = f"write `{unwritten[0]} {1.0 - total:.4g}` to make them add up to 1.0, or scale the others"
        yield Diagnostic(HYBRID_WEIGHT_SUM.code, message, s.span, rule=rule.name, help=fix)


DUPLICATE_LABEL = lint_rule(
    "RL334", "duplicate-label", W, "two split entries have the same label",
    what="A `split` in which two entries carry the same label.",
    why="Labels name the arms of an experiment in results and `expect target LABEL`; with two arms of one "
        "name, a result or a test cannot tell them apart. (Mixtrain accepts it, so routing is unaffected.)",
    example='rule r priority 0 { split { 50% { provider "x" model "a" endpoint "https://a" label "v1" }  '
            '50% { provider "x" model "b" endpoint "https://b" label "v1" } } }',
    fix="Give each entry its own label.",
)


@DUPLICATE_LABEL.check
def duplicate_label(ctx):
    for rule, s, _ in _nodes(ctx):
        if s.kind != "split":
            continue
        first: dict[str, object] = {}
        for arm in s.arms:
            if not arm.label:
                continue
            if arm.label in first:
                yield Diagnostic(DUPLICATE_LABEL.code, f"label `{arm.label}` is used by two split entries",
                                 arm.spans.get("label", s.span), rule=rule.name,
                                 related=[Related(first[arm.label], "first used here")],
                                 help="give each entry its own label")
            else:
                first[arm.label] = arm.spans.get("label", s.span)
