"""Syntax nodes built in code -> `.route` text, in `routelang fmt`'s layout.

The formatter (fmt.py) reprints source tokens; nodes that the importer
builds have no source. `print_file` spells every node the way the parser
reads it back, one item per line, hands that text to the formatter for the
layout, and checks that the text parses to the very nodes it was given
(spans aside), so a printed file always says what its nodes say.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Any

from . import ast
from .fmt import FormatterBug, format_text
from .parser import grammar_text, parse, quote
from .source import Source
from .vocab import operators, strategies

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


class PrinterBug(Exception):
    """The nodes cannot be spelt so that they parse back to themselves."""


@functools.cache
def keywords() -> frozenset[str]:
    """The grammar's words. Names that are keywords get quotes: a keyword
    cannot stand everywhere a name can (`50% is_shadow: t` does not parse)."""
    words = re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', grammar_text())
    return frozenset(words) | {"true", "false", "null"}


def is_identifier(text: str) -> bool:
    """Can `text` be written bare as a name (router, rule, label, target, key)?"""
    return _NAME.fullmatch(text) is not None and text not in keywords()


def name_node(text: str, span) -> ast.Name:
    """A name as the parser reads it: quoted unless it is an identifier."""
    return ast.Name(text, span, quoted=not is_identifier(text))


def field_text(segments: list[str]) -> str:
    """A dotted field path; segments that are not identifiers are quoted.
    Keywords read fine as segments (`request.model`), except that a leading
    `not` would read as negation."""
    parts = []
    for i, seg in enumerate(segments):
        bare = _NAME.fullmatch(seg) is not None and not (i == 0 and seg == "not")
        parts.append(seg if bare else quote(seg))
    return ".".join(parts)


def regex_text(pattern: str) -> str:
    """r"..." keeps backslashes as written, which is how regexes read best."""
    if "\\" in pattern and '"' not in pattern and "\n" not in pattern and "\r" not in pattern:
        return f'r"{pattern}"'
    return quote(pattern)


def duration_text(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 and ms else f"{ms}ms"


def percent_value(number: str) -> float:
    """The weight the parser reads for `number%`: exact division, then the nearest float."""
    return float(Fraction(number) / 100)


def percent_text(weight: float) -> str | None:
    """`80%` when reading it back (percent_value) gives exactly `weight` with at most
    8 decimals; else None, and the fraction (`0.3333333333333333`) reads better."""
    if not math.isfinite(weight) or weight < 0:
        return None
    for digits in range(9):
        text = f"{weight * 100:.{digits}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if percent_value(text) == weight:
            return text + "%"
    return None


# ---- spelling --------------------------------------------------------------------

def _name(n: ast.Name) -> str:
    return quote(n.text) if n.quoted else n.text


def _value(v: ast.Value, quoted_keys: bool = False) -> str:
    return value_text(v.value, quoted_keys)


def value_text(x: Any, quoted_keys: bool = False) -> str:
    """A JSON value as a routelang literal; object keys bare where they can be, unless
    `quoted_keys` (headers read best quoted). PrinterBug for a value with no spelling.
    (A parsed list or object holds ast.Values: spelt as their values.)"""
    if isinstance(x, ast.Value):
        x = x.value
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise PrinterBug(f"{x!r} has no routelang spelling")
        return repr(x)  # always has "." or "e", so it reads back as a float
    if isinstance(x, str):
        return quote(x)
    if isinstance(x, list):
        return "[" + ", ".join(value_text(item) for item in x) + "]"
    if isinstance(x, dict):
        if not x:
            return "{}"
        return "{ " + ", ".join(f"{k if is_identifier(k) and not quoted_keys else quote(k)}: {value_text(item)}"
                                for k, item in x.items()) + " }"
    raise PrinterBug(f"unexpected value {x!r}")


def _compare(c: ast.Compare) -> str:
    entry = operators.get(c.op)
    text = f"{field_text(c.path.segments)} {c.op_text or entry.text}"
    if c.value is not None:
        is_pattern = entry.operand == "pattern" and isinstance(c.value.value, str)
        text += " " + (regex_text(c.value.value) if is_pattern else _value(c.value))
    if c.note is not None:
        text += f" note {quote(c.note.value)}"
    return text


def _expr(e, parent: str | None = None) -> str:
    """Parentheses wherever the parser would otherwise group differently."""
    if isinstance(e, (ast.AllOf, ast.AnyOf)):
        kind = "and" if isinstance(e, ast.AllOf) else "or"
        text = f" {kind} ".join(_expr(item, kind) for item in e.items)
        bare = parent is None or (kind == "and" and parent == "or")
        return text if bare else f"({text})"
    if isinstance(e, ast.Not):
        return "not " + _expr(e.item, "not")
    if isinstance(e, ast.CondRef):
        return _name(e.name)
    return f"({_compare(e)})" if parent == "not" else _compare(e)


def _setting(s: ast.Setting) -> str:
    if isinstance(s.value, list):  # circuit_breaker { ... }, health_check { ... }
        return f"{s.key} " + _block([_setting(x) for x in s.value])
    if isinstance(s.value, ast.Duration):
        return f"{s.key} {s.value.text}"
    if isinstance(s.value, ast.Name):
        return f"{s.key} {_name(s.value)}"
    text = f"{s.key} {_value(s.value, quoted_keys=s.key == 'headers')}"
    return text + " per 1k" if s.key in ("cost", "input_cost", "output_cost") else text


def _block(items: list[str]) -> str:
    return "{ " + "  ".join(items) + " }" if items else "{}"


def _target(t) -> str:
    if isinstance(t, ast.TargetRef):
        return _name(t.name)
    if isinstance(t, ast.TargetLiteral):
        return _block([_setting(s) for s in t.settings.items])
    head = f"{_name(t.provider)}({', '.join(quote(a.value) for a in t.args)})"
    return head if t.settings is None else f"{head} {_block([_setting(s) for s in t.settings.items])}"


def _member(m) -> str:
    """A strategy's member: a target, or a nested strategy in parentheses."""
    return f"({_strategy(m)})" if isinstance(m, ast.Strategy) else _target(m)


