"""The generated Python module: snapshot, ruff-clean, deterministic, indexed,
mapped back to the .route file, and safe against hostile strings."""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import routelang
from routelang.backends.python import executor, generate, literal, render
from routelang.compiler import compile_text
from routelang.parser import quote
from routelang.runtime.model import plan_from_config

FIXTURES = Path(__file__).parent / "fixtures"
TIERS = FIXTURES / "tiers.route"
RUFF = Path(sys.executable).parent / "ruff"


def _generate(path: Path) -> str:
    # Compiled under its bare name, so the snapshot does not depend on where the repository is.
    text, notes = generate(compile_text(path.read_text(), path.name, path=path).router, source_name=path.name)
    assert notes == []
    return text


def test_generated_module_snapshot(snapshot):
    assert _generate(TIERS) == snapshot


def test_generation_is_deterministic():
    assert _generate(TIERS) == _generate(TIERS)


@pytest.mark.parametrize("path", [TIERS, FIXTURES / "hostile.route"])
def test_generated_module_is_ruff_clean(path, tmp_path):
    out = tmp_path / "generated.py"
    out.write_text(_generate(path))
    proc = subprocess.run([str(RUFF), "check", "--isolated", "--select", "E,F,W,B,UP,SIM,RUF,I,C4,PIE",
                           "--line-length", "120", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_rules_are_indexed_on_the_common_equality_field():
    text = _generate(TIERS)
    assert "_BUCKETS = {" in text
    assert "    'premium': _bucket_0," in text
    assert "    'gov': _bucket_1," in text  # an `in` list indexes the rule under each value


def test_line_map_points_at_each_rules_code_and_its_route_span():
    text = _generate(TIERS)
    namespace: dict = {}
    exec(compile(text, "generated", "exec"), namespace)  # noqa: S102 (our generated code)
    lines = text.splitlines()
    source = TIERS.read_text().splitlines()
    assert namespace["LINE_MAP"]
    for generated_line, (file, line, column) in namespace["LINE_MAP"].items():
        comment = lines[generated_line - 2]
        assert comment.strip().startswith("# rule ")
        assert file == "tiers.route"
        rule_name = comment.split("'")[1]
        assert source[line - 1][column - 1:].startswith(rule_name + " priority")


def test_literal_round_trips_every_json_value():
    values = ["a'b\"c", "\x00\n\\", "\u2028é", 10**5000, 1e308, float("inf"), -0.0, True, None, [1, {"k": [2]}]]
    for value in values:
        assert eval(literal(value)) == value
    assert repr(eval(literal(float("nan")))) == "nan"


PAYLOADS = [
    "'; import os; os.environ['ROUTELANG_PWNED'] = '1'; '",
    '"""; import os; os.environ["ROUTELANG_PWNED"] = "1"; """',
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{% for x in range(3) %}x{% endfor %}",
    "line\nbreak\r\n# comment",
    "nul\x00byte",
    "trailing backslash\\",
    "unicode é ✓ \u2028 \U0001f680",
    "') or __import__('os').system('touch /tmp/routelang-pwned') or ('",
]


def _key(payload: str) -> str:
    return payload.replace(".", "_")  # a dot would split the field path


def _hostile_config() -> dict:
    rules = []
    for i, payload in enumerate(PAYLOADS):
        rules.append({
            "name": f"{payload}#{i}",
            "description": payload,
            "priority": 100 - i,
            "conditions": [
                {"field": f"user.{_key(payload)}", "operator": "equals", "value": payload},
                {"field": "tag", "operator": "regex", "value": "^" + re.escape(payload) + r"\Z"},
                {"field": "note", "operator": "not_contains", "value": payload},
            ],
            "targets": [{"provider": payload, "model_name": payload, "endpoint": f"https://x/{payload}",
                         "headers": {payload: payload}, "label": payload}],
        })
    return {"name": PAYLOADS[1], "description": PAYLOADS[0], "rules": rules}


def test_hostile_strings_route_correctly_and_execute_nothing():
    os.environ.pop("ROUTELANG_PWNED", None)
    config = _hostile_config()
    text = render(plan_from_config(config), source_name=PAYLOADS[0])
    compile(text, "generated", "exec")  # it is valid Python
    by_python = routelang.load(config, backend="python")
    by_json = routelang.load(config, backend="json")
    for i, payload in enumerate(PAYLOADS):
        request = {"user": {_key(payload): payload}, "tag": payload, "note": "nothing"}
        for router in (by_python, by_json):
            result = router.route(request)
            assert result.matched_rule.name == f"{payload}#{i}"
            target = result.selected_targets[0]
            assert (target.provider, target.headers, target.label) == (payload, {payload: payload}, payload)
    assert "ROUTELANG_PWNED" not in os.environ
    assert not Path("/tmp/routelang-pwned").exists()
    assert not hasattr(builtins, "x")


def test_hostile_strings_in_a_route_file(tmp_path):
    payload = PAYLOADS[0] + PAYLOADS[1] + PAYLOADS[2] + PAYLOADS[6]
    source = (f'router r {quote(payload)}\nimport std.providers\n'
              f'rule {quote(payload)} priority 1 {quote(payload)} {{\n'
              f'  when user.name == {quote(payload)} and prompt =~ {quote("^" + "x" * 3)}\n'
              f'  route custom({quote(payload)}, "https://example.com") {{ headers {{ {quote(payload)}: '
              f'{quote(payload)} }} }}\n}}\n')
    result = compile_text(source, "hostile.route")
    assert result.ok, result.render()
    text, _ = generate(result.router, source_name=payload)
    compile(text, "generated", "exec")
    router = routelang.load(source, backend="python")
    assert router.route({"user": {"name": payload}, "prompt": "xxxy"}).matched_rule.name == payload
    assert router.route({"user": {"name": payload}, "prompt": "y"}).matched_rule is None
    assert "ROUTELANG_PWNED" not in os.environ


def test_generated_code_is_cached_per_source():
    plan = plan_from_config({"name": "c", "rules": [{"name": "a", "targets": [
        {"provider": "p", "model_name": "m", "endpoint": "e"}]}]})
    assert executor(plan) is executor(plan)
