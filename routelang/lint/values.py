"""Conditions Mixtrain accepts (so the checker lets them through) but that
almost surely do not say what was meant."""

from __future__ import annotations

import json
import re
import warnings

from .. import ir
from ..analysis.sre import sre_constants, sre_parse
from ..check import NUMERIC_OPERATORS, OPERATOR_TEXT
from ..diagnostics import Diagnostic, Severity
from ..vocab import operators
from .context import part_span
from .registry import lint_rule

W = Severity.WARNING

NON_STRING_PATTERN = lint_rule(
    "RL320", "non-string-pattern", W, "a text operator is given a value that is not a string",
    what="`contains`, `not contains` or `=~` with a number, bool or list.",
    why="Mixtrain raises on `contains 5`, so the condition (and `not contains 5`, on a present field) never "
        "matches; `=~ 5` searches for the text `5`, which is rarely what was meant.",
    example="rule r priority 1 { when prompt contains 5 route x }",
    fix='Write the value as a string: `prompt contains "5"`.',
)
NUMERIC_STRING_THRESHOLD = lint_rule(
    "RL321", "numeric-string-threshold", W, "a number is compared with a string threshold",
    what='A numeric comparison whose threshold is a string that reads as a number (`credits > "10"`).',
    why="It works (both sides go through float()), but it reads as a text comparison and hides the intent.",
    example='rule r priority 1 { when credits > "10" route x }',
    fix="Write the number: `credits > 10`.",
)
EMPTY_LIST = lint_rule(
    "RL322", "empty-list", W, "`in []` never matches; `not in []` always does",
    what="A membership test against an empty list.",
    why="`in []` makes the condition always false and `not in []` always true: almost surely a list left empty "
        "by mistake.",
    example="rule r priority 1 { when region in [] route x }",
    fix="Fill in the list, or delete the condition.",
)
EMPTY_PATH_SEGMENT = lint_rule(
    "RL325", "empty-path-segment", W, "a field path starts or ends with an empty segment",
    what='A field path whose first or last segment is empty (`user.""`, as Mixtrain\'s `"user."`).',
    why='It reads the key `""`, which requests almost never have: usually a typo for the path without the dot. '
        "(Mixtrain accepts it; an empty segment between two others, `a..b`, it rejects.)",
    example='rule r priority 1 { when user."" == "x" route x }',
    fix="Delete the stray dot.",
)
REDOS_REGEX = lint_rule(
    "RL323", "redos-regex", W, "a regex has nested quantifiers (catastrophic backtracking)",
    what="A regular expression with a repeated group that itself contains a repetition, like `(a+)+`.",
    why="Python's regex engine backtracks exponentially on such patterns for some inputs; one crafted request "
        "can stall the router (ReDoS).",
    example='rule r priority 1 { when prompt =~ r"(a+)+$" route x }',
    fix="Remove the inner or outer quantifier, or anchor and bound the repetition (`a{1,50}`).",
)
AMBIGUOUS_REGEX = lint_rule(
    "RL326", "ambiguous-regex", W, "a regex that Python warns may change meaning",
    what="A regular expression Python compiles with a FutureWarning: a `[` inside a set (`[[a]`) or a doubled "
         "`--`, `&&`, `~~` or `||` inside one, which future versions may read as set operations.",
    why="The pattern matches one thing today and may match another after a Python upgrade, and every process "
        "that compiles it prints Python's warning.",
    example='rule r priority 1 { when prompt =~ "[[a]" route x }',
    fix="Escape the character inside the set (`[\\[a]`), or write the set another way.",
)
STICKY_KEY_CONDITION = lint_rule(
    "RL324", "sticky-key-condition", W, "a split is sticky by a field the rule pins to one value",
    what="A sticky split (`split sticky by F`) in a rule whose condition requires `F == v` (or `F in [v]`).",
    why="Every request that reaches the split has the same sticky key, so all of them land in the same bucket: "
        "the split never splits.",
    example='rule r priority 1 { when user.id == "u1" split sticky by user.id { 50% a  50% b } }',
    fix="Make the split sticky by another field, or drop the condition on the sticky key.",
)


@NON_STRING_PATTERN.check
def non_string_pattern(ctx):
    for rule in ctx.router.rules:
        for cmp in ir.walk_conditions(rule.when):
            entry = operators.get(cmp.operator)
            if entry.operand == "text" and not entry.strict_operand and not isinstance(cmp.value, str):
                yield Diagnostic(NON_STRING_PATTERN.code,
                                 f"`{OPERATOR_TEXT[cmp.operator]} {json.dumps(cmp.value)}` never matches: the value "
                                 f"is not a string", part_span(cmp, "value"), rule=rule.name,
                                 help=f"write it as a string: `{cmp.field} {OPERATOR_TEXT[cmp.operator]} "
                                      f"{json.dumps(str(cmp.value))}`")
            elif entry.operand == "pattern" and not isinstance(cmp.value, str):
                yield Diagnostic(NON_STRING_PATTERN.code,
                                 f"`{entry.text} {json.dumps(cmp.value)}` searches for the text {json.dumps(str(cmp.value))}",
                                 part_span(cmp, "value"), rule=rule.name,
                                 help="write the pattern as a string")


