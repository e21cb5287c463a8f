"""Text -> AST, with syntax errors phrased for people.

The grammar lives in `grammar/routelang.lark` at the top of the repository;
the wheel carries it as `routelang/grammar/routelang.lark`. Parsing is LALR(1) with lark's
contextual lexer, and the AST is built *during* the parse (lark's inline
transformer), which skips building a parse tree first. Spans come from the
tokens, not from lark's `propagate_positions`, which doubles parse time.
"""

from __future__ import annotations

import difflib
import re
import sys
import threading
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer

try:  # Cython build of lark's LALR parser and lexer, by lark's authors: ~2x faster
    import lark_cython
except ImportError:  # pure-Python lark works the same, only slower
    lark_cython = None

TOKEN_TYPES: tuple = (Token,) if lark_cython is None else (Token, lark_cython.lark_cython.Token)
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .diagnostics import DUPLICATE_SETTING, HYBRID_WEIGHTS, SYNTAX_ERROR, Diagnostic, Related
from .source import Source, Span
from .vocab import operators, strategies

MAX_SYNTAX_ERRORS = 20
MAX_VALUE_DEPTH = 32  # lists/objects nested deeper than this are refused


def grammar_path() -> Path:
    packaged = Path(__file__).parent / "grammar" / "routelang.lark"  # installed wheel
    if packaged.is_file():
        return packaged
    return Path(__file__).parent.parent / "grammar" / "routelang.lark"  # source checkout


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


class SyntaxProblem(Exception):
    """Raised from inside the transformer for a literal the grammar lets through."""

    def __init__(self, message: str, token, help: str | None = None):  # token: a lark Token or a Span
        super().__init__(message)
        self.message = message
        self.token = token
        self.help = help


def _within_float(value: float | Fraction, text: str, token) -> float:
    """`value` as a float, or a SyntaxProblem when it is beyond a float's range (a duration or a
    percentage of 400 digits would be infinity, or fail to convert, in the JSON and the Python)."""
    if abs(value) > sys.float_info.max:   # (float("1e999") is inf, which is beyond it too)
        shown = text if len(text) <= 24 else f"{text[:20]}..."
        raise SyntaxProblem(f"`{shown}` is too large a number", token,
                            help=f"numbers are at most {sys.float_info.max:.6g}")
    return float(value) if isinstance(value, Fraction) else value


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)", re.DOTALL)


def unquote(token) -> str:
    text = token.value
    if text.startswith("r"):
        return text[2:-1]
    body = text[1:-1]
    if "\\" not in body:
        return body

    def sub(m: re.Match) -> str:
        esc = m.group(1)
        if esc[0] in "uUx" and len(esc) > 1:
            return chr(int(esc[1:], 16))
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        raise SyntaxProblem(
            f"unknown escape `\\{esc}` in string",
            token,
            help='write `\\\\` for a backslash, or use a raw string r"..." (handy for regexes)',
        )

    return _ESCAPE_RE.sub(sub, body)


