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


# ---- regressions (issue 8) -----------------------------------------------------

TARGET = '{ provider "p" model "m" endpoint "https://e" }'


def codes(result) -> list[str]:
    return [d.code.code for d in result.diagnostics]


def test_a_hybrid_weight_given_twice_is_a_located_diagnostic_not_a_crash():
    text = f'router r\ntarget a = {TARGET}\ntarget b = {TARGET}\nrule y {{ hybrid(cost 1, cost 2) a, b }}\n'
    result = compile_text(text, name="h.route")
    [diag] = result.diagnostics
    assert diag.code.code == "RL214"
    assert "the `cost` weight is given twice" in diag.message
    assert (diag.span.line, diag.span.column) == (4, 30)  # at the second weight, `2`
    assert diag.related and diag.related[0].span.column == 22  # the first one, `1`
    assert diag.help


def test_a_quoted_path_segment_with_a_dot_is_rejected_where_it_is_written():
    for clause in ('when headers."x.api.version" == "2"', 'split sticky by user."a.b" { 50% a 50% b }'):
        strategy = "" if "split" in clause else " route a"
        text = (f'router r\ntarget a = {TARGET}\ntarget b = {TARGET}\n'
                f'rule y {{ {clause}{strategy} }}\n')
        result = compile_text(text, name="d.route")
        assert not result.ok
        [diag] = result.diagnostics
        assert diag.code.code == "RL222"
        assert diag.span.line == 4 and diag.span.column > 10
        assert "`.`" in diag.message and diag.help
    schema = compile_text(f'router r\nschema {{ headers."x.y": string }}\nrule y {{ route {TARGET} }}\n')
    assert codes(schema) == ["RL222"]
    # A quoted segment without a dot is still fine and keeps its meaning everywhere.
    ok = compile_text(f'router r\nrule y {{ when headers."x-api-version" == "2" route {TARGET} }}\n')
    assert ok.ok, ok.render()
    assert ok.router.rules[0].when.field == "headers.x-api-version"


def test_rl219_points_at_the_unknown_target_not_the_rule_name():
    text = f'router r\nrule a {{ route {TARGET} }}\ntest "t" {{\n  request {{ }}\n  expect rule a target zz\n}}\n'
    [diag] = compile_text(text, name="t.route").diagnostics
    assert diag.code.code == "RL219"
    assert (diag.span.line, diag.span.column, diag.span.end_column) == (5, 24, 26)


def test_percent_weights_are_the_nearest_float_to_the_decimal():
    import json

    from routelang.backends.json import lower

    text = ('router r\nrule s { split { 33.3% a: ' + TARGET + ' 33.3% b: ' + TARGET
            + ' 33.4% c: ' + TARGET + ' } }\n')
    result = compile_text(text)
    assert result.ok, result.render()
    assert [t.weight for t in result.router.rules[0].strategy.targets] == [0.333, 0.333, 0.334]
    config, _ = lower(result.router)
    written = json.dumps(config)
    assert '"weight": 0.333' in written and "0.33299999" not in written


def test_unknown_name_defined_by_a_transitively_imported_file_hints_the_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.route").write_text(f"target deep = {TARGET}\n")
    (tmp_path / "mid.route").write_text(f'import "base.route"\ntarget mid = {TARGET}\n')
    (tmp_path / "main.route").write_text('router r\nimport "mid.route"\nrule a { route deep }\n')
    result = compile_path("main.route")
    [diag] = result.diagnostics
    assert diag.code.code == "RL101"
    assert diag.help == '`deep` is defined in base.route, which mid.route imports; add `import "base.route"` here'


def test_a_dotted_quoted_segment_stops_compile_to_both_targets_and_the_runtime(tmp_path):
    from click.testing import CliRunner

    import routelang
    from routelang.cli import main

    bad = tmp_path / "bad.route"
    bad.write_text(f'router r\nrule y {{ when headers."x.api.version" == "2" route {TARGET} }}\n')
    for target in ("json", "python"):
        outcome = CliRunner().invoke(main, ["compile", "--target", target, str(bad)])
        assert outcome.exit_code == 1, outcome.output
        assert "error[RL222]" in outcome.output and "Traceback" not in outcome.output
    for backend in ("json", "python"):
        try:
            routelang.load(str(bad), backend=backend)
        except routelang.CompileError as exc:
            assert "RL222" in str(exc)
        else:
            raise AssertionError("a path with a dotted segment loaded")
    # Without a dot, a quoted segment addresses the key exactly, on both backends.
    good = bad.with_name("good.route")
    good.write_text(f'router r\nrule y {{ when headers."x-api-version" == "2" route {TARGET} }}\n')
    for backend in ("json", "python"):
        router = routelang.load(str(good), backend=backend)
        assert router.route({"headers": {"x-api-version": "2"}}).matched_rule.name == "y"
        assert router.route({"headers": {"x": {"api": {"version": "2"}}}}).matched_rule is None


def test_an_import_of_an_impossible_file_name_is_reported_not_raised():
    for name in ("\\0", "x" * 5000):
        result = compile_text(f'router r\nimport "{name}"\nrule a {{ route {TARGET} }}\n', name="i.route")
        assert codes(result) == ["RL104"], result.render()
        assert result.diagnostics[0].span.line == 2


