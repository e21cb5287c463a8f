"""`routelang explain`: rules in evaluation order, in words, in three formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from routelang import ast
from routelang.cli import main
from routelang.compiler import compile_path, compile_text
from routelang.explain import (
    condition_words,
    explain,
    explain_data,
    md_code,
    mermaid_label,
    strategy_words,
)
from routelang.parser import parse
from routelang.source import read_source

REPO = Path(__file__).resolve().parent.parent


def is_router(path: Path) -> bool:
    """Files with a `router` header (the others are modules that routers import)."""
    file, _ = parse(read_source(path))
    return any(isinstance(item, ast.RouterHeader) for item in file.items)


ROUTERS = [p for p in sorted((REPO / "examples").glob("*.route")) if is_router(p)]
assert any(p.name == "_sample_syntax.route" for p in ROUTERS)


@pytest.fixture
def in_repo(monkeypatch):
    """Run from the repository root, so paths in findings read `examples/...` everywhere."""
    monkeypatch.chdir(REPO)


def compiled(text: str):
    result = compile_text(text, "t.route")
    assert result.ok, result.render(result.diagnostics)
    return result


# ---- every example, every format -----------------------------------------------------

@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
@pytest.mark.parametrize("path", ROUTERS, ids=lambda p: p.name)
def test_explain_snapshot(path, fmt, in_repo, snapshot):
    result = compile_path(f"examples/{path.name}")
    assert result.ok
    assert explain(result, fmt) == snapshot


@pytest.mark.parametrize("path", ROUTERS, ids=lambda p: p.name)
def test_json_lists_rules_in_evaluation_order(path, in_repo):
    result = compile_path(f"examples/{path.name}")
    data = json.loads(explain(result, "json"))
    with_policies = ["policies"] if result.router.policies else []   # only with workspaces or agents
    assert list(data) == ["format_version", "router", "rules", "disabled_rules", "findings", *with_policies]
    assert data["format_version"] == 1
    assert [r["name"] for r in data["rules"]] == [r.name for r in result.router.evaluation_order()]
    assert [r["order"] for r in data["rules"]] == list(range(1, len(data["rules"]) + 1))
    assert [r["name"] for r in data["disabled_rules"]] == [r.name for r in result.router.rules if not r.enabled]
    for rule in data["rules"] + data["disabled_rules"]:
        # The shares of the targets tried first (a nested chain's fallbacks have none) cover all traffic.
        shares = [t["share"] for t in rule["targets"] if t["share"] is not None]
        if rule["strategy"]["kind"] in ("split", "round_robin"):
            assert sum(shares) == pytest.approx(1.0)


@pytest.mark.parametrize("path", ROUTERS, ids=lambda p: p.name)
def test_markdown_has_a_flowchart_with_every_enabled_rule(path, in_repo):
    result = compile_path(f"examples/{path.name}")
    md = explain(result, "markdown")
    chart = md.split("```mermaid\n")[1].split("```")[0]
    assert chart.startswith("flowchart TD\n")
    for i, _ in enumerate(result.router.evaluation_order(), 1):
        assert f"    r{i}{{" in chart
    assert 'none(["no match"])' in chart
    assert md.count("### ") == len(result.router.rules)


# ---- conditions in words ----------------------------------------------------------------

@pytest.mark.parametrize("condition, words", [
    ('user.tier == "premium"', 'user.tier is "premium"'),
    ('user.tier != "free"', 'user.tier is not "free"'),
    ('request.type in ["image", "video"]', 'request.type is one of "image", "video"'),
    ('request.type not in ["chat"]', 'request.type is not one of "chat"'),
    ("user.credits > 100", "user.credits is greater than 100"),
    ("user.credits < 5.5", "user.credits is less than 5.5"),
    ("user.credits >= 3", "user.credits is at least 3"),
    ("user.credits <= 3", "user.credits is at most 3"),
    ('user.email ends_with "@x.com"', 'user.email ends with "@x.com"'),
    ('user.name starts_with "test"', 'user.name starts with "test"'),
    ('prompt contains "urgent"', 'prompt contains "urgent"'),
    ('prompt not contains "urgent"', 'prompt does not contain "urgent"'),
    ('request.model =~ r"^flux-\\d+"', "request.model matches the pattern /^flux-\\d+/"),
    ("user.beta exists", "user.beta is present"),
    ("user.beta not exists", "user.beta is missing"),
    ('user.credits > 100 note "has credits"', "user.credits is greater than 100 (has credits)"),
    ("a == 1 and b == 2 or c == 3", "(a is 1 and b is 2) or c is 3"),
    ("a == 1 and (b == 2 or c == 3)", "a is 1 and (b is 2 or c is 3)"),
    ("not (a == 1 or b == 2)", "not (a is 1 or b is 2)"),
])
def test_condition_words(condition, words):
    result = compiled(f'router r\ntarget t = {{ provider "p" model "m" endpoint "https://e" }}\n'
                      f"rule x {{ when {condition} route t }}\n")
    assert condition_words(result.router.rules[0].when) == words


def test_no_condition_is_every_request():
    assert condition_words(None) == "every request"


# ---- strategies and shares --------------------------------------------------------------

STRATEGIES = """\
router r
target a = { provider "p" model "a" endpoint "https://a" }
target b = { provider "p" model "b" endpoint "https://b" }
target c = { provider "p" model "c" endpoint "https://c" }
rule s priority 9 "d" { when x == 1 split sticky by user.id { 80% a  20% b } }
rule f priority 8 "d" { when x == 2 fallback a, b, c }
rule w priority 7 "d" { when x == 3 route a shadow b }
rule h priority 6 "d" { when x == 4 hybrid(cost 0.4, latency 0.4, reliability 0.2) a, b }
rule l priority 5 "d" { when x == 5 least_latency a, b }
rule o priority 4 "d" { when x == 6 round_robin a, b, c, c }
rule n priority 3 "d" { when x == 7 route a }
"""


def test_strategy_words():
    rules = {r.name: r for r in compiled(STRATEGIES).router.rules}
    assert strategy_words(rules["s"].strategy) == "split 80% a / 20% b, sticky by user.id"
    assert strategy_words(rules["f"].strategy) == "fallback: 1. a 2. b 3. c"
    assert strategy_words(rules["w"].strategy) == "shadow: primary a, mirror to b"
    assert strategy_words(rules["h"].strategy) == "hybrid: cost 40%, latency 40%, reliability 20% among a, b"
    assert strategy_words(rules["l"].strategy) == "least latency among a, b"
    assert strategy_words(rules["o"].strategy) == "round robin over a, b, c, c (25% each)"
    assert strategy_words(rules["n"].strategy) == "route to a"


def test_target_shares_and_roles():
    data = explain_data(compiled(STRATEGIES))
    by_name = {r["name"]: [(t["name"], t["role"], t["share"]) for t in r["targets"]] for r in data["rules"]}
    assert by_name["s"] == [("a", "split", 0.8), ("b", "split", 0.2)]
    assert by_name["f"] == [("a", "primary", 1.0), ("b", "fallback 1", None), ("c", "fallback 2", None)]
    assert by_name["w"] == [("a", "primary", 1.0), ("b", "mirror", 1.0)]
    assert by_name["l"] == [("a", "candidate", None), ("b", "candidate", None)]
    assert by_name["n"] == [("a", "primary", 1.0)]


def test_target_details():
    result = compiled('router r\nimport std.providers\ntarget t = modal("m", "https://m") { timeout 30s retries 2 '
                      "circuit_breaker { failures 3 cooldown 10s successes 2 } }\nrule a \"d\" { route t }\n")
    target = explain_data(result)["rules"][0]["targets"][0]
    assert (target["provider"], target["model"], target["endpoint"]) == ("modal", "m", "https://m")
    assert (target["timeout_ms"], target["retries"]) == (30_000, 2)
    assert target["circuit_breaker"] == {"failure_threshold": 3, "cooldown_ms": 10_000, "success_threshold": 2}
    markdown = explain(result, "markdown")
    assert ("| timeout 30s<br>retries 2<br>circuit breaker: open after 3 failures, retry after 10s, "
            "close after 2 successes |") in markdown


SETTINGS = ('router r\nimport std.providers\n'
            'target t = modal("m", "https://m") { label "canary" cost 0.25 per 1k headers { "X-Team": "ml" } '
            'health_check { path "/ready" interval 1m timeout 2s } }\nrule a { lowest_cost t }\n')
SETTING_LINES = ['label "canary"', "cost 0.25 per 1k tokens", "headers X-Team",
                 "health check: /ready every 60s, timeout 2s"]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_every_target_setting_the_json_format_shows_is_in_table_and_markdown(fmt, snapshot):
    """Cost, health check, label and header names were only in the json format."""
    result = compiled(SETTINGS)
    target = explain_data(result)["rules"][0]["targets"][0]
    assert target["cost_per_1k_tokens"] == 0.25 and target["health_check"]["path"] == "/ready"
    text = explain(result, fmt)
    flat = " ".join(text.split())  # the table wraps long settings onto continuation lines
    for line in SETTING_LINES:
        assert line in flat
    assert "ml" not in text.replace("html", "")  # header values may be secrets: names only
    section = text[text.index("Targets:"):text.index("Findings")] if fmt == "table" else \
        text[text.index("| Target |"):text.index("## Findings")]
    assert section == snapshot


def test_disabled_rules_are_listed_apart():
    result = compiled('router r\ntarget t = { provider "p" model "m" endpoint "https://e" }\n'
                      'rule on priority 1 "d" { when x == 1 route t }\nrule off priority 9 "d" disabled { route t }\n')
    data = explain_data(result)
    assert [r["name"] for r in data["rules"]] == ["on"]
    assert [(r["name"], r["order"], r["enabled"]) for r in data["disabled_rules"]] == [("off", None, False)]
    assert "Disabled rules (never evaluated):" in explain(result, "table")
    assert "## Disabled rules" in explain(result, "markdown")


def test_no_match_says_what_happens():
    without = explain_data(compiled('router r\ntarget t = { provider "p" model "m" endpoint "https://e" }\n'
                                    'rule a "d" { when x == 1 route t }\n'))
    assert "no route" in without["router"]["no_match"]
    with_catch_all = explain_data(compiled('router r\ntarget t = { provider "p" model "m" endpoint "https://e" }\n'
                                           'rule a "d" { route t }\n'))
    assert "rule `a`" in with_catch_all["router"]["no_match"]


def test_findings_include_lint_and_mixtrain_notes():
    data = explain_data(compiled(STRATEGIES))
    codes = {f["code"] for f in data["findings"]}
    assert "RL901" in codes  # Mixtrain has no hybrid / least_latency / round_robin
    assert all(set(f) == {"code", "name", "severity", "rule", "message", "file", "line", "column", "help"}
               for f in data["findings"])
    lint_data = explain_data(compiled('router r\ntarget t = { provider "p" model "m" endpoint "https://e" }\n'
                                      "rule a { route t }\n"))
    assert any(f["code"].startswith("RL3") for f in lint_data["findings"])


# ---- escaping -----------------------------------------------------------------------------

def test_mermaid_labels_escape_user_text():
    label = mermaid_label('rule "x" <b>#1 & `y`')
    assert label.startswith('"') and label.endswith('"')
    inner = label[1:-1]
    for raw in ('"', "<", ">", "`"):
        assert raw not in inner
    assert "#quot;" in inner and "#lt;" in inner and "#35;" in inner and "#amp;" in inner


def test_markdown_of_a_rule_name_with_quotes_and_pipes():
    result = compiled('router r\ntarget t = { provider "p" model "m" endpoint "https://e" }\n'
                      'rule "a | b `c`" "say <hi>" { when x == "|" route t }\n')
    md = explain(result, "markdown")
    chart = md.split("```mermaid\n")[1].split("```")[0]
    assert "#96;c#96;" in chart
    assert r"a \| b" in md  # the pipe cannot split the summary table's cells
    assert r"say \<hi\>" in md


def test_md_code_holds_backticks():
    assert md_code("plain") == "`plain`"
    assert md_code("a `b` c") == "``a `b` c``"
    assert md_code("`edge") == "`` `edge ``"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError):
        explain(compiled(STRATEGIES), "yaml")


# ---- the command ----------------------------------------------------------------------------

def test_cli_explain_formats(in_repo):
    runner = CliRunner()
    table = runner.invoke(main, ["explain", "examples/_sample_syntax.route"])
    assert table.exit_code == 0 and table.output.startswith("router production")
    as_json = runner.invoke(main, ["explain", "examples/_sample_syntax.route", "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["format_version"] == 1
    md = runner.invoke(main, ["explain", "examples/_sample_syntax.route", "--format", "markdown"])
    assert md.exit_code == 0 and "```mermaid" in md.output


def test_cli_explain_refuses_a_file_with_errors(tmp_path):
    f = tmp_path / "bad.route"
    f.write_text("router r\nrule a { route nowhere }\n")
    result = CliRunner().invoke(main, ["explain", str(f)])
    assert result.exit_code == 1
    assert "error[" in result.output


def test_flowchart_without_enabled_rules_goes_straight_to_no_match():
    result = compiled('router r\ntarget t = { provider "p" model "m" endpoint "https://e" }\n'
                      'rule a "d" disabled { route t }\n')
    md = explain(result, "markdown")
    chart = md.split("```mermaid\n")[1].split("```")[0]
    assert "start --> none" in chart and "r1{" not in chart
    assert "(no enabled rules)" in explain(result, "table")
