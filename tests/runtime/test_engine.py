"""Loading, the RouteResult shape, Mixtrain's RoutingEngine interface, and odd requests."""

from __future__ import annotations

import json
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
