"""Behaviour of the linter beyond the golden files: the API, suppression, the
CLI's formats and exit codes, the docs table."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from routelang.cli import main
from routelang.compiler import compile_text
from routelang.diagnostics import CODES
from routelang.lint import LINT_RULES, lint
from routelang.lint.docs import render_docs

HEADER = """router r "r"
import std.providers
target a = modal("a", "https://a.modal.run")
target b = fal("b", "https://fal.run/b")
"""


def names(text: str) -> list[str]:
    return sorted(d.code.name for d in lint(compile_text(HEADER + text)))


def test_lint_returns_nothing_for_a_router_with_errors():
    result = compile_text(HEADER + 'rule x priority 1 "x" { when n > "ten" route a }')
    assert not result.ok
    assert lint(result) == []


def test_every_rule_is_registered_with_an_rl3_code_and_docs():
    for name, rule in LINT_RULES.items():
        assert CODES[rule.code.code] is rule.code
        assert rule.code.code.startswith("RL3") and rule.code.name == name
        assert rule.what and rule.why and rule.example and rule.fix and rule.checks


def test_docs_mention_every_rule_and_match_the_committed_file():
    text = render_docs()
    for name, rule in LINT_RULES.items():
        assert f"`{name}`" in text and rule.code.code in text
    assert (Path(__file__).parents[2] / "docs" / "lint.md").read_text() == text


def test_suppression_takes_a_list_of_names():
    text = ('rule p priority 9 "p" { when t == 1 route a }\n'
            '# routelang: disable=equal-priority, unreachable-rule\n'
            'rule q priority 9 "q" { when t == 1 route b }\n'
            'rule d priority 0 "d" { fallback a, b }\n')
    assert names(text) == []
    assert names(text.replace("equal-priority, ", "")) == ["equal-priority"]


def test_unreachable_message_names_the_covering_rules():
    result = compile_text(HEADER + 'rule p priority 9 "p" { when t == "x" route a }\n'
                                   'rule q priority 8 "q" { when t == "y" route a }\n'
                                   'rule c priority 7 "c" { when t in ["x", "y"] or t == "x" route b }\n'
                                   'rule d priority 0 "d" { fallback a, b }\n')
    [diag] = [d for d in lint(result) if d.code.name == "unreachable-rule"]
    assert diag.message == "rule `c` is unreachable: every request it matches is taken first by rules `p`, `q`"
    assert [r.span.line for r in diag.related] == [5, 6]


def test_missing_catch_all_witness_with_a_schema_uses_declared_values():
    result = compile_text(HEADER.replace('router r "r"\n', 'router r "r"\nschema { tier: enum("a", "b") }\n')
                          + 'rule p priority 9 "p" { when tier == "a" fallback a, b }\n')
    [diag] = [d for d in lint(result) if d.code.name == "missing-catch-all"]
    assert diag.witness == {"tier": "b"}


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_cli_lint_json_has_the_check_fields_and_witness(tmp_path):
    path = tmp_path / "gap.route"
    path.write_text(HEADER + 'rule p priority 9 "p" { when tier == "a" fallback a, b }\n')
    result = run("lint", str(path), "--format", "json")
    assert result.exit_code == 0
    findings = json.loads(result.output)
    [gap] = [f for f in findings if f["name"] == "missing-catch-all"]
    assert {"code", "name", "severity", "message", "file", "line", "column", "rule", "witness"} <= set(gap)
    assert gap["code"] == "RL312" and gap["severity"] == "warning"


def test_cli_lint_exits_1_on_checker_errors_and_reports_them(tmp_path):
    path = tmp_path / "bad.route"
    path.write_text(HEADER + 'rule p priority 9 "p" { when n > "ten" fallback a, b }\n')
    result = run("lint", str(path))
    assert result.exit_code == 1
    assert "error[RL201]" in result.output


def test_cli_lint_sarif(tmp_path):
    path = tmp_path / "x.route"
    path.write_text(HEADER + 'rule p priority 9 { fallback a, b }\n')
    result = run("lint", str(path), "--format", "sarif")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert [r["ruleId"] for r in doc["runs"][0]["results"]] == ["RL304"]


def test_cli_lint_clean_file(tmp_path):
    path = tmp_path / "x.route"
    path.write_text(HEADER + 'rule p priority 9 "p" { fallback a, b }\n')
    result = run("lint", str(path))
    assert (result.exit_code, result.output) == (0, "ok: 1 file(s) linted, no findings\n")


MODEL_RULES = """rule ab priority 10 "A/B" { when model == "ab" route a }
rule named priority 10 "named" { when request.model == "gpt-4o" route b }
rule default priority 0 "rest" { fallback a, b }
"""


def test_served_analysis_knows_request_model_is_the_body_model():
    """Without --serve, `model` and `request.model` are two fields of a request the caller builds;
    the gateway copies one into the other, so for serve the two rules never share a request."""
    result = compile_text(HEADER + MODEL_RULES)
    assert "overlapping-rules" in names(MODEL_RULES)
    assert "overlapping-rules" not in {d.code.name for d in lint(result, serving=True)}


def test_cli_lint_serve_reports_fields_an_openai_request_cannot_hold(tmp_path):
    path = tmp_path / "r.route"
    path.write_text(HEADER + 'rule ab priority 1 "ab" { when model == "m" split sticky by user.id { 50% a  50% b } }\n'
                    'rule default priority 0 "rest" { fallback a, b }\n')
    plain = CliRunner().invoke(main, ["lint", str(path)])
    served = CliRunner().invoke(main, ["lint", "--serve", "--format", "json", str(path)])
    assert plain.exit_code == 0 and "RL351" not in plain.output
    assert served.exit_code == 0
    [finding] = [d for d in json.loads(served.output) if d["severity"] == "warning"]
    assert (finding["code"], finding["line"]) == ("RL351", 5)
    assert "`user` is a string" in finding["message"]
