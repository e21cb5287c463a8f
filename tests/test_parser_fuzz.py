"""Whatever the text, the front end answers with diagnostics, never an
exception: random token soups, mutations of a valid file, and programs
generated from the grammar itself (with mutations of their tokens)."""

import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark

from routelang import CompileError, ConfigError, loads
from routelang.backends.json import lower
from routelang.backends.python import generate
from routelang.compiler import compile_text
from routelang.diagnostics import render_text
from routelang.fmt import FormatError, format_text
from routelang.parser import grammar_text

SAMPLE = (Path(__file__).parent.parent / "examples" / "_sample_syntax.route").read_text()
TOKENS = [
    "router", "rule", "target", "condition", "when", "route", "split", "fallback", "shadow", "sticky", "by",
    "priority", "import", "std.providers", "{", "}", "(", ")", "[", "]", ",", ":", "=", "==", "!=", ">", ">=",
    "=~", "and", "or", "not", "in", "exists", "80%", "30s", "1", "-1", "0.5", '"s"', 'r"x"', '"${X}"', "user.tier",
    "modal", "#c\n", "\n", " ", "test", "expect", "request", "match", "no", "schema", "enum", "defaults", "use",
    "hybrid", "cost", "latency", "per", "1k", "\x00", "é", '"\\u00e9"', '"\\q"',
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_token_soup_never_raises(tokens):
    result = compile_text(" ".join(tokens), name="soup.route")
    assert isinstance(result.diagnostics, list)
    if result.router is None:
        assert result.diagnostics  # no router means something was reported


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SAMPLE) - 1), st.integers(0, 40), st.text(max_size=8))
def test_mutated_sample_never_raises(start, length, replacement):
    text = SAMPLE[:start] + replacement + SAMPLE[start + length:]
    result = compile_text(text, name="mutated.route")
    for diag in result.diagnostics:
        assert diag.span.line >= 1 and diag.span.column >= 1, diag


# ---- programs of the grammar's own shape ---------------------------------------------
#
# The generator reads grammar/routelang.lark through lark's API: the compiled
# rules (every alternative, with `[x]`, `x*` and `x+` already unfolded into
# alternatives and recursive helper rules) and the terminals. Each nonterminal
# picks one of its alternatives, so every construct appears, repeated or left
# out at random; past MAX_DEPTH only the shortest way to finish is taken.


GRAMMAR = Lark(grammar_text(), parser="lalr", lexer="contextual", maybe_placeholders=True)
ALTERNATIVES: dict[str, list] = {}  # nonterminal -> its lark Rules (expansion, alias)
for _rule in GRAMMAR.rules:
    ALTERNATIVES.setdefault(_rule.origin.name, []).append(_rule)
TERMINALS = {t.name: t for t in GRAMMAR.terminals if t.name not in GRAMMAR.ignore_tokens}
KEYWORDS = sorted(t.pattern.value for t in TERMINALS.values() if t.pattern.type == "str")
MAX_DEPTH = 9


def _heights() -> dict[str, int]:
    """The fewest levels each nonterminal needs to reach terminals only."""
    height: dict[str, int] = {}
    changed = True
    while changed:
        changed = False
        for name, alternatives in ALTERNATIVES.items():
            for alternative in alternatives:
                parts = [0 if s.is_term else height.get(s.name) for s in alternative.expansion]
                if None not in parts:
                    h = 1 + max(parts, default=0)
                    if h < height.get(name, 1 << 30):
                        height[name] = h
                        changed = True
    return height


HEIGHT = _heights()
assert set(HEIGHT) == set(ALTERNATIVES), "a nonterminal can never finish"

# Most names and strings come from small pools, so that references resolve and
# a share of the programs checks clean and reaches fmt and both backends; the
# rest are drawn from the terminal's own regular expression.
NAMES = ["a", "b", "c", "cond", "a", "b", "c", "cond", "t", "p", "fast", "resilient", "modal", "custom", "std",
         "providers", "user", "tier", "headers", "x", "rule", "target", "in", "not"]
STRINGS = ['"https://e.example.com"', '"p"', '"m"', '"x.y"', '"${X:-http://h}"', '"${UNSET}"', 'r"^a+$"',
           '"("', '"/health"', '""', '"a b"', '"\\u00e9"', '"premium"']
POOLS = {
    "NAME": NAMES,
    "STRING": STRINGS,
    "SIGNED_NUMBER_TOKEN": ["0", "1", "-1", "0.5", "1e309", "100", ".25", "1.0"],
    "SIGNED_INT_TOKEN": ["0", "1", "-3", "100"],
    "INT": ["0", "1", "3", "9"],
    "PERCENT": ["50%", "100%", "33.3%", "0%", "150%"],
    "DURATION": ["30s", "50ms", "1.5m", "1h", "0s"],
}


