"""Parity with Mixtrain's `ConfigurationLinter` (its warnings and suggestions),
one finding per rule instead of one sentence per config."""

from __future__ import annotations

from ..diagnostics import Diagnostic, Related, Severity
from ..vocab import strategies
from .registry import lint_rule

W, N = Severity.WARNING, Severity.NOTE

EQUAL_PRIORITY = lint_rule(
    "RL301", "equal-priority", N, "enabled rules share a priority",
    what="Two enabled rules have the same priority.",
    why="Between them, only their order in the file decides which one a request gets; Mixtrain calls this "
        "unpredictable. `overlapping-rules` reports the cases where it actually matters, with a request.",
    example='rule a priority 10 { when tier == "pro" route x }\nrule b priority 10 { route y }',
    fix="Give each rule its own priority, highest for the most specific rule.",
)
MULTIPLE_CATCH_ALL = lint_rule(
    "RL302", "multiple-catch-all", W, "more than one enabled rule has no condition",
    what="More than one enabled rule has no `when`.",
    why="Only the first of them (by priority, then file order) can ever match.",
    example="rule a priority 1 { route x }\nrule b priority 0 { route y }",
    fix="Keep one catch-all rule, at the lowest priority.",
)
DISABLED_RULE = lint_rule(
    "RL303", "disabled-rule", N, "a rule is disabled",
    what="A rule is marked `disabled`.",
    why="It is never evaluated; a disabled rule left in a file is often forgotten.",
    example='rule old priority 5 disabled { when tier == "beta" route x }',
    fix="Delete the rule, or enable it.",
)
MISSING_DESCRIPTION = lint_rule(
    "RL304", "missing-description", N, "a rule has no description",
    what="A rule has no description string.",
    why="Descriptions travel into the compiled config and `explain` output; they say why a rule exists.",
    example="rule premium priority 10 { route x }",
    fix='Add one after the priority: `rule premium priority 10 "Paying users get the big model" { ... }`.',
)
NO_FALLBACK_RULE = lint_rule(
    "RL305", "no-fallback-rule", N, "no rule uses the fallback strategy",
    what="No rule routes with `fallback A, B`.",
    why="Without a fallback chain, one unhealthy endpoint fails every request routed to it.",
    example="rule all priority 0 { route x }",
    fix="Route at least the catch-all rule with `fallback primary, backup`.",
)
NO_CATCH_ALL_RULE = lint_rule(
    "RL306", "no-catch-all-rule", N, "no enabled rule is unconditional",
    what="Every enabled rule has a `when`.",
    why="Mixtrain suggests a catch-all rule at the lowest priority so no request is left unrouted. "
        "`missing-catch-all` checks whether some request really is left over, and shows one.",
    example='rule pro priority 10 { when tier == "pro" route x }',
    fix="Add `rule default priority 0 { fallback A, B }`.",
)


@EQUAL_PRIORITY.check
def equal_priority(ctx):
    first = {}
    for rule in ctx.router.rules:
        if not rule.enabled:
            continue
        if rule.priority in first:
            earlier = first[rule.priority]
            yield Diagnostic(EQUAL_PRIORITY.code, f"rule `{rule.name}` has the same priority ({rule.priority}) "
                             f"as rule `{earlier.name}`; file order decides between them", ctx.rule_span(rule),
                             help="give each rule its own priority", rule=rule.name,
                             related=[Related(ctx.rule_span(earlier), f"rule `{earlier.name}`")])
        else:
            first[rule.priority] = rule


@MULTIPLE_CATCH_ALL.check
def multiple_catch_all(ctx):
    catch_all = [r for r in ctx.router.evaluation_order() if r.when is None]
    for rule in catch_all[1:]:
        yield Diagnostic(MULTIPLE_CATCH_ALL.code, f"rule `{rule.name}` has no condition, like rule "
                         f"`{catch_all[0].name}` before it, so it never matches", ctx.rule_span(rule),
                         help="keep one catch-all rule, at the lowest priority", rule=rule.name,
                         related=[Related(ctx.rule_span(catch_all[0]), f"catch-all rule `{catch_all[0].name}`")])


@DISABLED_RULE.check
def disabled_rule(ctx):
    for rule in ctx.router.rules:
        if not rule.enabled:
            yield Diagnostic(DISABLED_RULE.code, f"rule `{rule.name}` is disabled and is never evaluated",
                             ctx.rule_span(rule), help="delete it, or enable it", rule=rule.name)


@MISSING_DESCRIPTION.check
def missing_description(ctx):
    for rule in ctx.router.rules:
        if not rule.description:
            yield Diagnostic(MISSING_DESCRIPTION.code, f"rule `{rule.name}` has no description", ctx.rule_span(rule),
                             help=f'say why it exists: `rule {rule.name} priority {rule.priority} "..." {{`',
                             rule=rule.name)


@NO_FALLBACK_RULE.check
def no_fallback_rule(ctx):
    if not any(strategies.strategy(s.kind).falls_back for r in ctx.router.rules for s in r.strategy.walk()):
        yield Diagnostic(NO_FALLBACK_RULE.code, "no rule routes with a fallback chain", ctx.router_span,
                         help="route the catch-all rule with `fallback primary, backup`")


@NO_CATCH_ALL_RULE.check
def no_catch_all_rule(ctx):
    if not any(r.when is None for r in ctx.router.rules if r.enabled):
        yield Diagnostic(NO_CATCH_ALL_RULE.code, "no enabled rule is unconditional", ctx.router_span,
                         help="add a lowest-priority rule without `when`")
