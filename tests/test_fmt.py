"""`routelang fmt`: one canonical layout that keeps every comment and never changes meaning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark

from routelang.backends.json import lower
from routelang.cli import main
from routelang.compiler import compile_text
from routelang.fmt import FormatError, format_text
from routelang.parser import grammar_text, parse
from routelang.source import Source

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.route"))
assert any(p.name == "_sample_syntax.route" for p in EXAMPLES)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def compiled_json(text: str, path: Path) -> str | None:
    """The compiled config (None for a module without a router)."""
    result = compile_text(text, str(path), path=path)
    if result.router is None:
        return None
    return json.dumps(lower(result.router)[0], sort_keys=True)


def comment_texts(text: str) -> list[str]:
    file, diagnostics = parse(Source("<t>", text))
    assert diagnostics == []
    return [c.text.rstrip() for c in file.comments]


def comment_words(text: str) -> list[str]:
    """Comment text as words: two comments the formatter had to join on one line still count."""
    return sorted(word for c in comment_texts(text) for word in c.replace("#", " ").split())


# ---- every example ----------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_fmt_snapshot(path, snapshot):
    assert format_text(read(path), path.name) == snapshot


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_fmt_is_idempotent(path):
    once = format_text(read(path), path.name)
    assert format_text(once, path.name) == once


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_fmt_keeps_meaning(path):
    text = read(path)
    formatted = format_text(text, path.name)
    assert compiled_json(formatted, path) == compiled_json(text, path)
    before, _ = parse(Source("a", text))
    after, _ = parse(Source("b", formatted))
    assert after.items == before.items


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_fmt_keeps_every_comment(path):
    text = read(path)
    formatted = format_text(text, path.name)
    assert comment_texts(formatted) == comment_texts(text)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_fmt_lines_fit_unless_unbreakable(path):
    for line in format_text(read(path), path.name).splitlines():
        code = line.split("  #")[0]
        outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', code.strip()[5:])
        breakable = any(word in outside_strings for word in (" and ", " or ", ", "))
        assert len(code) <= 100 or not breakable, line


# ---- layout -------------------------------------------------------------------------

def test_canonical_layout_of_a_messy_file():
    text = (
        'router   r  "desc"\nimport std.providers\n\n\n\nimport std.profiles\n'
        'target t = modal("a","b"){timeout 30s retries 2}\n'
        'rule a priority 1 {when user.tier=="x" route t}\n'
        'rule b { fallback t,t }'
    )
    assert format_text(text) == (
        'router r "desc"\n'
        "\n"
        "import std.providers\n"
        "\n"
        "import std.profiles\n"
        "\n"
        'target t = modal("a", "b") { timeout 30s retries 2 }\n'
        "\n"
        "rule a priority 1 {\n"
        '    when user.tier == "x"\n'
        "    route t\n"
        "}\n"
        "\n"
        "rule b {\n"
        "    fallback t, t\n"
        "}\n"
    )


def test_spelling_is_kept():
    text = (
        'router r\nmetadata { "quoted key": 1, bare: 1.50, "n": -2 }\n'
        'rule a { when request.model matches r"^flux-\\d+" and user."odd key" == "\\u00e9"\n'
        "  split { 0.80 t  20% u } }\n"
    )
    out = format_text(text)
    for spelling in ('"quoted key": 1', "bare: 1.50", '"n": -2', 'matches r"^flux-\\d+"', 'user."odd key"',
                     '"\\u00e9"', "0.80 t", "20% u"):
        assert spelling in out


def test_long_when_breaks_before_each_top_level_operator():
    conditions = " and ".join(f'user.field_{i} == "value number {i}"' for i in range(5))
    out = format_text(f"router r\nrule a {{ when {conditions} or user.vip == true route t }}\n")
    assert out == (
        "router r\n"
        "\n"
        "rule a {\n"
        '    when user.field_0 == "value number 0"\n'
        '            and user.field_1 == "value number 1"\n'
        '            and user.field_2 == "value number 2"\n'
        '            and user.field_3 == "value number 3"\n'
        '            and user.field_4 == "value number 4"\n'
        "        or user.vip == true\n"
        "    route t\n"
        "}\n"
    )


@pytest.mark.parametrize("condition", [
    "(a == 1 and b == 2) and c == 3",
    "a == 1 and (b == 2 and c == 3)",
    "(a == 1 or b == 2) and c == 3",
    "not (a == 1 or b == 2)",
    "((a == 1)) or not b exists",
    "a == 1 or (b == 2 and (c == 3 or d == 4))",
])
def test_parentheses_are_kept(condition):
    out = format_text(f"router r\nrule x {{ when {condition} route t }}\n")
    assert f"    when {condition}\n" in out


def test_blank_lines_inside_blocks_are_kept_once_and_never_at_the_edges():
    text = "router r\nrule a {\n\n\n    when x == 1\n\n\n\n    route t\n\n}\n"
    assert format_text(text) == "router r\n\nrule a {\n    when x == 1\n\n    route t\n}\n"


def test_blocks_break_when_too_long():
    endpoint = "https://" + "x" * 40 + ".example.com"
    out = format_text(f'target t = modal("m", "{endpoint}") {{ timeout 30s retries 2 }}\n')
    assert out == f'target t = modal("m", "{endpoint}") {{\n    timeout 30s\n    retries 2\n}}\n'


def test_trailing_commas_are_dropped():
    out = format_text('router r\nmetadata { a: [1, 2,], }\nschema { x: enum("a", "b",) }\n')
    assert 'metadata { a: [1, 2] }' in out and 'x: enum("a", "b")' in out


def test_empty_file_and_comment_only_file():
    assert format_text("") == ""
    assert format_text("\n\n# just a note   \n\n") == "# just a note\n"


# ---- comments -----------------------------------------------------------------------

COMMENTED = """\
# file header

