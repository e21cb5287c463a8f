"""Loading, the RouteResult shape, Mixtrain's RoutingEngine interface, and odd requests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mixtrain.routing.engine import RoutingEngine as MixtrainEngine
from mixtrain.routing.models import RoutingConfig

import routelang
from routelang.backends.json import lower
from routelang.compiler import compile_path

FIXTURES = Path(__file__).parent / "fixtures"
TIERS = FIXTURES / "tiers.route"
MIXTRAIN_CONFIG = FIXTURES / "mixtrain_config.json"


def test_import_routelang_stays_light():
    import subprocess
    import sys

    code = "import sys, routelang; print('routelang.runtime.engine' in sys.modules, 'jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("backend", ["json", "python"])
def test_load_accepts_every_form_of_config(backend, tmp_path):
    config, _ = lower(compile_path(TIERS).router)
    as_json = tmp_path / "tiers.json"
    as_json.write_text(json.dumps(config))
    forms = [TIERS, str(TIERS), TIERS.read_text(), config, as_json, json.dumps(config),
             RoutingConfig.from_json(json.loads(MIXTRAIN_CONFIG.read_text()))]
    request = {"user": {"tier": "premium"}, "request": {"type": "chat"}}
    for form in forms[:-1]:
        result = routelang.load(form, backend=backend).route(request)
        assert result.matched_rule.name == "premium_users"
        assert result.matched_rule.priority == 100
        target = result.selected_targets[0]
        assert (target.provider, target.model_name, target.endpoint) == ("modal", "gpt4", "https://gpt4.modal.run")
    assert routelang.load(forms[-1], backend=backend).route({"user": {"tier": "premium"}}).matched_rule.name == \
        "premium_shadow"


def test_route_result_has_mixtrains_fields_and_target_settings():
    r = routelang.load(TIERS)
    result = r.route({"user": {"tier": "free", "id": "u7"}})
    assert result.explanation == "Matched rule 'free_users' (priority 50)"
    assert result.metadata == {"strategy": "split", "target_count": 1}
    assert result.execution_time_ms is None  # Router.route stays lean; RoutingEngine measures
    timed = routelang.RoutingEngine(str(TIERS)).route_request({"user": {"tier": "free", "id": "u7"}})
    assert timed.metadata == {"evaluated_rules": 5, "strategy": "split", "target_count": 1}
    assert timed.execution_time_ms >= 0
    target = r.route({"user": {"tier": "x"}}).selected_targets[0]
    assert {k: getattr(target, k) for k in ("provider", "model_name", "endpoint", "weight", "label", "timeout_ms",
                                            "retry_count", "headers", "is_shadow")} == {
        "provider": "modal", "model_name": "gpt35", "endpoint": "https://gpt35.modal.run", "weight": 0.5,
        "label": None, "timeout_ms": 5000, "retry_count": 1, "headers": None, "is_shadow": False}
    none = routelang.load('router r\nimport std.providers\n'
                          'rule only priority 1 { when x == 1 route custom("m", "https://m.example.com") }').route({})
    assert none.matched_rule is None and none.selected_targets == []
    assert none.explanation == "No rules matched the request"


def test_a_compile_error_is_raised_with_the_rendered_diagnostics():
    with pytest.raises(routelang.CompileError) as info:
        routelang.load('router r\nrule x priority 1 { when a == route nowhere }')
    assert "error[" in str(info.value)


def test_a_bad_json_config_is_a_config_error():
    with pytest.raises(routelang.ConfigError, match="unknown operator"):
        routelang.load({"name": "x", "rules": [{"name": "a", "conditions": [
            {"field": "f", "operator": "like", "value": 1}], "targets": [
            {"provider": "p", "model_name": "m", "endpoint": "e"}]}]})
    with pytest.raises(routelang.ConfigError, match="circuit_breaker"):
        routelang.load({"name": "x", "rules": [{"name": "a", "targets": [
            {"provider": "p", "model_name": "m", "endpoint": "e", "x-routelang": {"circuit_breaker": {"bad": 1}}}]}]})


def _mixtrain_pair():
    config = json.loads(MIXTRAIN_CONFIG.read_text())
    return MixtrainEngine(RoutingConfig.from_json(config)), routelang.RoutingEngine(config)


REQUESTS = [
    {"user": {"tier": "premium", "credits": 500}, "request": {"type": "image"}},
    {"user": {"tier": "premium", "credits": "500"}, "request": {"type": "image"}},
    {"user": {"tier": "standard", "region": "eu"}, "prompt": "urgent: help"},
    {"user": {"tier": "standard"}, "prompt": ["urgent"]},
    {"user": {"tier": True}},
    {"user": "premium"},
    {},
]


def test_routing_engine_matches_mixtrain_on_route_test_and_coverage():
    mixtrain, ours = _mixtrain_pair()
    for request in REQUESTS:
        want, got = mixtrain.route_request(request), ours.route_request(request)
        assert (got.matched_rule and got.matched_rule.name) == (want.matched_rule and want.matched_rule.name)
        assert [t.model_dump() for t in want.selected_targets] == [
            {k: v for k, v in t.to_dict().items() if k != "name"} for t in got.selected_targets]
        assert got.explanation == want.explanation
        for expected in ("premium_images", "fallback_all", "nope"):
            w, g = mixtrain.test_request(request, expected), ours.test_request(request, expected)
            assert g.metadata["matched_expected"] == w.metadata["matched_expected"]
            assert g.explanation == w.explanation
    assert ours.get_rule_coverage(REQUESTS) == mixtrain.get_rule_coverage(REQUESTS)


@pytest.mark.parametrize("backend", ["json", "python"])
def test_odd_requests_get_a_defined_answer(backend):
    r = routelang.load(MIXTRAIN_CONFIG, backend=backend)
    mixtrain, _ = _mixtrain_pair()
    for request in (["a"], "text", 5, None):
        with pytest.raises(routelang.RequestError, match="must be a JSON object"):
            r.route(request)
    engine = routelang.RoutingEngine(json.loads(MIXTRAIN_CONFIG.read_text()), backend=backend)
    refused = engine.route_request([1, 2])
    assert refused.matched_rule is None and refused.explanation.startswith("Invalid request")
    deep: object = "urgent"
    for _ in range(5000):
        deep = [deep]
    huge_int = 10**5000
    odd = [
        {"prompt": deep},                                     # str() of it overflows: contains fails, as Mixtrain
        {"prompt": "urgent" * 200_000},                       # a huge string
        {"user": {"tier": "premium", "credits": huge_int}},  # float() overflows: > fails
        {"prompt": huge_int},                                 # str() is refused past 4300 digits
        {"user": {"tier": None, "credits": None}, "prompt": None},
        {"user": {"tier": ["premium"], "credits": [500]}},
        {"user": {"tier": "premium", "credits": "1e3"}, "request": {"type": "video"}},
        {"user": {"tier": "premium", "credits": "nan"}, "request": {"type": "video"}},
    ]
    for request in odd:
        want = mixtrain.route_request(request).matched_rule
        got = r.route(request).matched_rule
        assert (got and got.name) == (want and want.name)


# ---- ${VAR} at load time ------------------------------------------------------------------

ENV_ROUTER = """router envs
provider local { endpoint "${LOCAL_BASE_URL:-http://localhost:8000}" }
target llama = local("llama") { headers { "Authorization": "Bearer ${API_TOKEN:-none}" } label "${LABEL:-l}" }
rule all priority 1 { route llama }
"""


def _endpoint_headers_label(router):
    target = router.route({}).selected_targets[0]
    return target.endpoint, target.headers, target.label


@pytest.mark.parametrize("backend", ["json", "python"])
def test_env_references_are_filled_in_at_load_for_route_and_json_alike(backend, tmp_path, monkeypatch):
    route = tmp_path / "envs.route"
    route.write_text(ENV_ROUTER)
    config, _ = lower(compile_path(route).router)
    assert config["rules"][0]["targets"][0]["endpoint"] == "${LOCAL_BASE_URL:-http://localhost:8000}"  # kept
    as_json = tmp_path / "envs.json"
    as_json.write_text(json.dumps(config))
    forms = [route, ENV_ROUTER, config, as_json, json.dumps(config)]
    monkeypatch.delenv("LOCAL_BASE_URL", raising=False)
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.delenv("LABEL", raising=False)
    for form in forms:  # defaults
        assert _endpoint_headers_label(routelang.load(form, backend=backend)) == \
            ("http://localhost:8000", {"Authorization": "Bearer none"}, "l")
    monkeypatch.setenv("LOCAL_BASE_URL", "http://gpu-7:9000")
    monkeypatch.setenv("API_TOKEN", "s3cret")
    for form in forms:  # the process environment
        assert _endpoint_headers_label(routelang.load(form, backend=backend)) == \
            ("http://gpu-7:9000", {"Authorization": "Bearer s3cret"}, "l")
    for form in forms:  # env= instead of the process environment, for JSON too
        assert _endpoint_headers_label(routelang.load(form, backend=backend, env={"LABEL": "canary"})) == \
            ("http://localhost:8000", {"Authorization": "Bearer none"}, "canary")
    engine = routelang.RoutingEngine(str(as_json), backend=backend)
    assert engine.route_request({}).selected_targets[0].endpoint == "http://gpu-7:9000"


def test_a_value_from_the_environment_is_not_interpolated_again(tmp_path):
    config, _ = lower(compile_path(TIERS).router)
    config["rules"][0]["targets"][0]["endpoint"] = "${URL}"
    router = routelang.load(config, env={"URL": "https://x/${NOT_A_REF}"})
    assert router.route({"user": {"tier": "premium"}, "request": {"type": "chat"}}).selected_targets[0].endpoint \
        == "https://x/${NOT_A_REF}"


def test_an_unset_variable_without_default_names_the_variable_and_where(tmp_path):
    text = ENV_ROUTER.replace("${API_TOKEN:-none}", "${API_TOKEN}")
    route = tmp_path / "envs.route"
    route.write_text(text)
    with pytest.raises(routelang.CompileError) as info:  # .route: a located diagnostic
        routelang.load(route, env={})
    assert f"{route}:3:" in str(info.value) and "error[RL210]" in str(info.value)
    assert "`API_TOKEN` is not set" in str(info.value)
    config, _ = lower(compile_path(route).router)
    with pytest.raises(routelang.ConfigError) as info:  # JSON: the rule, the target and the field
        routelang.load(config, env={})
    assert str(info.value).startswith("rule 'all', target 1 ('llama') header `Authorization`: environment variable "
                                      "`API_TOKEN` is not set and has no default")
    assert _endpoint_headers_label(routelang.load(config, env={"API_TOKEN": "t"}))[1] == {"Authorization": "Bearer t"}


# ---- what `load` takes for a path ----------------------------------------------------------

def test_a_missing_file_or_a_directory_is_a_config_error(tmp_path):
    for missing in ("nope.json", "nope.route", str(tmp_path / "nope.json"), "somedir", tmp_path / "x.route"):
        with pytest.raises(routelang.ConfigError, match="cannot read"):
            routelang.load(missing)
    (tmp_path / "somedir").mkdir()
    for directory in (str(tmp_path / "somedir"), tmp_path / "somedir"):
        with pytest.raises(routelang.ConfigError, match="is a directory"):
            routelang.load(directory)


def test_source_text_is_taken_as_text_by_loads_or_when_it_has_a_newline_or_brace(tmp_path, monkeypatch):
    one_line = 'router r rule a priority 1 { route custom("m", "https://m.example.com") }'
    monkeypatch.chdir(tmp_path)
    text = "router r\nimport std.providers\n" + one_line.removeprefix("router r ")
    for router in (routelang.load(text), routelang.loads(text)):
        assert router.route({}).matched_rule.name == "a"
    with pytest.raises(routelang.CompileError):  # text, though no file has that name
        routelang.loads("somedir")


# ---- layering ------------------------------------------------------------------------

FORBIDDEN_IN_RUNTIME = ("routelang.backends", "routelang.compiler", "routelang.parser", "routelang.resolve",
                        "routelang.check", "routelang.loader")


def test_the_runtime_imports_no_compiler_and_no_backend():
    """Every module of routelang.runtime, imported alone in a fresh interpreter
    (and a Router built and used from a JSON config), pulls in no backend, no
    compiler phase and no parser."""
    import pkgutil
    import subprocess
    import sys

    import routelang.runtime

    modules = sorted(f"routelang.runtime.{m.name}" for m in pkgutil.iter_modules(routelang.runtime.__path__))
    assert "routelang.runtime.engine" in modules
    use = (f"from routelang.runtime.engine import Router; from routelang.runtime.model import plan_from_config; "
           f"import json; r = Router(plan_from_config(json.load(open({str(MIXTRAIN_CONFIG)!r})))); "
           f"assert r.route({{'user': {{'tier': 'premium'}}}}).matched_rule.name == 'premium_shadow'")
    for module in ["routelang.runtime", *modules]:
        code = f"import sys, {module}; {use}; print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN_IN_RUNTIME!r})))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[]", f"{module} imports {out.strip()}"


def test_no_runtime_module_imports_a_layer_above_even_lazily():
    """Imports inside functions count too: the source of each runtime module names none of them."""
    import ast as pyast

    import routelang.runtime

    for path in sorted(Path(routelang.runtime.__path__[0]).glob("*.py")):
        for node in pyast.walk(pyast.parse(path.read_text())):
            if isinstance(node, pyast.ImportFrom):
                names = [("routelang." if node.level >= 2 else "routelang.runtime.") + (node.module or "")
                         if node.level else node.module or ""]
            elif isinstance(node, pyast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(FORBIDDEN_IN_RUNTIME), f"{path.name}:{node.lineno} imports {name}"


@pytest.mark.parametrize("backend", ["json", "python"])
def test_pick_is_route_without_the_route_result(backend):
    router, twin = routelang.load(TIERS, backend=backend), routelang.load(TIERS, backend=backend)
    for request in ({"user": {"tier": "premium"}, "request": {"type": "chat"}}, {"user": {"tier": "nobody"}}, {}):
        random.seed(7)  # the same pick from a split; the twin's round-robin turns move in step
        rule, selection, explanation = router.pick(request)
        random.seed(7)
        result = twin.route(request)
        assert (rule, selection.attempts, selection.shadows, explanation) == (
            result.matched_rule, result.attempts, result.shadows, result.explanation)
    with pytest.raises(routelang.RequestError):
        router.pick([1, 2])
