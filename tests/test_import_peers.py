"""`routelang import` of the peers' configs: LiteLLM, Portkey, the hybrid router.

The fixtures (tests/fixtures/import/, README there) are copied from each
peer's documentation. For Portkey's conditional router, generated configs
and requests are decided by a reference evaluator written here after
Portkey's own code, and by routelang's runtime on the imported file: the
two must agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from portkey_reference import CONTEXTS, PortkeyConditionalRouter, conditional_configs

from routelang import ir
from routelang.cli import main
from routelang.compiler import compile_text
from routelang.importers import ImportProblem, detect, importer
from routelang.importers.hybrid import import_hybrid
from routelang.importers.litellm import import_litellm
from routelang.importers.portkey import import_portkey
from routelang.lint import lint
from routelang.loader import load

FIXTURES = Path(__file__).parent / "fixtures" / "import"
CASES = sorted(p for p in FIXTURES.glob("*/*") if p.suffix in (".json", ".yaml"))


def read(path: Path):
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def compiled(text: str) -> ir.Router:
    result = compile_text(text, "imported.route")
    assert result.ok, text + "\n" + result.render()
    return result.router


# ---- the documentation's fixtures -------------------------------------------------

@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_imports_to_a_file_that_compiles_and_lints_clean(path, snapshot):
    config = read(path)
    fmt = detect(config)
    assert fmt == path.parent.name
    text, notes = importer(fmt)(config, path.name)
    result = compile_text(text, "imported.route")
    assert result.ok, text + "\n" + result.render()
    errors = [d for d in lint(result) if d.level.name == "ERROR"]
    assert errors == []
    for note in notes:  # each note is in the file's header, as the CLI prints it
        assert f"# NOTE: {note}" in text
    assert text == snapshot


def test_litellm_load_balancing_reads_both_settings_sections():
    text, notes = import_litellm(read(FIXTURES / "litellm" / "load_balancing.yaml"), "config.yaml")
    router = compiled(text)
    rules = {r.name: r for r in router.rules}
    # simple-shuffle with rpm set: shares weighted by rpm (60, 600, 60000), then the group's fallback.
    zephyr = rules["zephyr_beta"].strategy
    assert isinstance(zephyr, ir.Fallback)
    split, fallback_to = zephyr.candidates
    assert [round(a.weight, 6) for a in split.arms] == [round(w / 60660, 6) for w in (60, 600, 60000)]
    assert fallback_to.model_name == "gpt-4o"
    # model_group_alias: gpt-4 is served by the gpt-4o group.
    assert 'when model in ["gpt-4o", "gpt-4"]' in text
    # router_settings win over litellm_settings: 2 retries, a 30 s timeout; allowed_fails 3 -> 4 failures open.
    target = split.arms[0]
    assert (target.retry_count, target.timeout_ms) == (2, 30000)
    assert target.circuit_breaker.failure_threshold == 4
    messages = [n.message for n in notes]
    assert any("num_retries is 2 in router_settings and 3 in litellm_settings" in m for m in messages)
    assert any("context_window_fallbacks" in m for m in messages)


def test_litellm_api_keys_from_the_environment_and_wildcards_noted():
    text, notes = import_litellm(read(FIXTURES / "litellm" / "quick_start.yaml"), "config.yaml")
    assert '"api-key": "${AZURE_API_KEY_EU}"' in text   # os.environ/VAR -> ${VAR}, azure's header
    assert any("wildcard deployment '*'" in n.message for n in notes)
    assert any("aws_region_name" in n.message for n in notes)


def test_litellm_routing_strategies():
    base = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/a"}},
                           {"model_name": "m", "litellm_params": {"model": "openai/b"}}]}
    for strategy, kind in (("latency-based-routing", ir.LeastLatency), ("least-busy", ir.RoundRobin),
                           ("usage-based-routing", ir.RoundRobin)):
        text, notes = import_litellm(dict(base, router_settings={"routing_strategy": strategy}), "c.yaml")
        assert isinstance(compiled(text).rules[0].strategy, kind)
        assert any(strategy in n.message for n in notes)
    with pytest.raises(ImportProblem, match="routing_strategy 'fastest'"):
        import_litellm(dict(base, router_settings={"routing_strategy": "fastest"}), "c.yaml")


def test_litellm_decides_the_model_group_by_the_request_model():
    text, _ = import_litellm(read(FIXTURES / "litellm" / "load_balancing.yaml"), "config.yaml")
    router = load(text, env={"OPENAI_API_KEY": "k"})
    assert router.route({"model": "gpt-4"}).matched_rule.name == "gpt_4o"
    assert router.route({"model": "gpt-3.5-turbo-16k"}).attempts[0].model_name == "gpt-3.5-turbo-16k"
    assert router.route({"model": "nope"}).matched_rule is None   # LiteLLM: no such model group


def test_hybrid_routing_yaml_splits_local_and_remote_with_fallback():
    text, notes = import_hybrid(read(FIXTURES / "hybrid" / "routing.yaml"), "routing.yaml",
                                models={"models": [{"name": "llama-3.3-70b-instruct"}, {"name": "qwen"}]})
    router = compiled(text)
    llama = router.rules[0].strategy
    assert [a.weight for a in llama.arms] == [0.6, 0.4]
    local_first = llama.arms[0].strategy
    assert [t.endpoint for t in local_first.targets] == ["${LOCAL_BASE_URL:-http://localhost:8000}",
                                                         "${LLAMA_BASE_URL}"]
    target = local_first.targets[0]
    assert (target.timeout_ms, target.health_check.interval_ms) == (2000, 30000)
    assert any("'qwen' is registered but no deployment serves it" in n.message for n in notes)
    assert any("`logging`" in n.message for n in notes)


# ---- the CLI -------------------------------------------------------------------------

def test_cli_detects_the_format_and_from_overrides(tmp_path):
    runner = CliRunner()
    path = FIXTURES / "litellm" / "load_balancing.yaml"
    detected = runner.invoke(main, ["import", str(path)])
    assert detected.exit_code == 0
    assert "(LiteLLM)" in detected.output
    assert "warning: settings: num_retries is 2" in detected.output
    strict = runner.invoke(main, ["import", "--strict", str(path)])
    assert strict.exit_code == 1
    wrong = runner.invoke(main, ["import", "--from", "portkey", str(path)])
    assert wrong.exit_code == 1
    assert "error:" in wrong.output and "Traceback" not in wrong.output


def test_cli_reads_models_yaml_next_to_routing_yaml(tmp_path):
    (tmp_path / "routing.yaml").write_text((FIXTURES / "hybrid" / "routing.yaml").read_text())
    (tmp_path / "models.yaml").write_text("models:\n  - name: mistral-7b\n")
    result = CliRunner().invoke(main, ["import", str(tmp_path / "routing.yaml")])
    assert result.exit_code == 0
    assert "'mistral-7b' is registered but no deployment serves it" in result.output


@pytest.mark.parametrize("content, message", [
    ("model_list: [1\n", "config.yaml:2:1: error: invalid YAML"),
    ("a: 1\n", "config.yaml: error: not a config routelang can import"),
    ("model_list: []\n", "config.yaml: error: model_list: a LiteLLM config needs a list of deployments"),
    ("local_deployment: [{models: [m]}]\n", "error: local_deployment[0]: a deployment has an endpoint"),
])
def test_cli_import_errors_are_located_lines(tmp_path, content, message):
    src = tmp_path / "config.yaml"
    src.write_text(content)
    result = CliRunner().invoke(main, ["import", str(src)])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


# ---- Portkey's conditional router, decided both ways -------------------------------------

def routelang_request(context: dict) -> dict:
    """The request document the gateway builds for the same call: the body's fields, its `metadata`."""
    return {**context["params"], "metadata": context["metadata"], "request": {"path": "/v1/chat/completions"}}


