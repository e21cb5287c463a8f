"""Every condition operator, defined once: one `Operator` entry per operator
with every fact a phase needs about it (docs/architecture.md, "How to add an
operator", says which phase reads which facet).

The meaning functions below are THE semantics of routelang's conditions: the
JSON interpreter calls them, the generated Python inlines the same
expressions (and is tested against these). For Mixtrain's eleven operators
the meaning is exactly that of `mixtrain.routing.conditions`, quirks
included; docs/semantics.md has the table.

Every operator returns a bool and never raises. Where Mixtrain's evaluation
raises (so that its whole rule fails to match), the operator here is False
*and so is its opposite*: `contains 5` and `not contains 5` are both False
on a present field, as both make a Mixtrain rule fail. Because of that,
`not (x contains 5)` is not `x not contains 5`: each entry's `negation`
says whether its negation is exact, and `lower_negated` how Mixtrain can
state it.

This module imports nothing from routelang.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# ---- what Mixtrain's evaluation does to a value ----------------------------------------


def to_float(value: Any) -> float | None:
    """Mixtrain's numeric coercion: `float(value)`, or None where it fails
    (TypeError / ValueError, and OverflowError for huge integers, which makes
    Mixtrain's rule fail)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def text(actual: Any) -> str | None:
    """`str(actual)` as Mixtrain's string operators take it, or None where
    str() raises: an integer beyond Python's 4300-digit limit (also inside a
    list), or a value nested too deeply to print. Mixtrain's rule fails there,
    so the operator and its opposite are False. (`==` needs no such care: it
    recurses only as deep as the config's own value.)"""
    try:
        return str(actual)
    except (ValueError, RecursionError):
        return None


NAN = float("nan")


def number(value: Any) -> float:
    """`to_float`, with NaN where it fails: every comparison with NaN is False,
    exactly where Mixtrain's comparison is False (the generated code uses this)."""
    result = to_float(value)
    return NAN if result is None else result


def compile_regex(expected: Any) -> re.Pattern | None:
    """The pattern Mixtrain searches with (`str(expected)`), or None when it
    does not compile (then the condition is always False)."""
    try:
        return re.compile(str(expected))
    except re.error:
        return None


def matches_compiled(actual: Any, pattern: re.Pattern | None) -> bool:
    if actual is None or pattern is None:
        return False
    actual_text = text(actual)
    return actual_text is not None and pattern.search(actual_text) is not None


# ---- the meanings ---------------------------------------------------------------------


def equals(actual: Any, expected: Any) -> bool:
    return actual == expected  # Python equality: 1 == 1.0 == True


def not_equals(actual: Any, expected: Any) -> bool:
    return actual != expected


def contains(actual: Any, expected: Any) -> bool:
    # Substring test on str(actual): "a" is in ["a"] because "['a']" holds it.
    if actual is None or not isinstance(expected, str):
        return False
    actual_text = text(actual)
    return actual_text is not None and expected in actual_text


def not_contains(actual: Any, expected: Any) -> bool:
    if actual is None:
        return True
    if not isinstance(expected, str):
        return False  # Mixtrain raises TypeError here: the rule fails
    actual_text = text(actual)
    return actual_text is not None and expected not in actual_text


def in_(actual: Any, expected: Any) -> bool:
    return isinstance(expected, list) and actual in expected


def not_in(actual: Any, expected: Any) -> bool:
    return not isinstance(expected, list) or actual not in expected


def exists(actual: Any, expected: Any = None) -> bool:
    return actual is not None  # a field holding null does not "exist"


def not_exists(actual: Any, expected: Any = None) -> bool:
    return actual is None


def _compare(actual: Any, expected: Any, op) -> bool:
    a = to_float(actual)
    b = to_float(expected)
    if a is None or b is None:
        return False
    return op(a, b)


def greater_than(actual: Any, expected: Any) -> bool:
    return _compare(actual, expected, float.__gt__)


def less_than(actual: Any, expected: Any) -> bool:
    return _compare(actual, expected, float.__lt__)


def greater_or_equal(actual: Any, expected: Any) -> bool:
    return _compare(actual, expected, float.__ge__)


def less_or_equal(actual: Any, expected: Any) -> bool:
    return _compare(actual, expected, float.__le__)


def regex(actual: Any, expected: Any) -> bool:
    return matches_compiled(actual, compile_regex(expected))


def starts_with(actual: Any, expected: Any) -> bool:
    if actual is None or not isinstance(expected, str):
        return False
    actual_text = text(actual)
    return actual_text is not None and actual_text.startswith(expected)


def ends_with(actual: Any, expected: Any) -> bool:
    if actual is None or not isinstance(expected, str):
        return False
    actual_text = text(actual)
    return actual_text is not None and actual_text.endswith(expected)


# ---- Python emission -----------------------------------------------------------------


class Emitter(Protocol):
    """What an operator's `python` facet may ask of the Python backend."""

    def scalar(self, value: Any) -> str: ...            # a literal, inline or as a named constant
    def helper(self, name: str) -> str: ...             # alias of a function of this module, imported
    def membership(self, variable: str, value: Any, negated: bool) -> str: ...
    def pattern(self, value: Any) -> str: ...           # a module constant holding the compiled regex


Emit = Callable[[Emitter, str, Any], str]  # (emitter, variable holding the field, operand) -> expression


def _emit_binary(symbol: str) -> Emit:
    return lambda e, v, value: f"{v} {symbol} {e.scalar(value)}"


def _emit_numeric(symbol: str) -> Emit:
    def emit(e: Emitter, v: str, value: Any) -> str:
        bound = to_float(value)
        if bound is None or math.isnan(bound):
            return "False"  # Mixtrain's float() of the value fails: never true
        return f"{e.helper('number')}({v}) {symbol} {e.scalar(bound)}"
    return emit


def _emit_text(meaning: Callable) -> Emit:
    def emit(e: Emitter, v: str, value: Any) -> str:
        if not isinstance(value, str):
            # Mixtrain raises on a non-string value (the test and its opposite fail),
            # except that `not_contains` holds on a missing field before it gets there.
            return f"{v} is None" if meaning(None, value) else "False"
        return f"{e.helper(meaning.__name__)}({v}, {e.scalar(value)})"
    return emit


def _emit_regex(e: Emitter, v: str, value: Any) -> str:
    if compile_regex(value) is None:
        return "False"  # a pattern that does not compile never matches
    return f"{e.helper('matches_compiled')}({v}, {e.pattern(value)})"


# ---- Mixtrain lowering -----------------------------------------------------------------

# One Mixtrain condition: (operator, value); value None for the unary operators.
MixtrainCondition = tuple[str, Any]


@dataclass(frozen=True)
class Lowering:
    """What Mixtrain can say for one condition: a disjunction of conjunctions
    of Mixtrain conditions (`terms`; `()` never holds, `((),)` always holds).
    `exact` says the terms hold for exactly the requests the condition holds
    for. An inexact lowering is always a subset: its terms hold only where the
    condition does, and `differs` says for which values they do not."""

    terms: tuple[tuple[MixtrainCondition, ...], ...]
    exact: bool = True
    differs: str | None = None   # where an inexact lowering misses: "a value whose ..."
    witness: Any = None          # a field value on which it misses (checked by the backend)


ALWAYS = Lowering(((),))
FLOAT_MAX = math.nextafter(math.inf, 0.0)
HUGE_INT = 10 ** 4301                 # str() raises ValueError on it (Python's digit limit)
STR_FAILS = "a value whose str() fails (an integer of more than 4,300 digits, a very deeply nested list)"
FLOAT_FAILS = "a present value that float() cannot read (text such as \"abc\", a list, an object) or NaN"


def _one(op: str, value: Any = None) -> Lowering:
    return Lowering((((op, value),),))


def _same(name: str) -> Callable[[Any], Lowering]:
    return lambda value: _one(name, value)


def _at_least(value: Any) -> Lowering:
    # Under float() comparison no float lies strictly between nextafter(b, -inf)
    # and b, so `x >= b` holds exactly when `x > nextafter(b, -inf)`; -inf has no
    # float below it, so `x >= -inf` (every number) takes two conditions.
    b = to_float(value)
    if b is None or math.isnan(b):
        return _one("greater_than", value)  # float() of the value fails or is NaN: never true, in both
    if b == -math.inf:
        return Lowering(((("greater_than", -math.inf),), (("less_than", -FLOAT_MAX),)))
    return _one("greater_than", math.nextafter(b, -math.inf))


def _at_most(value: Any) -> Lowering:
    b = to_float(value)
    if b is None or math.isnan(b):
        return _one("less_than", value)
    if b == math.inf:
        return Lowering(((("less_than", math.inf),), (("greater_than", FLOAT_MAX),)))
    return _one("less_than", math.nextafter(b, math.inf))


def _regex_for(pattern: str) -> Callable[[Any], Lowering]:
    """starts_with / ends_with as Mixtrain's `regex` on str(actual)."""
    def lower(value: Any) -> Lowering:
        if not isinstance(value, str):
            return Lowering(())  # never true (the checker rejects it anyway)
        return _one("regex", pattern.format(re.escape(value)))
    return lower


def _not_number(complement: Callable[[Any], Lowering]) -> Callable[[Any], Lowering]:
    """`not (x > v)` and the like: the complementary comparison, or a missing
    field; what Mixtrain cannot say is a present value float() fails on."""
    def lower(value: Any) -> Lowering:
        b = to_float(value)
        if b is None or math.isnan(b):
            return ALWAYS  # the comparison is never true, so its negation always is
        return Lowering(complement(value).terms + ((("not_exists", None),),),
                        exact=False, differs=FLOAT_FAILS, witness="abc")
    return lower


def _not_text(positive: str, on_non_string: Lowering) -> Callable[[Any], Lowering]:
    """`not (x contains s)` as `not_contains` (and back): equal except where
    str(x) fails, which Mixtrain's rule fails on and routelang's `not` holds on."""
    def lower(value: Any) -> Lowering:
        if not isinstance(value, str):
            return on_non_string
        return Lowering((((positive, value),),), exact=False, differs=STR_FAILS, witness=HUGE_INT)
    return lower


def negated_regex(pattern: str) -> str | None:
    """A pattern that `re.search` finds in s exactly when `pattern` is not
    found in s (a lookahead from the start over every position), or None
    when `pattern` cannot be embedded (global inline flags after its start)."""
    # Global inline flags must stay at the very start; they mean the same there
    # (`[\s\S]` and `\A` are unaffected by any flag).
    flags = re.match(r"(?:\(\?[aiLmsux]+\))*", pattern).group()
    wrapped = flags + r"\A(?![\s\S]*?(?:" + pattern[len(flags):] + "))"
    try:
        re.compile(wrapped)
    except (re.error, RecursionError):
        return None
    return wrapped


def _not_regex(positive: Callable[[Any], Lowering]) -> Callable[[Any], Lowering]:
    """`not (x =~ p)`: a missing field, or a lookahead regex that no match of p
    follows; equal except where str(x) fails."""
    def lower(value: Any) -> Lowering:
        inner = positive(value)
        if inner.terms == () or compile_regex(inner.terms[0][0][1]) is None:
            return ALWAYS  # the test never holds, so its negation always does
        terms: tuple = ((("not_exists", None),),)
        wrapped = negated_regex(str(inner.terms[0][0][1]))
        if wrapped is None:
            return Lowering(terms, exact=False,  # any present value: the analysis finds one
                            differs="a present value (the pattern has flags that cannot be embedded in a negation)")
        return Lowering(terms + ((("regex", wrapped),),), exact=False, differs=STR_FAILS, witness=HUGE_INT)
    return lower


# ---- the table ------------------------------------------------------------------------

@dataclass(frozen=True)
class Operator:
    name: str                       # IR and JSON name (Mixtrain's, where Mixtrain has it)
    spellings: tuple[str, ...]      # .route spellings; the first is what fmt, the importer and messages write
    operand: str                    # "any" | "list" | "number" | "text" | "pattern" | "none" (unary)
    strict_operand: bool            # a value of another type is a checker error (else a lint finding)
    meaning: Callable[[Any, Any], bool]
    negation: str | None            # the operator whose meaning is `not` of this one's ...
    negation_exact: bool            # ... for every value (False: see docs/semantics.md)
    python: Emit                    # how generated Python inlines it
    lower: Callable[[Any], Lowering]          # Mixtrain conditions for `x op v`
    lower_negated: Callable[[Any], Lowering]  # ... and for `not (x op v)`
    phrase: str                     # explain: "<field> <phrase> <value>"
    domain: str | None              # analysis: equality | membership | order | substring | prefix
                                    # | suffix | regex | presence; None: the analysis treats it as inexact
    mixtrain: bool                  # Mixtrain has this operator under this name
    json_aliases: tuple[str, ...] = ()   # other names Mixtrain configs may use for it

    @property
    def unary(self) -> bool:
        return self.operand == "none"

    @property
    def text(self) -> str:
        """The canonical .route spelling."""
        return self.spellings[0]

TABLE: tuple[Operator, ...] = (
    Operator("equals", ("==",), "any", False, equals, "not_equals", True,
           _emit_binary("=="), _same("equals"), _same("not_equals"), "is", "equality", True),
    Operator("not_equals", ("!=",), "any", False, not_equals, "equals", True,
           _emit_binary("!="), _same("not_equals"), _same("equals"), "is not", "equality", True),
    Operator("contains", ("contains",), "text", False, contains, "not_contains", False,
           _emit_text(contains), _same("contains"), _not_text("not_contains", ALWAYS),
           "contains", "substring", True),
    Operator("not_contains", ("not contains",), "text", False, not_contains, "contains", False,
           _emit_text(not_contains), _same("not_contains"), _not_text("contains", _one("exists")),
           "does not contain", "substring", True),
    Operator("in", ("in",), "list", False, in_, "not_in", True,
           lambda e, v, value: e.membership(v, value, negated=False), _same("in"), _same("not_in"),
           "is one of", "membership", True, ("is_in",)),
    Operator("not_in", ("not in",), "list", False, not_in, "in", True,
           lambda e, v, value: e.membership(v, value, negated=True), _same("not_in"), _same("in"),
           "is not one of", "membership", True),
    Operator("exists", ("exists",), "none", False, exists, "not_exists", True,
           lambda e, v, value: f"{v} is not None", _same("exists"), _same("not_exists"),
           "is present", "presence", True),
    Operator("not_exists", ("not exists",), "none", False, not_exists, "exists", True,
           lambda e, v, value: f"{v} is None", _same("not_exists"), _same("exists"),
           "is missing", "presence", True),
    Operator("greater_than", (">",), "number", True, greater_than, "less_or_equal", False,
           _emit_numeric(">"), _same("greater_than"), _not_number(_at_most), "is greater than", "order", True),
    Operator("less_than", ("<",), "number", True, less_than, "greater_or_equal", False,
           _emit_numeric("<"), _same("less_than"), _not_number(_at_least), "is less than", "order", True),
    Operator("greater_or_equal", (">=",), "number", True, greater_or_equal, "less_than", False,
           _emit_numeric(">="), _at_least, _not_number(_same("less_than")), "is at least", "order", False),
    Operator("less_or_equal", ("<=",), "number", True, less_or_equal, "greater_than", False,
           _emit_numeric("<="), _at_most, _not_number(_same("greater_than")), "is at most", "order", False),
    Operator("regex", ("=~", "matches"), "pattern", False, regex, None, False,
           _emit_regex, _same("regex"), _not_regex(_same("regex")), "matches the pattern", "regex", True,
           ("regex_match",)),
    Operator("starts_with", ("starts_with",), "text", True, starts_with, None, False,
           _emit_text(starts_with), _regex_for("^{}"), _not_regex(_regex_for("^{}")),
           "starts with", "prefix", False),
    Operator("ends_with", ("ends_with",), "text", True, ends_with, None, False,
           _emit_text(ends_with), _regex_for(r"{}\Z"), _not_regex(_regex_for(r"{}\Z")),
           "ends with", "suffix", False),
)

BY_NAME: dict[str, Operator] = {op.name: op for op in TABLE}
NAMES: tuple[str, ...] = tuple(BY_NAME)
MIXTRAIN_NAMES: tuple[str, ...] = tuple(op.name for op in TABLE if op.mixtrain)
UNARY: frozenset[str] = frozenset(op.name for op in TABLE if op.unary)
BY_SPELLING: dict[str, Operator] = {s: op for op in TABLE for s in op.spellings}
# Mixtrain spells two operators differently in its docs; configs may use either.
ALIASES: dict[str, str] = {alias: op.name for op in TABLE for alias in op.json_aliases}
# The words among the spellings (for the highlighter), each word once.
WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    word for op in TABLE for s in op.spellings for word in s.split() if word.isidentifier()))
SYMBOLS: tuple[str, ...] = tuple(s for op in TABLE for s in op.spellings if not s[0].isalpha())


def get(name: str) -> Operator:
    """The entry for an operator name or a Mixtrain alias; KeyError if neither."""
    return BY_NAME[ALIASES.get(name, name)]


def apply(name: str, actual: Any, expected: Any) -> bool:
    return get(name).meaning(actual, expected)
