"""THE semantics of routelang's conditions: one function per operator.

The JSON interpreter calls these; the generated Python inlines the same
expressions (and is tested against these). For Mixtrain's eleven operators
the meaning is exactly that of `mixtrain.routing.conditions`, quirks
included; docs/semantics.md has the table.

Every operator returns a bool and never raises. Where Mixtrain's evaluation
raises (so that its whole rule fails to match), the operator here is False
*and so is its opposite*: `contains 5` and `not contains 5` are both False
on a present field, as both make a Mixtrain rule fail. Because of that,
`not (x contains 5)` is not `x not contains 5`; the JSON backend knows.
"""

from __future__ import annotations

import re
from typing import Any


def lookup(data: Any, field: str) -> Any:
    """A dotted path through nested objects; None when any step is missing
    or is not an object (lists are not indexed)."""
    value = data
    for key in field.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return None
    return value


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


def compile_regex(expected: Any) -> re.Pattern | None:
    """The pattern Mixtrain searches with (`str(expected)`), or None when it
    does not compile (then the condition is always False)."""
    try:
        return re.compile(str(expected))
    except re.error:
        return None


def regex(actual: Any, expected: Any) -> bool:
    pattern = compile_regex(expected)
    return matches_compiled(actual, pattern)


def matches_compiled(actual: Any, pattern: re.Pattern | None) -> bool:
    if actual is None or pattern is None:
        return False
    actual_text = text(actual)
    return actual_text is not None and pattern.search(actual_text) is not None


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


OPERATORS = {
    "equals": equals,
    "not_equals": not_equals,
    "contains": contains,
    "not_contains": not_contains,
    "in": in_,
    "not_in": not_in,
    "exists": exists,
    "not_exists": not_exists,
    "greater_than": greater_than,
    "less_than": less_than,
    "greater_or_equal": greater_or_equal,
    "less_or_equal": less_or_equal,
    "regex": regex,
    "starts_with": starts_with,
    "ends_with": ends_with,
}

# Mixtrain spells two operators differently in its docs; configs may use either.
OPERATOR_ALIASES = {"is_in": "in", "regex_match": "regex"}


def apply(operator: str, actual: Any, expected: Any) -> bool:
    return OPERATORS[OPERATOR_ALIASES.get(operator, operator)](actual, expected)


def evaluate(tree: dict | None, request: Any) -> bool:
    """Evaluate a condition tree in the JSON backend's form
    ({"all"|"any": [...]}, {"not": c}, {"field", "operator", "value"}),
    left to right with short-circuiting. None matches every request."""
    if tree is None:
        return True
    if "all" in tree:
        return all(evaluate(c, request) for c in tree["all"])
    if "any" in tree:
        return any(evaluate(c, request) for c in tree["any"])
    if "not" in tree:
        return not evaluate(tree["not"], request)
    return apply(tree["operator"], lookup(request, tree["field"]), tree.get("value"))


class RequestError(ValueError):
    """A request routelang refuses to route (documented in docs/semantics.md)."""


def check_request(request: Any) -> None:
    """A request must be a JSON object (a dict). Any nesting depth routes as
    in Mixtrain: the operators above turn a too-deep value into a failed test."""
    if not isinstance(request, dict):
        raise RequestError(f"a request must be a JSON object, not {type(request).__name__}")