# A name means what its place in the grammar makes it: (rule, alias) -> pool.
NAMES_BY_PLACE = {
    ("atom", "condition_ref"): ["cond"],
    ("target_expr", "target_ref"): ["a", "b", "c"],
    ("target_call", None): ["custom", "modal", "openai", "fal"],
    ("setting", "use_profile"): ["fast", "resilient"],
    ("segment", None): ["user", "tier", "x", "headers", "request", "model", "in", "id"],
}


STRINGS_BY_PLACE = {
    ("segment", None): ['"x-y"', '"a b"', '"tier"'],
    ("call_args", None): ['"m"', '"https://e.example.com"'],
}
# How many times more often an alternative is taken than the others of its
# rule: a target that is a reference is complete, so more programs check clean.
PREFERRED = {("target_expr", "target_ref"): 6}


def _terminal(name: str, place: tuple) -> st.SearchStrategy[str]:
    term = TERMINALS[name]
    if term.pattern.type == "str":
        return st.just(term.pattern.value)
    from_regex = st.from_regex(re.compile(term.pattern.to_regexp()), fullmatch=True).filter(
        lambda s: "\n" not in s or name == "STRING")
    if name == "NAME":
        pool = NAMES_BY_PLACE.get(place, NAMES)
    elif name == "STRING":
        pool = STRINGS_BY_PLACE.get(place, STRINGS)
    else:
        pool = POOLS.get(name)
    if pool is None:
        return from_regex
    pool_strategy = st.sampled_from(pool)
    return st.integers(0, 15).flatmap(lambda k: from_regex if k == 0 else pool_strategy)


@st.composite
def grammar_tokens(draw, symbol: str = "start", depth: int = 0) -> list[str]:
    alternatives = ALTERNATIVES[symbol]
    if depth >= MAX_DEPTH:
        shortest = min(_height_of(a) for a in alternatives)
        alternatives = [a for a in alternatives if _height_of(a) == shortest]
    alternatives = [a for a in alternatives for _ in range(PREFERRED.get((symbol, a.alias), 1))]
    alternative = alternatives[draw(st.integers(0, len(alternatives) - 1))]
    place = (symbol, alternative.alias)
    out: list[str] = []
    for sym in alternative.expansion:
        if sym.is_term:
            out.append(draw(_terminal(sym.name, place)))
        else:
            out.extend(draw(grammar_tokens(sym.name, depth + 1)))
    return out


def _height_of(alternative) -> int:
    return 1 + max((0 if s.is_term else HEIGHT[s.name] for s in alternative.expansion), default=0)


PRELUDE = [
    "target a = { provider \"p\" model \"a\" endpoint \"https://a.example.com\" }",
    "target b = { provider \"p\" model \"b\" endpoint \"https://b.example.com\" cost 1 per 1k }",
    "target c = custom(\"c\", \"https://c.example.com\")",
    "condition cond = user.tier == \"premium\"",
    "import std.providers", "import std.profiles",
]


@st.composite
def unmutated_programs(draw) -> list[str]:
    """Either anything the grammar allows after a router header, or rules (and
    tests) after definitions they can refer to, so that a share of the programs
    checks clean and reaches fmt and both backends."""
    if draw(st.integers(0, 2)) == 0:
        return ["router", "r", *draw(grammar_tokens())]
    tokens = ["router", "r", *" ".join(PRELUDE).split(" ")]
    more = draw(st.lists(st.sampled_from(["rule", "rule", "rule_def", "test_def", "schema_def"]), max_size=3))
    for n, symbol in enumerate(["rule", *more]):
        if symbol == "rule":  # one `when` and one strategy, each the grammar's own
            when = ["when", *draw(grammar_tokens("expr"))] if draw(st.booleans()) else []
            tokens.extend(["rule", f"r{n}", "{", *when, *draw(grammar_tokens("strategy")), "}"])
        else:
            tokens.extend(draw(grammar_tokens(symbol)))
    return tokens