def quote(text: str) -> str:
    """The routelang spelling of a string (inverse of `unquote`)."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ch in "\x7f\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _span_of(x, file: str) -> Span:
    if isinstance(x, TOKEN_TYPES):
        return Span(file, x.line, x.column, x.end_line, x.end_column)
    return x.span


class _Builder(Transformer):
    """Builds AST nodes bottom-up as the LALR parser reduces."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        # Mistakes that need no resync: reported, and the parse goes on. Keyed
        # by position, since the error path parses the same text again.
        self.problems: dict[tuple, Diagnostic] = {}

    def _problem(self, diagnostic: Diagnostic) -> None:
        span = diagnostic.span
        self.problems[(span.line, span.column, diagnostic.code.code)] = diagnostic

    # -- helpers --
    def _span(self, children) -> Span:
        parts = [c for c in children if c is not None and not isinstance(c, (list, str)) or isinstance(c, TOKEN_TYPES)]
        first, last = parts[0], parts[-1]
        return _span_of(first, self.file).to(_span_of(last, self.file))

    def _tok(self, t: Token) -> Span:
        return Span(self.file, t.line, t.column, t.end_line, t.end_column)

    def _name(self, t: Token) -> ast.Name:
        if t.type == "STRING":
            return ast.Name(unquote(t), self._tok(t), quoted=True)
        return ast.Name(t.value, self._tok(t))

    # -- values --
    def string(self, c):
        return ast.Value(unquote(c[0]), self._tok(c[0]))

    def number(self, c):
        text = c[0].value
        is_float = any(ch in text for ch in ".eE")
        # (`1e999` is infinity, on purpose: `x >= -1e999` is a condition docs/semantics.md lowers exactly.)
        return ast.Value(float(text) if is_float else int(text), self._tok(c[0]))

    def boolean(self, c):
        return ast.Value(c[0].value == "true", self._tok(c[0]))

    def null(self, c):
        return ast.Value(None, self._tok(c[0]))

    def _nested(self, value, children, span) -> ast.Value:
        depth = 1 + max((child.depth for child in children), default=0)
        if depth > MAX_VALUE_DEPTH:
            raise SyntaxProblem(f"lists and objects nest deeper than {MAX_VALUE_DEPTH} levels", span)
        return ast.Value(value, span, depth)

    def list(self, c):
        # The brackets are named terminals so that even `[]` has a position.
        items = [x for x in c[1:-1] if x is not None]
        return self._nested(items, items, self._span([c[0], c[-1]]))

    def object(self, c):
        # The braces are named terminals so that even `{ }` has a position.
        pairs = [x for x in c[1:-1] if x is not None]
        out: dict = {}
        for key, value in pairs:
            if key.text in out:
                raise SyntaxProblem(f"key `{key.text}` appears twice in this object", key.token)
            out[key.text] = value
        span = self._span([p[1] for p in pairs]) if pairs else self._span([c[0], c[-1]])
        return self._nested(out, out.values(), span)

    def pair(self, c):
        return (_Key(self._name(c[0]).text, c[0]), c[1])

    def name(self, c):
        return self._name(c[0])

    # -- header, imports, definitions --
    def router_header(self, c):
        name, desc = c
        desc_v = ast.Value(unquote(desc), self._tok(desc)) if desc is not None else None
        return ast.RouterHeader(name, desc_v, name.span)

    def metadata_block(self, c):
        return ast.MetadataBlock(c[0], c[0].span)

    def module_path(self, c):
        return c

    def import_module(self, c):
        toks = c[0]
        return ast.Import(".".join(t.value for t in toks), None, self._span(toks))

    def import_file(self, c):
        return ast.Import(None, ast.Value(unquote(c[0]), self._tok(c[0])), self._tok(c[0]))

    def provider_def(self, c):
        name = self._name(c[0])
        return ast.ProviderDef(name, c[1], name.span)

    def profile_def(self, c):
        name = self._name(c[0])
        return ast.ProfileDef(name, c[1], name.span)

    def defaults_def(self, c):
        return ast.DefaultsDef(c[0], c[0].span)

    def target_def(self, c):
        name = self._name(c[0])
        return ast.TargetDef(name, c[1], name.span)

    def condition_def(self, c):
        name = self._name(c[0])
        return ast.ConditionDef(name, c[1], name.span)

    # -- targets --
    def target_call(self, c):
        provider = self._name(c[0])
        args = c[1] or []
        return ast.TargetCall(provider, args, c[2], self._span([c[0], *args]))

    def call_args(self, c):
        return [ast.Value(unquote(t), self._tok(t)) for t in c if t is not None]

    def target_literal(self, c):
        return ast.TargetLiteral(c[0], c[0].span)

    def target_ref(self, c):
        name = self._name(c[0])
        return ast.TargetRef(name, name.span)

    def settings(self, c):
        return ast.Settings(list(c[1:-1]), self._span([c[0], c[-1]]))

    def _setting(key):
        def make(self, c):
            value = c[0]
            if isinstance(value, TOKEN_TYPES):
                if value.type == "STRING":
                    value = ast.Value(unquote(value), self._tok(value))
                elif value.type == "DURATION":
                    value = self._duration(value)
                elif value.type == "INT":
                    value = ast.Value(int(value.value), self._tok(value))
                elif value.type == "BOOL":
                    value = ast.Value(value.value == "true", self._tok(value))
                elif value.type == "NAME":
                    value = self._name(value)
            span = value.span if not isinstance(value, list) else (self._span(value) if value else None)
            return ast.Setting(key, value, span)

        return make

    set_provider = _setting("provider")
    set_model = _setting("model")
    set_endpoint = _setting("endpoint")
    set_weight = _setting("weight")
    set_label = _setting("label")
    set_timeout = _setting("timeout")
    set_retries = _setting("retries")
    set_headers = _setting("headers")
    set_function_name = _setting("function_name")
    set_request_class = _setting("request_class")
    set_cost = _setting("cost")
    set_is_shadow = _setting("is_shadow")
    set_input_cost = _setting("input_cost")
    set_output_cost = _setting("output_cost")
    set_capabilities = _setting("capabilities")
    set_compliance = _setting("compliance")
    set_tags = _setting("tags")
    use_profile = _setting("use")
    cb_failures = _setting("failures")
    cb_cooldown = _setting("cooldown")
    cb_successes = _setting("successes")
    hc_path = _setting("path")
    hc_interval = _setting("interval")
    hc_timeout = _setting("timeout")

    def _block_setting(self, key: str, c) -> ast.Setting:
        # Located at the sub-settings, or at the braces of an empty block (`circuit_breaker { }`).
        inner = c[1:-1]
        return ast.Setting(key, inner, self._span(inner) if inner else self._span([c[0], c[-1]]))

    def set_circuit_breaker(self, c):
        return self._block_setting("circuit_breaker", c)

    def set_health_check(self, c):
        return self._block_setting("health_check", c)

    def _duration(self, t: Token) -> ast.Duration:
        m = _DURATION.fullmatch(t.value)
        return ast.Duration(_within_float(float(m.group(1)) * _UNIT_MS[m.group(2)], t.value, t), t.value, self._tok(t))

    # -- conditions --
    def field_path(self, c):
        segments = [unquote(t) if t.type == "STRING" else t.value for t in c]
        return ast.FieldPath(segments, self._span(c))

    def value_operator(self, c):
        return " ".join(t.value for t in c)  # as written: `not contains`, `matches`, `>=`

    list_operator = unary_operator = value_operator

    def compare(self, c):
        path, spelling, value = c
        op = operators.BY_SPELLING[spelling].name
        return ast.Compare(path, op, value, path.span.to(value.span), spelling)

    def unary_compare(self, c):
        path, spelling = c
        return ast.Compare(path, operators.BY_SPELLING[spelling].name, None, path.span, spelling)

    def annotated(self, c):
        cmp, note = c
        cmp.note = ast.Value(unquote(note), self._tok(note))
        cmp.span = cmp.span.to(cmp.note.span)
        return cmp

    def any_of(self, c):
        left, right = c
        items = (left.items if isinstance(left, ast.AnyOf) else [left]) + [right]
        return ast.AnyOf(items, left.span.to(right.span))

    def all_of(self, c):
        left, right = c
        items = (left.items if isinstance(left, ast.AllOf) else [left]) + [right]
        return ast.AllOf(items, left.span.to(right.span))

    def negation(self, c):
        return ast.Not(c[0], c[0].span)

    def condition_ref(self, c):
        name = self._name(c[0])
        return ast.CondRef(name, name.span)

    # -- strategies --
    def route(self, c):
        primary, shadow = c
        if shadow is None:
            return ast.Strategy("single", [primary], primary.span)
        return ast.Strategy("shadow", [primary, shadow], primary.span.to(shadow.span))

    def sticky(self, c):
        path, salt = c
        salt_v = ast.Value(unquote(salt), self._tok(salt)) if salt is not None else None
        return ast.Sticky(path, salt_v, path.span)

    def percent(self, c):
        text = c[0].value
        # Exact division: `33.3%` is the float nearest 0.333, not 33.3 / 100.
        exact = Fraction(text[:-1]) / 100
        return (_within_float(exact, text, c[0]), text, self._tok(c[0]))

    def fraction(self, c):
        v = c[0]
        return (float(v.value), str(v.value), v.span)

    def split_entry(self, c):
        (weight, text, wspan), label, target = c
        return ast.SplitEntry(weight, text, self._name(label) if label is not None else None, target, wspan.to(target.span))

    def no_failover(self, c):
        return self._tok(c[0]).to(self._tok(c[1]))

    def split(self, c):
        sticky, no_failover, *entries = c
        span = entries[0].span.to(entries[-1].span)
        return ast.Strategy("split", [e.target for e in entries], span, entries=entries, sticky=sticky,
                            no_failover=no_failover)

    def target_list(self, c):
        return list(c)

    def _listed(kind):
        def make(self, c):
            targets = c[-1]
            return ast.Strategy(kind, targets, targets[0].span.to(targets[-1].span))

        return make


    def hybrid(self, c):
        weights, targets = c
        strategy = ast.Strategy("hybrid", targets, targets[0].span.to(targets[-1].span))
        for key, value in weights:
            first = strategy.hybrid.get(key)
            if first is None:
                strategy.hybrid[key] = value
                continue
            self._problem(Diagnostic(
                HYBRID_WEIGHTS, f"the `{key}` weight is given twice", value.span,
                help=f"give `{key}` once; the first one, {first.value:g}, is used",
                related=[Related(first.span, f"`{key}` first given here")],
            ))
        return strategy

    def hybrid_weights(self, c):
        return [x for x in c if x is not None]

    def _score_factor(factor):
        def make(self, c):
            return (factor, c[0])

        return make

    # -- schema --
    def schema_def(self, c):
        fields = c[1:-1]
        return ast.SchemaDef(fields, self._span(fields) if fields else self._span([c[0], c[-1]]))

    def schema_field(self, c):
        path, (type_name, enum, span) = c
        return ast.SchemaField(path, type_name, enum, path.span.to(span))

    def simple_type(self, c):
        return (c[0].value, [], self._tok(c[0]))

    def enum_type(self, c):
        values = [v for v in c if v is not None]
        return ("enum", values, values[-1].span)

    # -- rules --
    def rule_def(self, c):
        name, *items = c
        rule = ast.RuleDef(name, name.span)
        for item in items:
            kind, value = item if isinstance(item, tuple) else ("strategy", item)
            if kind in ("priority", "description", "enabled"):
                first = getattr(rule, kind)
                if first is not None:  # the rule keeps one; fmt and the IR must not pick between two
                    what = {"priority": "a priority", "description": "a description",
                            "enabled": "`enabled` or `disabled`"}[kind]
                    self._problem(Diagnostic(
                        DUPLICATE_SETTING, f"rule `{name.text}` has {what} twice in its header", value.span,
                        help="keep one", related=[Related(first.span, "first given here")],
                    ))
                    continue
            if kind == "priority":
                rule.priority = value
            elif kind == "description":
                rule.description = value
            elif kind == "enabled":
                rule.enabled = value
            elif kind == "when":
                rule.whens.append(value)
            else:
                rule.strategies.append(value)
        return rule

    def priority(self, c):
        return ("priority", ast.Value(int(c[0].value), self._tok(c[0])))

    def rule_description(self, c):
        return ("description", ast.Value(unquote(c[0]), self._tok(c[0])))

    def disabled(self, c):
        return ("enabled", ast.Name("disabled", self._tok(c[0])))

    def enabled(self, c):
        return ("enabled", ast.Name("enabled", self._tok(c[0])))

    def when(self, c):
        return ("when", c[0])

    # -- tests --
    def test_def(self, c):
        name, *items = c
        name_v = ast.Value(unquote(name), self._tok(name))
        test = ast.TestDef(name_v, [], [], name_v.span)
        for kind, value in items:
            if kind == "request":
                test.requests.append(value)
            else:
                test.expectations.extend(value)
        return test

    def test_request(self, c):
        return ("request", c[0])

    def test_expect(self, c):
        return ("expect", list(c))

    def expect_rule(self, c):
        return ast.Expectation("rule", c[0], c[0].span)

    def expect_target(self, c):
        return ast.Expectation("target", c[0], c[0].span)

    def expect_target_in(self, c):
        names, span = c[0]
        return ast.Expectation("target_in", None, span, names)

    def expect_targets(self, c):
        names, span = c[0]
        return ast.Expectation("targets", None, span, names)

    def expect_shadow(self, c):
        return ast.Expectation("shadow", c[0], c[0].span)

    def name_list(self, c):
        """The names of `[a, b]` and the span from `[` to `]`."""
        return [n for n in c[1:-1] if n is not None], self._span([c[0], c[-1]])

    def expect_no_match(self, c):
        return ast.Expectation("no_match", None, self._tok(c[0]))

    # -- tenants: workspaces and agents --
    def policy_def(self, c):
        kind, name, desc, _open, *items = c
        desc_v = ast.Value(unquote(desc), self._tok(desc)) if desc is not None else None
        return ast.PolicyDef(kind.value, name, desc_v, list(items[:-1]), name.span)

    def policy_kind(self, c):
        return c[0]

    currency = budget_period = rate_unit = rate_period = policy_kind

    def budget_first(self, c):
        amount, currency, period = c
        return ast.Budget(amount, period.value, amount.span.to(self._tok(period)), currency.value)

    def budget_more(self, c):
        amount, period = c
        return ast.Budget(amount, period.value, amount.span.to(self._tok(period)))

    def rate_limit(self, c):
        quantity, unit, per = c
        text = quantity.value
        scale = {"k": 1000, "M": 1_000_000}.get(text[-1], 1)
        number = Fraction(text.rstrip("kM")) * scale
        if number.denominator != 1:
            raise SyntaxProblem(f"`{text}` is not a whole number", quantity,
                                help="a limit counts whole requests or tokens")
        return ast.RateLimit(int(number), text, unit.value, per.value, self._tok(quantity).to(self._tok(per)))

    def _policy_list(key):
        def make(self, c):
            value = c[0]
            if isinstance(value, tuple):  # a name_list: ([names], span)
                return ast.PolicyItem(key, value[0], value[1])
            return ast.PolicyItem(key, value, value.span)

        return make

    policy_allow_targets = _policy_list("allow_targets")
    policy_allow_providers = _policy_list("allow_providers")
    policy_allow_tags = _policy_list("allow_tags")
    policy_compliance = _policy_list("compliance")
    policy_capabilities = _policy_list("capabilities")

    def policy_budgets(self, c):
        return ast.PolicyItem("budget", list(c), c[0].span.to(c[-1].span))

    def policy_limits(self, c):
        return ast.PolicyItem("limit", list(c), c[0].span.to(c[-1].span))

    def policy_prefer(self, c):
        return ast.PolicyItem("prefer", list(c), c[0].span.to(c[-1].span))

    def policy_fallback(self, c):
        return ast.PolicyItem("fallback", list(c), c[0].span.to(c[-1].span))

    def policy_require(self, c):
        *requirements, otherwise = c
        return ast.PolicyItem("require", requirements, requirements[0].span.to(requirements[-1].span), otherwise)

    def policy_timezone(self, c):
        value = ast.Value(unquote(c[0]), self._tok(c[0]))
        return ast.PolicyItem("timezone", value, value.span)

    def require_success(self, c):
        op, percent = c
        fraction, text, span = self.percent([percent])
        return ast.Requirement("success", op.value, (fraction, text), self._tok(op).to(span))

    def require_latency(self, c):
        percentile, op, duration = c
        value = self._duration(duration)
        name = self._name(percentile)
        return ast.Requirement("latency", op.value, value, name.span.to(value.span), name)

    def require_cost(self, c):
        op, value = c
        return ast.Requirement("cost", op.value, value, self._tok(op).to(value.span))

    def unqualified(self, c):
        return ast.Name(" ".join(t.value for t in c), self._tok(c[0]).to(self._tok(c[-1])))

    def start(self, c):
        return list(c)


