"""JSON with positions: the values `json.loads` gives, plus the span of every value.

    doc = read_json(source)          # raises JSONProblem (located) on invalid JSON
    doc.value                        # what json.loads(source.text) returns
    doc.span_at(("rules", 0, "targets", 1, "endpoint"))

Parsed with a small lark grammar (LALR, the lexer's token positions); each
string and number token is decoded by `json.loads` itself, so values are
exactly Python's (NaN and Infinity included, as Python reads them; for a
repeated key the last value wins, at the first key's place, as in a dict).
`span_at` returns the span of the deepest value on the path that exists, so
a default that is not written is located at the object it belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .source import Source, Span

_GRAMMAR = r"""
?start: value
?value: object | array | STRING -> string | NUMBER -> number | KEYWORD -> keyword
object: LBRACE [pair ("," pair)*] RBRACE
pair: STRING ":" value
array: LSQB [value ("," value)*] RSQB
LBRACE: "{"
RBRACE: "}"
LSQB: "["
RSQB: "]"
STRING: /"(?:[^"\\\x00-\x1f]|\\.)*"/
KEYWORD: "true" | "false" | "null"
NUMBER: /-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|Infinity)|NaN/
%ignore /[ \t\n\r]+/
"""


@dataclass(slots=True)
class Located:
    """A JSON value's span, and the located members of an object or array."""

    span: Span
    members: dict[Any, Located] = field(default_factory=dict)  # object keys, or array indexes


@dataclass
class JSONDocument:
    value: Any
    root: Located

    def span_at(self, path: tuple) -> Span:
        node = self.root
        for key in path:
            child = node.members.get(key)
            if child is None:
                break
            node = child
        return node.span

    def has(self, path: tuple) -> bool:
        node = self.root
        for key in path:
            node = node.members.get(key)
            if node is None:
                return False
        return True


class JSONProblem(ValueError):
    """Not valid JSON; `span` is where."""

    def __init__(self, message: str, span: Span, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.help = help


_KEYWORDS = {"true": True, "false": False, "null": None}


class _Values(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, first: Token, last: Token) -> Span:
        return Span(self.file, first.line, first.column, last.end_line, last.end_column)

    def _decode(self, token: Token) -> Any:
        try:
            return json.loads(token.value)
        except json.JSONDecodeError as exc:  # a bad escape inside a string
            at = token.column + exc.pos
            raise JSONProblem(f"invalid JSON: {exc.msg}", Span(self.file, token.line, at, token.line, at + 1),
                              help='escapes are \\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX') from None

    def _scalar(self, token: Token, value: Any) -> tuple[Any, Located]:
        return value, Located(self._span(token, token))

    def string(self, c):
        return self._scalar(c[0], self._decode(c[0]))

    def number(self, c):
        return self._scalar(c[0], self._decode(c[0]))

    def keyword(self, c):
        return self._scalar(c[0], _KEYWORDS[c[0].value])

    def object(self, c):
        value: dict = {}
        located = Located(self._span(c[0], c[-1]))
        for pair in c[1:-1]:
            if pair is None:
                continue
            key, (member, where) = pair
            value[key] = member
            located.members[key] = where
        return value, located

    def pair(self, c):
        return self._decode(c[0]), c[1]

    def array(self, c):
        items = [x for x in c[1:-1] if x is not None]
        located = Located(self._span(c[0], c[-1]), {i: where for i, (_, where) in enumerate(items)})
        return [v for v, _ in items], located


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=True)


def read_json(source: Source) -> JSONDocument:
    """Parse `source` as JSON, keeping positions. Raises JSONProblem."""
    text = source.text
    try:
        tree = _parser().parse(text)
        value, root = _Values(source.name).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, JSONProblem):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, RecursionError):
            raise JSONProblem("the JSON nests too deeply to read", Span(source.name, 1, 1, 1, 2)) from None
        raise
    except RecursionError:
        raise JSONProblem("the JSON nests too deeply to read", Span(source.name, 1, 1, 1, 2)) from None
    except UnexpectedInput as exc:
        raise _syntax_problem(exc, source) from None
    return JSONDocument(value, root)


def _syntax_problem(exc: UnexpectedInput, source: Source) -> JSONProblem:
    text = source.text
    if isinstance(exc, UnexpectedCharacters):
        at, line, column = exc.pos_in_stream, exc.line, exc.column
        hint = "strings use double quotes" if text[at:at + 1] == "'" else None
        if text[at:at + 1] == '"':  # a string the STRING pattern refuses: find the raw control character
            end = at + 1
            while end < len(text) and text[end] != '"' and ord(text[end]) >= 0x20:
                end += 2 if text[end] == "\\" else 1
            if end < len(text) and text[end] != '"':
                column += end - at
                at = end
                hint = "write control characters in strings as escapes: \\n, \\t, \\u0000"
        ch = text[at] if at < len(text) else "?"
        shown = repr(ch) if not ch.isprintable() else f"`{ch}`"
        return JSONProblem(f"invalid JSON: unexpected character {shown}",
                           Span(source.name, line, column, line, column + 1), help=hint)
    token = exc.token if isinstance(exc, (UnexpectedToken, UnexpectedEOF)) else None
    if token is None or token.type == "$END":
        line = text.count("\n") + 1
        column = len(source.lines[-1]) + 1 if source.lines else 1
        span = Span(source.name, line, column, line, column + 1)
        found = "end of the file"
    else:
        span = Span(source.name, token.line, token.column, token.end_line, token.end_column)
        found = f"`{token.value[:30]}`"
    expected = getattr(exc, "accepts", None) or getattr(exc, "expected", None) or ()
    described = sorted({_EXPECTED.get(t, t.lower()) for t in expected if not t.startswith("__")})
    hint = "expected " + ", ".join(described) if described else None
    if token is not None and token.type in ("RBRACE", "RSQB") and text[:token.start_pos].rstrip().endswith(","):
        hint = "JSON allows no comma before a closing bracket"
    return JSONProblem(f"invalid JSON: unexpected {found}", span, help=hint)


_EXPECTED = {
    "STRING": "a string", "NUMBER": "a number", "KEYWORD": "true, false or null", "LBRACE": "`{`",
    "RBRACE": "`}`", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "COLON": "`:`",
}