# about the router
router r "desc"   # trailing on the header
import std.providers # why
target t = modal("a",  # inside a call
   "b") { timeout 30s # after timeout
   # before retries
   retries 2
   # end of the settings
   }  # after the target
rule a priority 1 {  # after the brace
    # before when
    when user.tier == "a"   # first
       and user.credits > 3  # second
       # before the third
       or (user.x == 1 # inner
           and user.y == 2)
    # before route

    route t  # after route
    # end of the rule
}
# between rules
rule b { route t }
test "t" { request { user: { # c1
  tier: "a", # c2
  } } expect rule a }
# the end
"""


def test_comments_stay_with_what_they_annotate():
    assert format_text(COMMENTED) == """\
# file header

# about the router
router r "desc"  # trailing on the header

import std.providers  # why

target t = modal(
    "a",  # inside a call
    "b"
) {
    timeout 30s  # after timeout
    # before retries
    retries 2
    # end of the settings
}  # after the target

rule a priority 1 {  # after the brace
    # before when
    when user.tier == "a"  # first
            and user.credits > 3  # second
        # before the third
        or (
            user.x == 1  # inner
            and user.y == 2
        )
    # before route

    route t  # after route
    # end of the rule
}

# between rules
rule b {
    route t
}

test "t" {
    request {
        user: {  # c1
            tier: "a"  # c2
        }
    }
    expect rule a
}
# the end
"""


def test_commented_file_is_stable():
    once = format_text(COMMENTED)
    assert format_text(once) == once
    assert comment_texts(once) == comment_texts(COMMENTED)


# ---- errors -------------------------------------------------------------------------

def test_syntax_errors_are_refused_with_diagnostics():
    with pytest.raises(FormatError) as info:
        format_text("router r\nrule a { when x == }\n", "bad.route")
    assert [d.code.code for d in info.value.diagnostics] == ["RL001"]
    assert info.value.diagnostics[0].span.line == 2


# ---- the command --------------------------------------------------------------------

MESSY = "router r\nrule a {route t}\n"
TIDY = "router r\n\nrule a {\n    route t\n}\n"


def test_cli_rewrites_in_place(tmp_path):
    f = tmp_path / "a.route"
    f.write_text(MESSY)
    result = CliRunner().invoke(main, ["fmt", str(f)])
    assert result.exit_code == 0
    assert f.read_text() == TIDY
    assert CliRunner().invoke(main, ["fmt", "--check", str(f)]).exit_code == 0


def test_cli_check_and_diff_change_nothing(tmp_path):
    f = tmp_path / "a.route"
    f.write_text(MESSY)
    check = CliRunner().invoke(main, ["fmt", "--check", str(f)])
    assert check.exit_code == 1 and "would reformat" in check.output
    diff = CliRunner().invoke(main, ["fmt", "--diff", str(f)])
    assert diff.exit_code == 1
    assert "-rule a {route t}" in diff.output and "+    route t" in diff.output
    assert f.read_text() == MESSY


def test_cli_stdin_to_stdout():
    result = CliRunner().invoke(main, ["fmt", "-"], input=MESSY)
    assert result.exit_code == 0
    assert result.stdout == TIDY


def test_cli_syntax_error_leaves_the_file_alone(tmp_path):
    f = tmp_path / "bad.route"
    f.write_text("router r\nrule a { when x == }\n")
    result = CliRunner().invoke(main, ["fmt", str(f)])
    assert result.exit_code == 1
    assert "error[RL001]" in result.output
    assert f.read_text() == "router r\nrule a { when x == }\n"


def test_cli_missing_file_is_a_usage_error(tmp_path):
    assert CliRunner().invoke(main, ["fmt", str(tmp_path / "nope.route")]).exit_code == 2


# ---- properties: any whitespace and comments between tokens ---------------------------

_LARK = Lark(grammar_text(), parser="lalr", lexer="contextual")


def tokens(text: str) -> list[str]:
    return [str(t) for t in _LARK.parse_interactive(text).iter_parse()]


# Constructs the examples may not have: parentheses of every kind, empty blocks, notes...
CONSTRUCTS = """
router "odd name" "d" metadata { a: [1, -2.5e3, true, null, {}], "b c": { d: [] } }
import "other.route" provider p provider q { model "m" } profile f { weight 2 label "l" }
target x = { provider "a" model "b" endpoint "c" headers { "K": "v" } function_name "f" request_class "rc"
  is_shadow true circuit_breaker { } health_check { path "/h" interval 1m timeout 1.5s } }