# The grammar's alias of a listed strategy is its kind; of a hybrid weight, `{factor}_weight`.
for _defn in strategies.STRATEGIES.values():
    if _defn.layout == "list":
        setattr(_Builder, _defn.kind, _Builder._listed(_defn.kind))
    for _factor in _defn.score_factors:
        setattr(_Builder, f"{_factor}_weight", _Builder._score_factor(_factor))


class _Key:
    __slots__ = ("text", "token")

    def __init__(self, text, token):
        self.text = text
        self.token = token


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        maybe_placeholders=True,
        propagate_positions=False,
    )


# Human names for terminals in "expected ..." lists.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "STRING": "a string",
    "SIGNED_NUMBER_TOKEN": "a number",
    "SIGNED_INT_TOKEN": "a whole number",
    "INT": "a whole number",
    "DURATION": "a duration like `30s` or `500ms`",
    "PERCENT": "a percentage like `80%`",
    "BOOL": "`true` or `false`",
    "COMPARE": "a comparison (`==`, `!=`, `>`, ...)",
    "TYPE_NAME": "a type (string, number, integer, bool, list, object, any)",
    "$END": "the end of the file",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    try:
        term = _lark().get_terminal(name)
    except KeyError:
        return name.lower()
    if term.pattern.type == "str":
        return f"`{term.pattern.value}`"
    return name.lower()


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    text = str(token.value)
    if len(text) > 30:
        text = text[:27] + "..."
    return f"`{text}`"


