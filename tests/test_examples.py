"""The examples: one per scenario of the seeds, each checks clean and its
`test` blocks hold. Rule expectations are checked twice: by an evaluation
written here (operators.evaluate over each rule's condition tree, in
evaluation order) and by routelang's runtime (`routelang test`), which also
checks target expectations."""

from pathlib import Path

import pytest
from click.testing import CliRunner

import routelang
from routelang import ir
from routelang.cli import main
from routelang.compiler import compile_path
from routelang.diagnostics import Severity
from routelang.fmt import format_text
from routelang.gateway.request import document
from routelang.lint import lint
from routelang.loader import load
from routelang.runtime import operators
from routelang.runtime.testing import run_tests

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.route"))
# Files named _*.route show syntax, not a scenario: they must check clean, nothing more.
SCENARIO_FILES = [p for p in EXAMPLES if not p.name.startswith("_")]
# What the examples read from the environment without a default, as a deployment sets it:
# `routelang.load` and `routelang test` fill `${VAR}` in at load time, and an unset one is an error.
EXAMPLE_ENV = {"LLAMA_BASE_URL": "https://llama.internal.example"}


@pytest.fixture(autouse=True)
def example_env(monkeypatch):
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)

SCENARIOS = [
    "user_tiering", "ab_split", "regional", "shadow", "fallback_chain", "complex_conditions",
    "hybrid_local_remote", "agent_workspace", "cost_latency_strategies", "tenants",
]


def test_every_scenario_has_an_example():
    assert {p.stem for p in EXAMPLES} >= set(SCENARIOS)


def test_at_least_two_examples_declare_a_schema():
    with_schema = [p.stem for p in SCENARIO_FILES if compile_path(p).router.schema_fields]
    assert len(with_schema) >= 2, with_schema


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_checks_clean(path):
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 1 file(s) checked")


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_example_has_no_lint_warnings(path):
    result = compile_path(path)
    findings = [d for d in lint(result) if d.level in (Severity.ERROR, Severity.WARNING)]
    assert findings == [], result.render(findings)


# The examples the README serves with `routelang serve`: OpenAI clients send their requests.
SERVED_EXAMPLES = [EXAMPLES_DIR / "hybrid_local_remote.route"]


@pytest.mark.parametrize("path", SERVED_EXAMPLES, ids=lambda p: p.stem)
def test_served_example_has_no_lint_warnings_for_serve(path):
    result = compile_path(path)
    findings = [d for d in lint(result, serving=True) if d.level in (Severity.ERROR, Severity.WARNING)]
    assert findings == [], result.render(findings)


def test_the_hybrid_example_is_sticky_for_openai_clients():
    """The OpenAI body's `user` is a string; every request of one user goes to
    one side of the split, as the gateway builds its document."""
    router = routelang.load(EXAMPLES_DIR / "hybrid_local_remote.route")
    for user in ("u-1", "u-2", "u-3", "u-4"):
        body = {"model": "llama-3.3-70b-instruct", "user": user, "messages": [{"role": "user", "content": "hi"}]}
        served = {router.route(document(body, [], "/v1/chat/completions")).attempts[0].name for _ in range(20)}
        assert len(served) == 1, (user, served)


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_scenario_example_tests_its_rules(path):
    router = compile_path(path).router
    assert router.tests, "every scenario example carries `test` blocks"
    expected_rules = {t.expect.rule for t in router.tests if t.expect.rule}
    assert len(expected_rules) >= min(3, len(router.rules)), expected_rules


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_rule_expectations_hold_by_the_semantics(path):
    router = compile_path(path).router
    order = router.evaluation_order()
    for test in router.tests:
        operators.check_request(test.request)
        chosen = next((r.name for r in order if operators.evaluate(
            ir.condition_tree(r.when) if r.when is not None else None, test.request)), None)
        if test.expect.no_match:
            assert chosen is None, test.name
        if test.expect.rule is not None:
            assert chosen == test.expect.rule, test.name


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_test_blocks_pass_in_the_runtime(path):
    result = compile_path(path)
    outcomes = run_tests(load(path), result.router.tests)
    assert len(outcomes) == len(result.router.tests)
    assert [o.name for o in outcomes if not o.passed] == [], [o.detail for o in outcomes if not o.passed]


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_routelang_test_command_passes(path):
    result = CliRunner().invoke(main, ["test", str(path)])
    assert result.exit_code == 0, result.output
    assert ", 0 failed" in result.output


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_example_is_in_canonical_layout(path):
    text = path.read_text(encoding="utf-8")
    assert format_text(text, path.name) == text
