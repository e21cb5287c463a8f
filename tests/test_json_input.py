"""Mixtrain JSON as input to the analysis commands (check, lint, explain,
diff): the importer's syntax nodes, located in the JSON, through the same
resolver, checker and linter as a .route file; every diagnostic at the
JSON's line and column."""

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from test_import import configs, round_trip, without_target_names

from routelang.backends.json import lower
from routelang.cli import main
from routelang.compiler import compile_json, compile_path
from routelang.jsonpos import JSONProblem, read_json
from routelang.lint import lint
from routelang.source import Source

BROKEN = """{
  "name": "production",
  "rules": [
    {
      "name": "premium_users",
      "priority": -1,
      "conditions": [
        {"field": "user.tier", "operator": "equals", "value": "premium"},
        {"field": "user.credits", "operator": "greater_than", "value": "ten"},
        {"field": "y", "operator": "in", "value": "abc"}
      ],
      "strategy": "split",
      "targets": [
        {"provider": "modal", "model_name": "a", "endpoint": "ftp://a.modal.run", "weight": 0.5},
        {"provider": "modal", "model_name": "b", "endpoint": "https://b.modal.run", "weight": 0.5}
      ]
    }
  ]
}
"""

LINTABLE = """{
  "name": "production",
  "rules": [
    {"name": "premium", "priority": 100, "description": "premium tier",
     "conditions": [{"field": "user.tier", "operator": "equals", "value": "premium"}],
     "strategy": "split",
     "targets": [
       {"provider": "modal", "model_name": "a", "endpoint": "https://a.modal.run", "weight": 0.5, "label": "arm"},
       {"provider": "modal", "model_name": "b", "endpoint": "https://b.modal.run", "weight": 0.5, "label": "arm"}]},
    {"name": "premium again", "priority": 50, "description": "never reached",
     "conditions": [{"field": "user.tier", "operator": "equals", "value": "premium"},
                    {"field": "user.", "operator": "exists"}],
     "targets": [{"provider": "fal", "model_name": "c", "endpoint": "https://fal.run/c"}]},
    {"name": "default", "description": "everyone else", "strategy": "fallback",
     "targets": [{"provider": "modal", "model_name": "d", "endpoint": "https://d.modal.run"},
                 {"provider": "fal", "model_name": "e", "endpoint": "https://fal.run/e"}]}
  ]
}
"""


def run(tmp_path, monkeypatch, args, files):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("command", ["check", "lint"])
def test_errors_are_located_in_the_json(tmp_path, monkeypatch, snapshot, command):
    result = run(tmp_path, monkeypatch, [command, "routing.json"], {"routing.json": BROKEN})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output == snapshot


def test_lint_findings_are_located_in_the_json(tmp_path, monkeypatch, snapshot):
    result = run(tmp_path, monkeypatch, ["lint", "routing.json"], {"routing.json": LINTABLE})
    assert result.exit_code == 0
    assert "routing.json:9:" in result.output  # the repeated label, on the second entry's line
    assert result.output == snapshot


def test_explain_takes_json(tmp_path, monkeypatch, snapshot):
    result = run(tmp_path, monkeypatch, ["explain", "routing.json"], {"routing.json": LINTABLE})
    assert result.exit_code == 0
    assert result.output == snapshot


def test_diff_takes_json(tmp_path, monkeypatch):
    changed = LINTABLE.replace('"priority": 50', '"priority": 150')
    result = run(tmp_path, monkeypatch, ["diff", "old.json", "new.json"], {"old.json": LINTABLE, "new.json": changed})
    assert result.exit_code == 1
    assert "premium again" in result.output


@pytest.mark.parametrize("text, location, message", [
    ('{\n  "name": "x",\n  "rules": [1,]\n}\n', "routing.json:3:15:", "JSON allows no comma before a closing bracket"),
    ('{\n  "name": "x"\n  "rules": []\n}\n', "routing.json:3:3:", "expected `,`, `}`"),
    ('{"name": "x", "rules": [', "routing.json:1:25:", "unexpected end of the file"),
    ('{"name": "a\tb"}', "routing.json:1:12:", "write control characters in strings as escapes"),
    ('{"name": "\\q"}', "routing.json:1:11:", "Invalid \\escape"),
    ("{'name': 1}", "routing.json:1:2:", "strings use double quotes"),
])
@pytest.mark.parametrize("command", ["check", "lint", "explain"])
def test_json_syntax_errors_are_located(tmp_path, monkeypatch, command, text, location, message):
    result = run(tmp_path, monkeypatch, [command, "routing.json"], {"routing.json": text})
    assert result.exit_code == 1
    assert f"{location} error[RL001]: invalid JSON" in result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_config_mixtrain_refuses_is_located_at_each_problem(tmp_path, monkeypatch, snapshot):
    text = ('{\n  "name": "x",\n  "rules": [\n'
            '    {"name": "a", "targets": [{"provider": "p", "model_name": "m", "weight": 2}]},\n'
            '    {"name": "b", "conditions": [{"field": "f", "operator": "is_in", "value": [1]}], "targets": []}\n'
            '  ]\n}\n')
    result = run(tmp_path, monkeypatch, ["check", "routing.json"], {"routing.json": text})
    assert result.exit_code == 1
    assert result.output == snapshot


def test_json_reader_gives_json_loads_values():
    text = '{"a": [1, 2.5, -0.0, 1e400, NaN, -Infinity, "\\u00e9\\ud83d\\ude00", true, null], "b": {"c": 1, "c": 2}}'
    doc = read_json(Source("x.json", text))
    assert repr(doc.value) == repr(json.loads(text))
    assert list(doc.value["b"]) == ["c"] and doc.value["b"]["c"] == 2
    span = doc.span_at(("a", 6))
    start = text.index('"\\u00e9')
    assert (span.line, span.column, span.end_column) == (1, start + 1, start + 1 + len('"\\u00e9\\ud83d\\ude00"'))
    missing, array = doc.span_at(("a", 99)), doc.span_at(("a",))  # a missing member: located at its container
    assert (missing.line, missing.column) == (array.line, array.column) == (1, text.index("[") + 1)
    with pytest.raises(JSONProblem):
        read_json(Source("x.json", "[" * 100_000))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_json_input_means_what_its_import_means_and_locates_in_the_json(config):
    text = json.dumps(config, indent=2, ensure_ascii=False)
    result = compile_json(Source("routing.json", text))
    assert result.ok, result.render()
    _, imported = round_trip(config)
    assert without_target_names(lower(result.router)[0]) == without_target_names(imported)
    doc = read_json(Source("routing.json", text))
    lines = text.count("\n") + 1
    for d in result.diagnostics + lint(result):
        assert d.span.file == "routing.json" and 1 <= d.span.line <= lines, d
        if d.rule is not None:  # a finding about a rule lies inside that rule's object
            index = next(i for i, r in enumerate(config["rules"]) if r["name"] == d.rule)
            outer = doc.span_at(("rules", index))
            assert (outer.line, outer.column) <= (d.span.line, d.span.column) <= (outer.end_line, outer.end_column), d


def test_compile_path_reads_json_files(tmp_path):
    path = tmp_path / "routing.json"
    path.write_text(LINTABLE)
    result = compile_path(path)
    assert result.ok and [r.name for r in result.router.rules] == ["premium", "premium again", "default"]
    assert result.router.rules[1].spans["name"].line == 10