@st.composite
def programs(draw) -> str:
    """A grammar-shaped program; half the time with 1-3 token mutations."""
    tokens = draw(unmutated_programs())
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        at = draw(st.integers(0, len(tokens)))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert"]))
        if kind == "insert" or not tokens:
            tokens.insert(at, draw(st.sampled_from([*KEYWORDS, *NAMES[:4], *STRINGS[:3], "#c\n"])))
        elif kind == "delete":
            del tokens[min(at, len(tokens) - 1)]
        elif kind == "duplicate":
            at = min(at, len(tokens) - 1)
            tokens.insert(at, tokens[at])
        elif at + 1 < len(tokens):
            tokens[at], tokens[at + 1] = tokens[at + 1], tokens[at]
    separators = draw(st.lists(st.sampled_from([" ", " ", " ", "\n", "  # note\n"]),
                               min_size=len(tokens), max_size=len(tokens)))
    return "".join(t + s for t, s in zip(tokens, separators, strict=True))


def compile_like_the_cli(text: str) -> None:
    """What `check`, `fmt` and `compile --target json|python` do with `text`;
    any exception escaping this is a bug (the CLI would print an internal error)."""
    result = compile_text(text, name="gen.route")
    for diag in result.diagnostics:
        assert diag.span.line >= 1 and diag.span.column >= 1, diag
        assert diag.message
    result.render()
    try:
        formatted = format_text(text, name="gen.route")
    except FormatError as exc:
        assert exc.diagnostics
    else:
        assert format_text(formatted, name="gen.route") == formatted  # idempotent
    if not result.ok:
        assert result.diagnostics
        return
    config, _notes = lower(result.router)
    json.dumps(config, indent=2, ensure_ascii=False)
    module, _ = generate(result.router, source_name="gen.route")
    compile(module, "gen.py", "exec")
    for backend in ("json", "python"):
        try:
            router = loads(text, backend=backend)
        except (CompileError, ConfigError):  # `loads` fills in ${VAR}: an unset one is an error
            continue
        router.route({})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_grammar_shaped_programs_end_in_diagnostics_or_success(text):
    compile_like_the_cli(text)


def test_the_generator_reaches_every_rule_of_the_grammar():
    """Every nonterminal can finish, and every alternative is one that the
    generator can take (the heights exist), so no construct is out of reach."""
    for name, alternatives in ALTERNATIVES.items():
        for alternative in alternatives:
            assert _height_of(alternative) < 1 << 30, name


# Crashes the generator found, kept as plain tests.

def test_an_empty_target_block_is_located():
    result = compile_text("router r\nrule a { least_latency { } }\n", name="e.route")
    [diag] = result.diagnostics
    assert diag.code.code == "RL211"
    assert (diag.span.line, diag.span.column, diag.span.end_column) == (2, 24, 27)


def test_an_empty_breaker_or_health_block_given_twice_is_located():
    # Found by the grammar-directed generator: `circuit_breaker { }` had no position.
    for block in ("circuit_breaker", "health_check"):
        text = f"router r\ndefaults {{ {block} {{ }} {block} {{ }} }}\nrule a {{ route {{ }} }}\n"
        diags = [d for d in compile_text(text, name="e.route").diagnostics if d.code.code == "RL213"]
        assert len(diags) == 1, diags
        first = 12 + len(block) + 1
        second = first + 4 + len(block) + 1
        assert (diags[0].span.line, diags[0].span.column) == (2, second)
        assert (diags[0].related[0].span.line, diags[0].related[0].span.column) == (2, first)
        assert "e.route:2:" in render_text(diags[0], compile_text(text, name="e.route").sources)


def test_an_empty_object_value_is_located():
    # Found by the grammar-directed generator: `{ }` as a value had no position.
    text = 'router r\nrule r0 { when user starts_with { } route { provider "p" model "a" endpoint "https://a.example.com" } }\n'
    [diag] = compile_text(text, name="e.route").diagnostics
    assert diag.code.code == "RL201"
    assert (diag.span.line, diag.span.column, diag.span.end_column) == (2, 33, 36)


def test_an_empty_target_block_formats():
    text = 'router r\ntarget a = custom("m", "https://e.example.com")\nrule r0 { when x == 1 route { } shadow a }\n'
    formatted = format_text(text)
    assert "route {} shadow a" in formatted.replace("{ }", "{}"), formatted


def test_a_rule_header_item_given_twice_is_reported_and_not_formatted():
    text = 'router r\nrule a enabled disabled priority 1 priority 2 { route { } }\n'
    result = compile_text(text, name="h.route")
    twice = [d for d in result.diagnostics if d.code.code == "RL213"]
    assert [(d.span.line, d.span.column) for d in twice] == [(2, 16), (2, 45)]
    assert all(d.related for d in twice)
    try:
        format_text(text)
    except FormatError as exc:
        assert {d.code.code for d in exc.diagnostics} == {"RL213"}
    else:
        raise AssertionError("formatted a rule whose header says two things")
