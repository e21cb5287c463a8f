"""`routelang test` and `routelang coverage`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TIERS = FIXTURES / "tiers.route"
MIXTRAIN_CONFIG = FIXTURES / "mixtrain_config.json"


def run(*args):
    return subprocess.run([sys.executable, "-m", "routelang", *map(str, args)], capture_output=True, text=True, check=False)


def test_test_blocks_pass_with_a_report():
    proc = run("test", TIERS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["PASS  premium goes to gpt4", "PASS  urgent free request", "PASS  free user",
                                        "3 passed, 0 failed"]


def test_a_failing_test_block_exits_1(tmp_path):
    source = TIERS.read_text().replace("expect rule urgent target gpt4", "expect rule urgent target claude")
    path = tmp_path / "broken.route"
    path.write_text(source)
    proc = run("test", path, "--backend", "json")
    assert proc.returncode == 1
    assert "FAIL  urgent free request: expected target 'claude', got 'gpt4'" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "2 passed, 1 failed"


@pytest.mark.parametrize("backend", ["python", "json"])
def test_data_text_output_names_rule_conditions_and_targets(backend):
    proc = run("test", TIERS, "--backend", backend, "--data", '{"user": {"tier": "gov", "credits": "12"}}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "request 1:",
        "  matched rule 'enterprise' (priority 100, shadow)",
        '    user.tier in ["enterprise", "gov"]: held (request has "gov")',
        '    user.credits greater_than 10: held (request has "12")',
        "  -> modal gpt4 https://gpt4.modal.run",
        "  -> custom claude https://claude.example.com (shadow)",
    ]


def test_requests_jsonl_with_expected_prints_one_object_per_request_and_exits_1_on_a_mismatch(tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"user": {"tier": "premium"}, "request": {"type": "chat"}}\n'
                        '{"user": {"tier": "free", "id": "u1"}}\n')
    proc = run("test", MIXTRAIN_CONFIG, "--requests", requests, "--expected", "premium_shadow", "--format", "jsonl")
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["matched_rule"] for r in rows] == ["premium_shadow", "fallback_all"]
    assert [r["passed"] for r in rows] == [True, False]
    assert rows[0]["selected_targets"][1]["is_shadow"] is True
    assert set(rows[0]["selected_targets"][0]) >= {"provider", "model_name", "endpoint", "weight", "label",
                                                   "timeout_ms", "retry_count", "headers", "is_shadow"}


def test_request_file_and_refused_requests(tmp_path):
    one = tmp_path / "one.json"
    one.write_text('{"user": {"tier": "premium"}}')
    proc = run("test", MIXTRAIN_CONFIG, "--request", one, "--format", "json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["matched_rule"] == "premium_shadow"
    proc = run("test", MIXTRAIN_CONFIG, "--data", "[1, 2]", "--format", "jsonl")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"matched_rule": None, "selected_targets": [],
                                       "error": "a request must be a JSON object, not list"}


def test_usage_errors_exit_2():
    assert run("test", TIERS, "--data", "{nope").returncode == 2
    assert run("test", TIERS, "--data", "{}", "--request", "x.json").returncode == 2
    assert run("test", TIERS, "--request", "/nonexistent/x.json").returncode == 2


def test_coverage_reports_mixtrains_numbers_and_never_decisive_conditions(tmp_path):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps([
        {"user": {"tier": "premium", "credits": 500}, "request": {"type": "image"}},
        {"user": {"tier": "premium", "credits": 5}, "request": {"type": "image"}},
        {"prompt": "nothing"},
    ]))
    proc = run("coverage", MIXTRAIN_CONFIG, requests, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rule_hits"] == {"premium_images": 1, "premium_shadow": 1, "urgent": 0, "disabled_rule": 0,
                                   "fallback_all": 0}
    assert report["coverage_percentage"] == 40.0
    assert report["unmatched_requests"] == 1
    assert report["uncovered_rules"] == ["urgent", "disabled_rule", "fallback_all"]
    never = {(c["rule"], c["field"]) for c in report["never_decisive_conditions"]}
    # urgent's prompt test failed on every request, so its region test never decided anything
    assert never == {("urgent", "user.region")}
    text = run("coverage", TIERS, requests).stdout
    assert text.startswith("coverage: ")
    assert "conditions never decisive" in text


def test_compile_target_python_writes_a_module_that_decides(tmp_path):
    out = tmp_path / "tiers_router.py"
    proc = run("compile", TIERS, "--target", "python", "-o", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith(f"# Generated by routelang 0.1.0 from {str(TIERS)!r}.")
    namespace: dict = {}
    exec(compile(text, str(out), "exec"), namespace)  # noqa: S102 (the module under test)
    rules = [name for name, _ in namespace["RULES"]]
    assert rules[namespace["decide"]({"user": {"tier": "gov", "credits": 11}})] == "enterprise"
    assert rules[namespace["decide"]({"user": {"tier": "nobody"}})] == "default"


ENV_ROUTER = """router envs
provider local { endpoint "${LOCAL_BASE_URL}" }
target llama = local("llama")
rule all priority 1 { route llama }
test "all to llama" {
    request { }
    expect rule all target llama
}
"""


def run_with_env(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k != "LOCAL_BASE_URL"}
    return subprocess.run([sys.executable, "-m", "routelang", *map(str, args)], capture_output=True, text=True,
                          check=False, env={**clean, **env})


def test_test_fills_in_env_references_and_an_unset_one_is_a_located_error(tmp_path):
    route = tmp_path / "envs.route"
    route.write_text(ENV_ROUTER)
    proc = run_with_env("test", route)
    assert proc.returncode == 1, proc.stdout
    assert f"{route}:2:27: error[RL210]: environment variable `LOCAL_BASE_URL` is not set and has no default" \
        in proc.stderr
    proc = run_with_env("test", route, "--data", "{}", "--format", "json", LOCAL_BASE_URL="http://gpu-1:8000")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["selected_targets"][0]["endpoint"] == "http://gpu-1:8000"
    assert run_with_env("test", route, LOCAL_BASE_URL="http://gpu-1:8000").returncode == 0


def test_test_of_a_json_config_with_an_unset_variable_names_rule_target_and_field(tmp_path):
    route = tmp_path / "envs.route"
    route.write_text(ENV_ROUTER)
    config = tmp_path / "envs.json"
    config.write_text(run_with_env("compile", route).stdout)
    proc = run_with_env("test", config, "--data", "{}")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"{config}: error: rule 'all', target 1 ('llama') `endpoint`: environment variable "
                                   "`LOCAL_BASE_URL` is not set and has no default (set LOCAL_BASE_URL, or give a "
                                   "default: ${LOCAL_BASE_URL:-value})")
    proc = run_with_env("coverage", config, tmp_path / "none.jsonl")
    assert proc.returncode == 1  # the config's error comes before the unreadable requests file


def test_a_bad_line_of_a_jsonl_file_is_reported_at_its_line(tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"user": {"tier": "free"}}\n\n{"user": {}}\n{"user": nope}\n{}\n')
    for args in (("test", TIERS, "--requests", requests), ("coverage", TIERS, requests)):
        proc = run(*args)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip() == f"{requests}:4:10: error: invalid JSON: Expecting value"