def _quirk(query: dict, *contexts: dict):
    """An example that always runs: a query with one of Portkey's quirks, and requests it decides."""
    config = {"strategy": {"mode": "conditional", "conditions": [{"query": query, "then": "t0"}], "default": "t1"},
              "targets": [{"name": f"t{i}", "provider": "openai", "override_params": {"model": f"m{i}"}}
                          for i in range(2)]}
    return example(config, [{"metadata": {}, "params": {}, **c} for c in contexts])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditional_configs(), st.lists(CONTEXTS, min_size=1, max_size=8))
# RegExp.test(undefined) reads "undefined": a missing key matches /und/.
@_quirk({"metadata.tier": {"$regex": "und"}}, {}, {"metadata": {"tier": "free"}})
# $regex ends its operator object: the $eq after it is never read.
@_quirk({"metadata.tier": {"$regex": "^f", "$eq": "paid"}}, {"metadata": {"tier": "free"}})
# $or ends the query: the key after it is never read.
@_quirk({"$or": [{"metadata.tier": "free"}], "metadata.region": "eu"}, {"metadata": {"tier": "free"}})
# Two levels deep: metadata.user.tier reads metadata.user.
@_quirk({"metadata.user.tier": "gold"}, {"metadata": {"user": "gold"}}, {"metadata": {"tier": "gold"}})
# $in / $nin with a value that is not a list never hold.
@_quirk({"metadata.tier": {"$nin": "free"}}, {"metadata": {"tier": "paid"}})
# parseFloat on both sides; a string is never === a number.
@_quirk({"params.max_tokens": {"$gt": "10"}, "metadata.n": 5}, {"params": {"max_tokens": 12}, "metadata": {"n": "5"}})
def test_imported_portkey_conditional_router_decides_as_portkey(config, contexts):
    try:
        text, _notes = import_portkey(config, "portkey.json")
    except ImportProblem as exc:
        assume("no condition can ever hold" not in str(exc))
        raise
    router = load(text)
    for context in contexts:
        context = dict(context, url={"pathname": "/v1/chat/completions"})
        try:
            expected = PortkeyConditionalRouter(config, context).resolve_target()["override_params"]["model"]
        except LookupError:
            expected = None
        result = router.route(routelang_request(context))
        got = result.attempts[0].model_name if result.matched_rule is not None else None
        assert got == expected, f"{text}\ncontext: {context}"