@NUMERIC_STRING_THRESHOLD.check
def numeric_string_threshold(ctx):
    for rule in ctx.router.rules:
        for cmp in ir.walk_conditions(rule.when):
            if cmp.operator in NUMERIC_OPERATORS and isinstance(cmp.value, str):
                yield Diagnostic(NUMERIC_STRING_THRESHOLD.code,
                                 f"`{OPERATOR_TEXT[cmp.operator]} {json.dumps(cmp.value)}` compares as the number "
                                 f"{float(cmp.value):g}", part_span(cmp, "value"), rule=rule.name,
                                 help=f"write the number: `{cmp.field} {OPERATOR_TEXT[cmp.operator]} "
                                      f"{float(cmp.value):g}`")


@EMPTY_LIST.check
def empty_list(ctx):
    for rule in ctx.router.rules:
        for cmp in ir.walk_conditions(rule.when):
            if operators.get(cmp.operator).operand == "list" and cmp.value == []:
                always = "always matches" if operators.apply(cmp.operator, None, []) else "never matches"
                yield Diagnostic(EMPTY_LIST.code, f"`{OPERATOR_TEXT[cmp.operator]} []` {always}",
                                 part_span(cmp, "value"), rule=rule.name,
                                 help="fill in the list, or delete the condition")


@EMPTY_PATH_SEGMENT.check
def empty_path_segment(ctx):
    for rule in ctx.router.rules:
        for cmp in ir.walk_conditions(rule.when):
            segments = cmp.field.split(".")
            if cmp.field.strip() and ".." not in cmp.field and "" in (segments[0], segments[-1]):
                yield Diagnostic(EMPTY_PATH_SEGMENT.code, f"field path `{cmp.field}` has an empty segment: it reads "
                                 f'the key ""', part_span(cmp, "field"), rule=rule.name, help="delete the stray dot")


def nested_quantifier(pattern: str) -> bool:
    """True when an unbounded repetition contains another repetition: the
    shape (`(a+)+`, `(\\w*)*`, `(x{2,})+`) that backtracks exponentially.
    Possessive repeats (`a++`) never backtrack, so they do not count."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError):
        return False
    return _walk(parsed, inside_repeat=False)


def _walk(items, inside_repeat: bool) -> bool:
    for op, arg in items:
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            _, high, sub = arg
            unbounded = high is sre_constants.MAXREPEAT
            if inside_repeat and (unbounded or high > 1):
                return True
            if _walk(sub, inside_repeat or unbounded):
                return True
            continue
        groups = [arg[-1]] if op is sre_constants.SUBPATTERN else arg[1] if op is sre_constants.BRANCH else []
        if any(_walk(group, inside_repeat) for group in groups):
            return True
    return False


@REDOS_REGEX.check
def redos_regex(ctx):
    for rule in ctx.router.rules:
        for cmp in ir.walk_conditions(rule.when):
            if cmp.operator == "regex" and isinstance(cmp.value, str) and nested_quantifier(cmp.value):
                yield Diagnostic(REDOS_REGEX.code,
                                 f"regex {json.dumps(cmp.value)} nests one repetition inside another and can take "
                                 f"exponential time on some inputs", part_span(cmp, "value"), rule=rule.name,
                                 help="remove one of the quantifiers, or bound it (`{1,50}`)")


def future_warning(pattern: str) -> str | None:
    """Python's FutureWarning for `pattern` ("Possible nested set at position 1"), or None."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FutureWarning)
        try:
            sre_parse.parse(pattern)   # (not re.compile: its cache answers a compiled pattern without warning)
        except (re.error, RecursionError):
            return None
    return next((str(w.message) for w in caught if issubclass(w.category, FutureWarning)), None)


@AMBIGUOUS_REGEX.check
def ambiguous_regex(ctx):
    for rule in ctx.router.rules:
        for cmp in ir.walk_conditions(rule.when):
            if cmp.operator == "regex" and isinstance(cmp.value, str) and (why := future_warning(cmp.value)):
                yield Diagnostic(AMBIGUOUS_REGEX.code, f"regex {json.dumps(cmp.value)}: {why[0].lower()}{why[1:]}"
                                 f" (Python may read it differently in a future version)", part_span(cmp, "value"),
                                 rule=rule.name, help="escape the character inside the set with a backslash")


@STICKY_KEY_CONDITION.check
def sticky_key_condition(ctx):
    for rule in ctx.router.rules:
        for split in rule.strategy.walk():
            yield from _pinned_sticky_key(rule, split)


def _pinned_sticky_key(rule, split):
    key = split.sticky_by if isinstance(split, ir.Split) else None
    if key is None or rule.when is None:
        return
    conjuncts = rule.when.items if rule.when.kind == "all" else (rule.when,)
    for cond in conjuncts:
        pinned = cond.kind == "compare" and cond.field == key and (
            cond.operator == "equals" or (cond.operator == "in" and isinstance(cond.value, list)
                                          and len(cond.value) == 1))
        if pinned:
            yield Diagnostic(STICKY_KEY_CONDITION.code,
                             f"the split is sticky by `{key}`, which this rule pins to one value: every request "
                             f"it routes lands in the same bucket", split.spans.get("sticky_by", cond.span),
                             rule=rule.name, help="make the split sticky by another field")
