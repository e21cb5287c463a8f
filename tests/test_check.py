"""The checker and resolver: every error at once, in source order, at the
right place. Each file in check_cases/ marks the lines where an error must
be reported with `# expect: CODE`; the test compares the sets exactly."""

import re
from pathlib import Path

import pytest

from routelang.compiler import compile_path, compile_text
from routelang.diagnostics import Severity

CASES = Path(__file__).parent / "check_cases"
EXPECT = re.compile(r"#\s*expect:\s*(RL\d{3}(?:\s*,\s*RL\d{3})*)")
ROOTS = sorted(p for p in CASES.glob("*.route") if p.read_text().lstrip().startswith("router"))


def expectations(paths) -> set[tuple[str, int, str]]:
    out = set()
    for path in paths:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = EXPECT.search(line)
            if m:
                for code in re.split(r"\s*,\s*", m.group(1)):
                    out.add((path.name, lineno, code))
    return out


@pytest.mark.parametrize("path", ROOTS, ids=lambda p: p.stem)
def test_errors_match_inline_expectations(path):
    result = compile_path(path)
    files = {Path(s.path).resolve() for s in result.sources.values() if s.path} | {path.resolve()}
    expected = expectations(p for p in files if p.parent == CASES.resolve())
    found = {(Path(d.span.file).name, d.span.line, d.code.code) for d in result.diagnostics
             if d.level is Severity.ERROR}
    assert found == expected


@pytest.mark.parametrize("path", ROOTS, ids=lambda p: p.stem)
def test_rendered_errors(path, snapshot, monkeypatch):
    monkeypatch.chdir(CASES)
    result = compile_path(path.name)
    assert result.render() == snapshot


def test_errors_come_in_source_order():
    result = compile_path(CASES / "values.route")
    lines = [d.span.line for d in result.diagnostics]
    assert lines == sorted(lines)
    assert len(lines) >= 12


def test_json_diagnostic_objects_have_the_documented_fields():
    result = compile_text('router r\nrule "my rule" { route { provider "x" model "y" endpoint "ftp://z" } }',
                          name="t.route")
    [diag] = result.diagnostics
    obj = diag.to_json()
    assert obj["code"] == "RL205"
    assert obj["name"] == "invalid-endpoint"
    assert obj["severity"] == "error"
    assert obj["rule"] == "my rule"
    assert (obj["file"], obj["line"], obj["column"]) == ("t.route", 2, 58)
    assert obj["end_column"] > obj["column"]


def test_split_weights_may_be_fractions_or_percentages():
    ok = compile_text('router r\nrule s { split { 0.25 a: { provider "p" model "a" endpoint "https://a" }'
                      ' 75% b: { provider "p" model "b" endpoint "https://b" } } }')
    assert ok.ok, ok.render()
    weights = [t.weight for t in ok.router.rules[0].strategy.targets]
    assert weights == [0.25, 0.75]


def test_profiles_and_defaults_stack_in_documented_order():
    result = compile_text(
        'router r\nimport std.profiles\n'
        'defaults { use resilient  timeout 10s }\n'
        'provider p { endpoint "https://p.example.com" retries 1 }\n'
        'rule a { route p("m") { timeout 2s } }\n'
        'rule b { route p("m") { use fast } }\n'
    )
    assert result.ok, result.render()
    a, b = (r.strategy.targets[0] for r in result.router.rules)
    # defaults < provider preset < the target's own block
    assert (a.timeout_ms, a.retry_count, a.circuit_breaker.failure_threshold) == (2000, 1, 3)
    assert (b.timeout_ms, b.retry_count, b.circuit_breaker.cooldown_ms) == (5000, 1, 15000)


def test_env_interpolation_reports_unset_variables(monkeypatch):
    text = 'router r\nrule a { route { provider "p" model "m" endpoint "${LLAMA_BASE_URL}" } }\n'
    assert compile_text(text).ok  # kept verbatim by default
    result = compile_text(text, env={})
    assert [d.code.code for d in result.diagnostics] == ["RL210"]
    filled = compile_text(text, env={"LLAMA_BASE_URL": "https://llama.example.com"})
    assert filled.router.rules[0].strategy.targets[0].endpoint == "https://llama.example.com"
    default = compile_text(text.replace("}\" }", ":-http://localhost:8000}\" }"), env={})
    assert default.ok and default.router.rules[0].strategy.targets[0].endpoint == "http://localhost:8000"


def test_ir_equality_ignores_spans():
    a = compile_text('router r\nrule a { when x.y == 1 route { provider "p" model "m" endpoint "https://e" } }')
    b = compile_text('router r\n\n\n  rule a {\n when   x.y==1\n route {provider "p" model "m"'
                     ' endpoint "https://e"} }')
    assert a.router == b.router
