"""Whatever the text, the front end answers with diagnostics, never an
exception: random token soups and mutations of a valid file."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routelang.compiler import compile_text

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
