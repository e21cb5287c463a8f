"""Evaluating conditions: field lookup and condition trees. What each
operator means is defined once, in `routelang.vocab.operators`; this module
applies it. Generated Python imports the meaning functions by name from here
(`from routelang.runtime.operators import number`), so every name of that
module is also reachable as an attribute of this one.
"""

from __future__ import annotations

from typing import Any

from ..vocab import operators as _vocab
from ..vocab.operators import apply, to_float


def __getattr__(name: str) -> Any:
    # The meaning functions and helpers the generated code imports.
    try:
        return getattr(_vocab, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


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


__all__ = ["RequestError", "apply", "check_request", "evaluate", "lookup", "to_float"]