@pytest.mark.parametrize("query, expected", [
    # $or ends the query: the key after it is never read.
    ({"$or": [{"metadata.a": "x"}], "metadata.b": "y"}, 'metadata.a == "x"'),
    # $regex ends its operator object; a pattern that matches "undefined" also matches a missing key.
    ({"metadata.a": {"$regex": "^u", "$eq": "z"}}, 'metadata.a not exists or metadata.a =~ "^u"'),
    # Two levels deep.
    ({"metadata.user.tier": "gold"}, 'metadata.user == "gold"'),
    # params.* are the body's fields.
    ({"params.model": {"$in": ["a", "b"]}}, 'model in ["a", "b"]'),
    ({"params.max_tokens": {"$gte": "100"}}, "max_tokens >= 100"),
])
def test_portkey_query_quirks_are_written_out(query, expected):
    config = {"strategy": {"mode": "conditional", "conditions": [{"query": query, "then": "a"}], "default": "a"},
              "targets": [{"name": "a", "provider": "openai", "override_params": {"model": "m"}}]}
    text, _notes = import_portkey(config, "p.json")
    assert f"when {expected}\n" in text
    compiled(text)


def test_portkey_nested_targets_inherit_settings_and_weights_default_to_1():
    config = {
        "retry": {"attempts": 3}, "request_timeout": 5000,
        "strategy": {"mode": "fallback"},
        "targets": [
            {"strategy": {"mode": "loadbalance"}, "override_params": {"model": "gpt-4o"},
             "targets": [{"provider": "openai"}, {"provider": "openai", "weight": 3}]},
            {"provider": "anthropic", "override_params": {"model": "claude"}, "retry": {"attempts": 1}},
        ],
    }
    text, _ = import_portkey(config, "p.json")
    router = compiled(text)
    split, backup = router.rules[0].strategy.candidates
    assert [a.weight for a in split.arms] == [0.25, 0.75]
    first = split.arms[0]
    assert (first.model_name, first.retry_count, first.timeout_ms) == ("gpt-4o", 3, 5000)
    assert (backup.model_name, backup.retry_count) == ("claude", 1)