# Syntax errors that say what was meant: (source, where the caret goes, what the help or message says).
SYNTAX_HINTS = {
    "priorty": ("router r\nrule a priorty 1 { route x }\n", (2, 8), "did you mean `priority`?"),
    "wen": ("router r\nrule a { wen user.tier == 1 route x }\n", (2, 10), "did you mean `when`?"),
    "falback": ("router r\nrule a { falback x, y }\n", (2, 10), "did you mean `fallback`?"),
    "timout": ("router r\ntarget t = { timout 30s }\n", (2, 14), "did you mean `timeout`?"),
    "starts-with": ('router r\nrule a { when x startswith "a" route b }\n', (2, 17), "did you mean `starts_with`?"),
    "single-equals": ('router r\nrule a { when user.tier = "x" route b }\n', (2, 25), "`==`"),
    "not_in": ('router r\nrule a { when x not_in [1] route b }\n', (2, 17), "`not in`"),
    "not_contains": ('router r\nrule a { when x not_contains "a" route b }\n', (2, 17), "`not contains`"),
    "two-shadows": ("router r\nrule a { route a shadow b, c }\n", (2, 26), "a shadow takes one target"),
    "unclosed-rule": ("router r\nrule a {\n    route x\n\nrule b { route y }\n", (2, 8), "never closed"),
    "unclosed-at-end": ('router r\nrule a { route { provider "p"\n', (2, 16), "never closed"),
}


@pytest.mark.parametrize("name", SYNTAX_HINTS)
def test_syntax_errors_say_what_was_meant(name, snapshot):
    text, (line, column), hint = SYNTAX_HINTS[name]
    result = compile_text(text, name=f"{name}.route")
    first = result.diagnostics[0]
    assert first.code.code == "RL001"
    assert (first.span.line, first.span.column) == (line, column), result.render()
    assert hint in f"{first.message} {first.help}", result.render()
    assert result.render() == snapshot


def test_an_unclosed_block_does_not_swallow_the_next_rule():
    result = compile_text("router r\nrule a {\n    route x\n\nrule b { route y z }\n", name="u.route")
    lines = [(d.span.line, d.code.code) for d in result.diagnostics]
    assert lines[0] == (2, "RL001")
    assert (5, "RL001") in lines  # `rule b` is parsed, and its own error reported


def test_every_keyword_misspelt_where_it_belongs_gets_a_did_you_mean():
    """Drop one letter of each keyword (of four letters or more) in the sample
    file, one at a time: where that makes a syntax error, the error is at the
    word and suggests the keyword. Candidates come from the parser, so this
    holds for every keyword without a list of them here."""
    from routelang.parser import _lark

    sample = (Path(__file__).parent.parent / "examples" / "_sample_syntax.route").read_text()
    keywords = {t.pattern.value for t in _lark().terminals if t.pattern.type == "str" and t.pattern.value.isalpha()}
    words = re.compile(r'r"[^"\n]*"|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*')
    hinted = set()
    for m in words.finditer(sample):
        word = m.group()
        if word not in keywords or len(word) < 4:
            continue
        typo = word[:-2] + word[-1]
        text = sample[:m.start()] + typo + sample[m.end():]
        result = compile_text(text, name="typo.route")
        syntax = [d for d in result.diagnostics if d.code.code == "RL001"]
        if not syntax:
            continue  # read as a name there (a field path, say): other checks report it
        line = sample.count("\n", 0, m.start()) + 1
        column = m.start() - sample.rfind("\n", 0, m.start())
        first = syntax[0]
        assert (first.span.line, first.span.column) == (line, column), (word, result.render())
        assert first.help == f"did you mean `{word}`?", (word, result.render())
        hinted.add(word)
    assert len(hinted) >= 25, sorted(hinted)


@pytest.mark.parametrize("timeout", ["0ms", "0s", "0.4ms"])
def test_a_health_probe_timeout_of_zero_is_an_error(timeout):
    result = compile_text(f'router r\nrule a {{ route {{ provider "p" model "m" endpoint "https://m"\n'
                          f'    health_check {{ interval 30s timeout {timeout} }} }} }}', name="t.route")
    [diag] = result.diagnostics
    assert (diag.code.code, diag.span.line, diag.span.column) == ("RL218", 3, 41)
    assert "fails every probe" in diag.message


def test_a_short_positive_health_probe_timeout_is_accepted():
    result = compile_text('router r\nrule a { route { provider "p" model "m" endpoint "https://m"\n'
                          '    health_check { interval 30s timeout 1ms } } }', name="t.route")
    assert result.diagnostics == []


@pytest.mark.parametrize("setting, code, message", [
    ("input_cost 1e999 per 1k", "RL240", "`input_cost` inf is negative, not finite"),   # 1e999 is infinity
    (f"input_cost 1{'0' * 400} per 1k", "RL240", "is negative, not finite"),              # an int beyond a float
    (f"timeout {'9' * 400}s", "RL001", "is too large a number"),                          # a duration
])
def test_money_and_durations_beyond_a_float_are_located_errors_not_crashes(setting, code, message):
    """Money is kept in micro-dollars and durations become floats in the JSON and the Python: an amount
    or a duration beyond a float's range is an error at the literal, where a budget of `1e999 USD`
    crashed the compiler (the grammar fuzz test found it). (A number in a condition may be infinite:
    `x <= 1e999` is lowered exactly, see test_json_backend.py.)"""
    text = f'router r\nimport std.providers\ntarget a = openai("m") {{\n    {setting}\n}}\nrule all {{ fallback a }}\n'
    [diagnostic] = compile_text(text).diagnostics
    assert (diagnostic.code.code, diagnostic.span.line) == (code, 4) and message in diagnostic.message
    budget = compile_text('router r\nworkspace w {\n    budget 1e999 USD per day\n}\n')
    assert [(d.span.line, d.span.column) for d in budget.diagnostics if d.code.code == "RL240"] == [(3, 12)]