# Parser states -> messages, learnt from examples (lark's match_examples).
_EXAMPLES: dict[str, list[str]] = {
    "a rule needs a body in `{ ... }` after its header": [
        "router r rule a priority 1 route x",
        "router r rule a route x",
    ],
    "a rule header takes `priority N`, a description string, `enabled` or `disabled`": [
        "router r rule a priority {",
        "router r rule a priority x {",
    ],
    "a condition needs an operator after the field, e.g. `user.tier == \"premium\"`": [
        "router r rule a { when user.tier }",
        "router r rule a { when user.tier route x }",
        "router r condition c = user.tier",
    ],
    "a comparison needs a value after the operator": [
        "router r rule a { when user.tier == }",
        "router r rule a { when user.tier == route x }",
    ],
    "`in` takes a list, e.g. `request.type in [\"image\", \"video\"]`": [
        'router r rule a { when request.type in "image" }',
        "router r rule a { when request.type in x }",
    ],
    "a split entry starts with a weight, e.g. `80% control: target_name`": [
        "router r rule a { split { control: x } }",
        "router r rule a { split { x } }",
    ],
    "a shadow takes one target: `route PRIMARY shadow CANDIDATE`": [
        "router r rule a { route x shadow y, z }",
        "router r rule a { route x shadow y z }",
    ],
    "a timeout needs a unit, e.g. `30s` or `500ms`": [
        "router r target t = x { timeout 30 }",
    ],
}