def test_portkey_refuses_what_portkey_refuses():
    with pytest.raises(ImportProblem, match="Unsupported operator"):
        import_portkey({"strategy": {"mode": "conditional", "conditions": [
            {"query": {"metadata.a": {"$like": "x"}}, "then": "a"}]},
            "targets": [{"name": "a", "provider": "openai"}]}, "p.json")
    with pytest.raises(ImportProblem, match="no target is named 'b'"):
        import_portkey({"strategy": {"mode": "conditional", "conditions": [{"query": {}, "then": "b"}]},
                        "targets": [{"name": "a", "provider": "openai"}]}, "p.json")


# ---- malformed configs: a clear problem, never a crash ------------------------------------

ODD = st.one_of(st.none(), st.booleans(), st.integers(-2, 5), st.floats(allow_nan=False, allow_infinity=False,
                                                                        width=16),
                st.sampled_from(["", "x", "2", "os.environ/K", "openai/gpt", "simple-shuffle", "conditional",
                                 "loadbalance", "fallback", "metadata.a", "$eq", "http://h.example"]),
                st.lists(st.sampled_from(["a", "b", 1]), max_size=2),
                st.dictionaries(st.sampled_from(["a", "model", "attempts", "mode"]), st.sampled_from(["a", 1]),
                                max_size=2))
KEYS_OF_ALL = st.sampled_from([
    "strategy", "mode", "targets", "name", "provider", "weight", "override_params", "retry", "attempts",
    "request_timeout", "conditions", "query", "then", "default", "on_status_codes", "custom_host", "virtual_key",
    "api_key", "model_list", "model_name", "litellm_params", "model", "api_base", "rpm", "router_settings",
    "litellm_settings", "routing_strategy", "fallbacks", "num_retries", "timeout", "allowed_fails",
    "cooldown_time", "model_group_alias", "local_deployment", "remote_deployment", "endpoint", "models",
    "routing_parameter", "local_fraction", "health_check"])
CONFIGS = st.recursive(ODD, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(KEYS_OF_ALL, inner, max_size=4)),
                       max_leaves=25)
LITELLM_PARAMS = st.dictionaries(st.sampled_from(["api_base", "api_key", "rpm", "tpm", "weight", "timeout", "tags"]),
                                 ODD, max_size=4).flatmap(
    lambda d: st.sampled_from(["openai/a", "a", "azure/x", "bedrock/y"]).map(lambda m: dict(d, model=m)))
LITELLM_SETTINGS = st.dictionaries(st.sampled_from(
    ["routing_strategy", "fallbacks", "default_fallbacks", "context_window_fallbacks", "num_retries", "timeout",
     "request_timeout", "allowed_fails", "cooldown_time", "model_group_alias", "enable_tag_filtering"]), ODD,
    max_size=4)
LITELLM_CONFIGS = st.fixed_dictionaries({
    "model_list": st.lists(st.fixed_dictionaries({"model_name": st.sampled_from(["a", "b"]),
                                                  "litellm_params": LITELLM_PARAMS}), min_size=1, max_size=3),
    "router_settings": LITELLM_SETTINGS, "litellm_settings": LITELLM_SETTINGS})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["litellm", "portkey", "hybrid"]), st.one_of(CONFIGS, LITELLM_CONFIGS))
def test_a_malformed_config_is_a_problem_never_a_crash(fmt, config):
    try:
        text, _ = importer(fmt)(config, "c")
    except ImportProblem:
        return
    result = compile_text(text, "imported.route")   # it parses; a value may still be wrong (an endpoint)
    assert not any(d.code.code == "RL001" for d in result.diagnostics), text + result.render()


def test_portkey_comparison_with_infinity_is_refused_not_a_crash():
    with pytest.raises(ImportProblem, match="no literal for Infinity"):
        import_portkey({"strategy": {"mode": "conditional", "conditions": [
            {"query": {"metadata.a": {"$gt": "1e400"}}, "then": "a"}]},
            "targets": [{"name": "a", "provider": "openai"}]}, "p.json")


def test_cli_models_option_is_for_the_hybrid_router_only(tmp_path):
    result = CliRunner().invoke(main, ["import", str(FIXTURES / "litellm" / "quick_start.yaml"),
                                       "--models", str(tmp_path / "models.yaml")])
    assert result.exit_code == 2
    assert "--models is for the hybrid router's routing.yaml" in result.output