def _strategy(s: ast.Strategy) -> str:
    defn = strategies.strategy(s.kind)
    if defn.layout == "route":
        text = f"route {_member(s.targets[0])}"
        return f"{text} shadow {_member(s.targets[1])}" if defn.mirrors else text
    if defn.layout == "block":
        head = defn.keyword
        if s.sticky is not None:
            head += f" sticky by {field_text(s.sticky.path.segments)}"
            if s.sticky.salt is not None:
                head += f" salt {quote(s.sticky.salt.value)}"
        if s.no_failover is not None:
            head += " no failover"
        entries = [f"{e.weight_text} {_name(e.label) + ': ' if e.label else ''}{_member(e.target)}"
                   for e in s.entries]
        return f"{head} {{ {'  '.join(entries)} }}"
    head = defn.keyword
    if defn.score_factors:
        head += "(" + ", ".join(f"{factor} {_value(v)}" for factor, v in s.hybrid.items()) + ")"
    return f"{head} " + ", ".join(_member(t) for t in s.targets)


def _item(it) -> str:
    if isinstance(it, ast.RouterHeader):
        return f"router {_name(it.name)}" + (f" {quote(it.description.value)}" if it.description else "")
    if isinstance(it, ast.MetadataBlock):
        return f"metadata {_value(it.value)}"
    if isinstance(it, ast.Import):
        return f"import {it.module}" if it.module is not None else f"import {quote(it.path.value)}"
    if isinstance(it, ast.TargetDef):
        return f"target {_name(it.name)} = {_target(it.target)}"
    if isinstance(it, ast.ConditionDef):
        return f"condition {_name(it.name)} = {_expr(it.expr)}"
    if isinstance(it, ast.RuleDef):
        head = f"rule {_name(it.name)}"
        if it.priority is not None:
            head += f" priority {_value(it.priority)}"
        if it.description is not None:
            head += f" {quote(it.description.value)}"
        if it.enabled is not None:
            head += f" {it.enabled.text}"
        body = [f"when {_expr(w)}" for w in it.whens] + [_strategy(s) for s in it.strategies]
        return f"{head} {{ {'  '.join(body)} }}"
    raise PrinterBug(f"cannot print a {type(it).__name__} built in code")


def print_file(file: ast.File, comments_before: dict[int, list[str]] | None = None) -> str:
    """The text of `file` in `routelang fmt` layout; `comments_before[i]`
    are comment lines (without `#`) to put before item i."""
    lines = []
    for i, item in enumerate(file.items):
        lines.extend(f"# {c}".rstrip() for c in (comments_before or {}).get(i, ()))
        lines.append(_item(item))
    text = "\n".join(lines) + "\n"
    again, problems = parse(Source("<printed>", text))
    if problems or again.items != file.items:
        detail = problems[0].message if problems else "the text parses to different nodes"
        raise PrinterBug(f"printed text does not read back: {detail}")
    try:
        return format_text(text)
    except FormatterBug:
        return text  # valid as it stands, only not laid out