def _friendly_message(exc: UnexpectedInput, text: str) -> str | None:
    problems = _STATE.builder.problems
    try:
        return exc.match_examples(_inline_lark(accelerated=False).parse, _EXAMPLES, use_accepts=True)
    except (UnexpectedInput, VisitError, SyntaxProblem):  # an example failing oddly must not mask the real error
        return None
    except TypeError:  # lark 1.3 formats a debug message with %d on a parser state in one branch
        return None
    finally:
        _STATE.builder.problems = problems  # the examples' own problems are not the file's


def _syntax_diagnostic(exc: UnexpectedInput, source: Source) -> Diagnostic:
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        ch = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else "?"
        message = f"unexpected character `{ch}`"
        span = Span(source.name, line, column, line, column + 1)
        hint = None
        if ch == "'":
            hint = 'strings use double quotes: "like this"'
        elif ch == "\t":
            hint = None
        return Diagnostic(SYNTAX_ERROR, message, span, help=hint)
    token = exc.token if isinstance(exc, (UnexpectedToken, UnexpectedEOF)) else None
    expected = sorted(getattr(exc, "accepts", None) or getattr(exc, "expected", None) or [])
    if token is not None and token.type != "$END":
        span = Span(source.name, token.line, token.column, token.end_line, token.end_column)
        found = _describe_token(token)
    else:
        token = None
        last_line = source.text.count("\n") + 1
        last_col = len(source.lines[-1]) + 1 if source.lines else 1
        span = Span(source.name, last_line, last_col, last_line, last_col + 1)
        found = "the end of the file"
    unclosed = _unclosed_block(exc, token, expected, source)
    if unclosed is not None:
        return unclosed
    friendly = _friendly_message(exc, source.text)
    described = sorted({_describe_terminal(t) for t in expected if not t.startswith("__")})
    expected_text = ", ".join(described[:8]) + (", ..." if len(described) > 8 else "")
    if friendly:
        message = f"{friendly} (found {found})"
    else:
        message = f"unexpected {found}"
    hint = f"expected {expected_text}" if expected_text else None
    meant = _meant(token, expected, source) if token is not None else None
    if meant is not None:
        hint, span, written = meant
        if written is not None:  # a word spelt wrong: "the rule needs a body" would mislead
            message = f"unexpected `{written}`"
    return Diagnostic(SYNTAX_ERROR, message, span, help=hint)