condition c1 = not (a.b == 1 or a.c != "x") and ((d exists)) and e not exists
rule "q r" disabled "desc" priority -3 { when c1 or (f =~ "x" note "n" and g not in [1, 2,]) route x shadow p() }
rule s { when (a == 1 and b == 2) and c == 3 or h contains "z" and i not contains "y"
  split sticky by user."id" { 0.5 p("a") { timeout 2h } 50% l: x } }
rule h { hybrid(latency 1, cost 0,) x, p() }
rule n { fallback (split sticky by u { 50% a: (route x shadow p())  0.5 (split { 100% x }) }), (round_robin x, p()) }
test "t" { expect no match request { a: 1 } expect rule s target x expect rule s }
test "u" { request { } expect target in [x, "y",] targets [x, p] shadow p expect rule s }
"""
TOKENS = {p.name: tokens(read(p)) for p in EXAMPLES} | {"constructs": tokens(CONSTRUCTS)}
PLAIN_GAPS = [" ", "\n", "   ", "\n        ", "\t"]
COMMENT_GAPS = PLAIN_GAPS + ["  # trailing note\n", "\n# own line\n", "\n\n# after a blank\n\n", "\n\n"]


@st.composite
def respaced(draw, gaps):
    name = draw(st.sampled_from(sorted(TOKENS)))
    toks = TOKENS[name]
    chosen = draw(st.lists(st.sampled_from(gaps), min_size=len(toks), max_size=len(toks)))
    return name, "".join(tok + gap for tok, gap in zip(toks, chosen))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(respaced(PLAIN_GAPS))
def test_layout_does_not_depend_on_the_input_whitespace(case):
    name, text = case
    assert format_text(text) == format_text(" ".join(TOKENS[name]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(respaced(COMMENT_GAPS))
def test_comments_anywhere_are_kept_and_stable(case):
    name, text = case
    path = REPO / "examples" / name
    once = format_text(text)
    assert format_text(once) == once
    assert comment_words(once) == comment_words(text)
    assert compiled_json(once, path) == compiled_json(text, path)