_NEGATED_WORDS = ("in", "contains", "exists")  # `not in`, `not contains`, `not exists`: two words


def _meant(token: Token, expected: list[str], source: Source) -> tuple[str, Span, str | None] | None:
    """What the user probably meant by an unexpected token, judged by what the
    parser would have accepted there: a keyword spelt wrong, `=` for `==`,
    Mixtrain's `not_in` for `not in`. The help text, the span to mark, and the
    misspelt word as written (None when the token is not a misspelt word)."""
    here = Span(source.name, token.line, token.column, token.end_line, token.end_column)
    if token.type == "EQUAL" and "COMPARE" in expected:
        return "write `==` to compare: `=` only defines names", here, None
    start = getattr(token, "start_pos", None)
    word = str(token.value)
    if isinstance(start, int) and word.startswith("_") and word[1:] in _NEGATED_WORDS \
            and source.text[max(start - 3, 0):start] == "not":
        negated = Span(source.name, token.line, token.column - 3, token.end_line, token.end_column)
        return f"write `not {word[1:]}`, two words (`not_{word[1:]}` is the JSON spelling)", negated, f"not{word}"
    if token.type != "NAME":
        return None
    keywords = {}
    for name in expected:
        try:
            pattern = _lark().get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str" and pattern.value.isidentifier():
            keywords[pattern.value] = name
        elif name == "TYPE_NAME":
            keywords.update(dict.fromkeys(TYPE_NAMES, name))
    close = difflib.get_close_matches(word, list(keywords), n=1, cutoff=0.75) or difflib.get_close_matches(
        word.replace("_", ""), [k.replace("_", "") for k in keywords], n=1, cutoff=0.75)
    if not close:
        return None
    spelled = next(k for k in keywords if k == close[0] or k.replace("_", "") == close[0])
    return f"did you mean `{spelled}`?", here, word


def _unclosed_block(exc: UnexpectedInput, token: Token | None, expected: list[str],
                    source: Source) -> Diagnostic | None:
    """A `{` left open shows up where the next item starts (or at the end of
    the file); report it at the `{` that is never closed."""
    if "RBRACE" not in expected:
        return None
    if token is not None:
        at_line_start = source.line_text(token.line)[: token.column - 1].strip() == ""
        if not (at_line_start and _RESTART.match(source.line_text(token.line))):
            return None
        end = token.start_pos
    else:
        end = len(source.text)
    open_braces = []
    for m in _BRACES.finditer(source.text, 0, end):
        if m.group() == "{":
            open_braces.append(m.start())
        elif m.group() == "}" and open_braces:
            open_braces.pop()
    if not open_braces:
        return None
    pos = open_braces[-1]
    line = source.text.count("\n", 0, pos) + 1
    column = pos - (source.text.rfind("\n", 0, pos) + 1) + 1
    span = Span(source.name, line, column, line, column + 1)
    if token is not None:
        where = f"before `{token.value}` on line {token.line}"
        related = [Related(Span(source.name, token.line, token.column, token.end_line, token.end_column),
                           "the next item starts here")]
    else:
        where, related = "at the end of the file", []
    return Diagnostic(SYNTAX_ERROR, UNCLOSED_BLOCK, span, help=f"add the missing `}}` {where}",
                      related=related)


UNCLOSED_BLOCK = "this `{` is never closed"
# Braces outside strings and comments.
_BRACES = re.compile(r'r"[^"\n]*"|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}]')
TYPE_NAMES = ("string", "number", "integer", "bool", "list", "object", "any")


_RESTART = re.compile(
    r"^[ \t]*(router|rule|target|condition|test|import|provider|profile|defaults|schema|metadata|workspace|agent)\b", re.MULTILINE
)


def parse(source: Source) -> tuple[ast.File, list[Diagnostic]]:
    """Parse a whole file. On a syntax error, report it and resume at the
    next line that starts a top-level item, so one run shows every error."""
    text = source.text
    diagnostics: list[Diagnostic] = []
    items: list = []
    comments: list[Token] = []
    offset = 0
    with _PARSE_LOCK:
        _STATE.builder.file = source.name
        _STATE.builder.problems = {}
        _STATE.comments = comments
        while True:
            token = None
            masked = _mask_prefix(text, offset)
            try:
                items.extend(_inline_lark().parse(masked))
                break
            except UnexpectedInput as exc:
                exc = _diagnosable(exc, masked)
                diagnostic = _syntax_diagnostic(exc, source)
                diagnostics.append(diagnostic)
                token = exc
                if diagnostic.message == UNCLOSED_BLOCK and isinstance(exc, UnexpectedToken) \
                        and exc.token.type != "$END" and exc.token.start_pos > offset:
                    offset = exc.token.start_pos  # the item after the open block is whole: parse it
                    continue
            except VisitError as exc:
                if not isinstance(exc.orig_exc, SyntaxProblem):
                    raise
                diagnostics.append(_problem_diagnostic(exc.orig_exc, source))
                token = exc.orig_exc.token
            except SyntaxProblem as problem:
                diagnostics.append(_problem_diagnostic(problem, source))
                token = problem.token
            except RecursionError:
                span = Span(source.name, 1, 1, 1, 2)
                diagnostics.append(Diagnostic(SYNTAX_ERROR, "the file nests too deeply to parse", span))
                break
            resume = _next_restart(text, token)
            if resume is None or len(diagnostics) >= MAX_SYNTAX_ERRORS:
                break
            offset = resume
        _STATE.comments = None
        diagnostics.extend(_STATE.builder.problems.values())
    file_comments = [
        ast.Comment(t.value, Span(source.name, t.line, t.column, t.end_line, t.end_column))
        for t in sorted(set(comments), key=lambda t: t.start_pos)
    ]
    file_span = Span(source.name, 1, 1, max(len(source.lines), 1), 1)
    return ast.File(items, file_comments, file_span), diagnostics


def _problem_diagnostic(problem: SyntaxProblem, source: Source) -> Diagnostic:
    tok = problem.token
    span = Span(source.name, tok.line, tok.column, tok.end_line, tok.end_column)
    if span.line <= 0:  # an empty list or object has no position of its own
        span = Span(source.name, 1, 1, 1, 2)
    return Diagnostic(SYNTAX_ERROR, problem.message, span, help=problem.help)


class _ParseState:
    """The one compiled parser's per-parse state: lark fixes the transformer
    and lexer callbacks when the parser is built, so they read from here."""

    def __init__(self):
        self.builder = _Builder("<none>")
        self.comments: list[Token] | None = None

    def on_comment(self, token: Token) -> Token:
        if self.comments is not None:
            self.comments.append(token)
        return token


_STATE = _ParseState()
_PARSE_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _inline_lark(accelerated: bool = True) -> Lark:
    plugins = {"_plugins": lark_cython.plugins} if accelerated and lark_cython is not None else {}
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        maybe_placeholders=True,
        propagate_positions=False,
        transformer=_STATE.builder,
        lexer_callbacks={"COMMENT": _STATE.on_comment},
        **plugins,
    )


def _diagnosable(exc: UnexpectedInput, text: str) -> UnexpectedInput:
    """The pure-Python parser's version of a syntax error: its exceptions
    support `match_examples` and `accepts`, which the Cython build's lack.
    Errors are rare, so parsing once more is cheap."""
    if lark_cython is None:
        return exc
    try:
        _inline_lark(accelerated=False).parse(text)
    except UnexpectedInput as pure:
        return pure
    except (VisitError, SyntaxProblem):
        return exc
    return exc


def _mask_prefix(text: str, offset: int) -> str:
    """Blank out text before `offset`, keeping newlines so positions hold."""
    if offset == 0:
        return text
    return re.sub(r"[^\n]", " ", text[:offset]) + text[offset:]


def _next_restart(text: str, at) -> int | None:
    """Where to resume after an error: the next line, after the error's line,
    that starts a top-level item."""
    line = getattr(at, "line", None)
    if not isinstance(line, int) or line < 1:
        return None
    pos = 0
    for _ in range(line):
        nl = text.find("\n", pos)
        if nl < 0:
            return None
        pos = nl + 1
    m = _RESTART.search(text, pos)
    return m.start() if m else None
