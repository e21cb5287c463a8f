"""The admin API's tenant endpoints against a registry-mode gateway on loopback:
keys issued, listed and revoked; the model-router service's workspace and agent
bodies, verbatim, read back and written as new checked, deployed versions."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from gateway_fakes import FAST, GatewayServer, http, wait_for

from routelang.gateway import auth
from routelang.registry.artifacts import build_text
from routelang.registry.backends import open_store

ADMIN = "admin-secret"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
EXAMPLE = (Path(__file__).parents[2] / "examples" / "tenants.route").read_text()

# The service's README bodies, verbatim.
WORKSPACE_CONFIG = {
    "modelRestrictions": ["gpt-4", "claude-3-sonnet"],
    "budgetLimits": {"daily": 100, "weekly": 500, "monthly": 2000},
    "qualityRequirements": {"minSuccessRate": 0.95, "maxLatency": 5000},
    "complianceRequirements": ["gdpr", "ccpa", "hipaa"],
}
AGENT_PREFERENCES = {
    "preferredModels": ["gpt-4", "claude-3-sonnet"],
    "fallbackModels": ["gpt-3.5-turbo"],
    "requiredCapabilities": ["text-generation"],
    "performanceRequirements": {"maxLatency": 5000, "minSuccessRate": 0.95, "maxCostPerToken": 0.01},
}


@pytest.fixture
def env(loop_thread, upstreams, tmp_path):
    up = upstreams()
    text = EXAMPLE.replace('openai("gpt-4")', f'openai("gpt-4", "{up.url}/v1")').replace(
        'openai("gpt-3.5-turbo")', f'openai("gpt-3.5-turbo", "{up.url}/v1")').replace(
        'anthropic("claude-3-sonnet")', f'openai("claude-3-sonnet", "{up.url}/v1")')
    path = tmp_path / "registry.db"
    store = open_store(path)
    built = build_text(text, "tenants.route")
    assert built.ok, built.result.render(built.problems)
    store.push("model_router_tenants", built.entry, built.sources, built.compiled, "first")
    store.deploy("model_router_tenants", 1)
    store.close()
    gw = loop_thread.run(GatewayServer(loop_thread, None, FAST, registry=path, tenant_keys=path,
                                       admin_keys=frozenset({auth.digest(ADMIN)}), poll_s=0.05).start())
    yield gw, up, path
    loop_thread.run(gw.stop())


def api(gw, method, path, body=None):
    return http(method, gw.url + "/api" + path, body, AS_ADMIN)


def test_keys_are_issued_listed_and_revoked(env):
    gw, _up, _path = env
    created = api(gw, "POST", "/keys", {"workspace": "ws-support-007", "expires": "30d"})
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("rlk_") and key["state"] == "active" and key["expires_at"] > key["created_at"]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0, timeout=20)
    answer = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert answer.model == "gpt-3.5-turbo"      # rule `default`, by the key's workspace
    listed = api(gw, "GET", "/keys?workspace=ws-support-007").json()["data"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    assert api(gw, "DELETE", f"/keys/{key['id']}").json()["state"] == "revoked"
    assert wait_for(lambda: _refused(client), timeout=5)
    assert api(gw, "DELETE", "/keys/key_000000000000").json()["error"]["code"] == "key_not_found"
    assert api(gw, "POST", "/keys", {"workspace": "bad name"}).status_code == 400


def _refused(client) -> bool:
    try:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    except openai.AuthenticationError:
        return True
    return False


def test_the_service_shapes_read_back(env):
    gw, _up, _path = env
    config = api(gw, "GET", "/workspaces/ws-marketing-001/config").json()
    assert config == {"router": "model_router_tenants", "workspaceId": "ws-marketing-001",
                      "modelRestrictions": ["gpt4", "claude_sonnet"],
                      "budgetLimits": {"daily": 100, "weekly": 500, "monthly": 2000},
                      "qualityRequirements": {"minSuccessRate": 0.95, "maxLatency": 5000},
                      "complianceRequirements": ["gdpr", "ccpa", "hipaa"]}
    prefs = api(gw, "GET", "/agents/creative/preferences").json()
    assert prefs["preferredModels"] == ["gpt4", "claude_sonnet"] and prefs["fallbackModels"] == ["gpt35"]
    assert prefs["performanceRequirements"] == {"maxLatency": 5000, "minSuccessRate": 0.95, "maxCostPerToken": 0.01}
    models = api(gw, "GET", "/agents/creative/models").json()["models"]
    assert sorted(m["target"] for m in models) == ["claude_sonnet", "gpt35", "gpt4"]
    assert all(m["selectable"] for m in models)
    assert api(gw, "GET", "/workspaces/ws-nope/config").json()["error"]["code"] == "policy_not_found"


def test_posting_a_workspace_config_deploys_a_checked_version_with_its_diff(env):
    gw, _up, path = env
    raised = dict(WORKSPACE_CONFIG, budgetLimits={"daily": 150, "weekly": 500, "monthly": 2000})
    dry = api(gw, "POST", "/workspaces/ws-marketing-001/config?dryRun=true", raised).json()
    assert dry["deployed"] is False and dry["version"] == 1
    changed = api(gw, "POST", "/workspaces/ws-marketing-001/config", raised)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["version"] == 2 and body["deployed"] is True
    assert body["diff"]["policy_changes"] == [
        ("workspace ws-marketing-001: budgets: 100 USD per day, 500 USD per week, 2000 USD per month"
         " -> 150 USD per day, 500 USD per week, 2000 USD per month")]
    store = open_store(path)
    text = store.version("model_router_tenants", 2).sources["tenants.route"]
    store.close()
    assert "budget 150 USD per day, 500 per week, 2000 per month" in text
    assert "limit 600 requests per minute, 200k tokens per minute" in text   # what the shape says nothing about
    assert wait_for(lambda: api(gw, "GET", "/workspaces/ws-marketing-001/config").json()["budgetLimits"]["daily"]
                    == 150)


def test_a_config_the_checker_refuses_is_not_stored(env):
    gw, _up, path = env
    # gpt-3.5-turbo lacks ccpa and hipaa: the marketing rule may route there, so the proof fails.
    refused = api(gw, "POST", "/workspaces/ws-marketing-001/config",
                  dict(WORKSPACE_CONFIG, modelRestrictions=["gpt-3.5-turbo"]))
    assert refused.status_code == 422
    assert {d["code"] for d in refused.json()["error"]["diagnostics"]} == {"RL241"}
    unknown = api(gw, "POST", "/workspaces/ws-marketing-001/config",
                  dict(WORKSPACE_CONFIG, modelRestrictions=["gpt-9"]))
    assert unknown.status_code == 400 and "no target or model 'gpt-9'" in unknown.json()["error"]["message"]
    store = open_store(path)
    assert [v["version"] for v in store.versions("model_router_tenants")] == [1]
    store.close()


def test_posting_agent_preferences_verbatim(env):
    gw, _up, _path = env
    changed = api(gw, "POST", "/agents/creative/preferences",
                  dict(AGENT_PREFERENCES, performanceRequirements={"maxLatency": 3000, "minSuccessRate": 0.9}))
    assert changed.status_code == 200, changed.text
    assert changed.json()["diff"]["policy_changes"] == [
        ("agent creative: requirements: success >= 95%, latency p95 <= 5s, cost per 1k tokens <= 10 USD"
         " -> success >= 90%, latency p95 <= 3s")]
    new = api(gw, "POST", "/agents/translator/preferences", AGENT_PREFERENCES)
    assert new.status_code == 200 and new.json()["diff"]["policy_changes"] == ["agent translator: added"]


def test_usage_reports_spend_per_workspace_and_the_budget_left(env):
    from click.testing import CliRunner

    from routelang.cli import main

    gw, _up, path = env
    secret = api(gw, "POST", "/keys", {"workspace": "ws-support-007"}).json()["key"]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=20)
    for _ in range(3):
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    gw.gateway.recorder.writer.flush()
    result = CliRunner().invoke(main, ["usage", "--registry", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    [line] = report["usage"]
    # 3 x (5 prompt tokens at 0.0005 USD per 1k + 2 completion tokens at 0.0015): 0.0000165 USD.
    assert (line["workspace"], line["model"], line["requests"], line["errors"]) == ("ws-support-007", "gpt35", 3, 0)
    assert (line["tokens_in"], line["tokens_out"], line["spend_usd"]) == (15, 6, 0.0000165)
    day = next(b for b in report["budgets"] if b["workspace"] == "ws-support-007")
    assert (day["period"], day["budget_usd"], day["used_usd"]) == ("day", 20.0, 0.0000165)
    assert day["left_usd"] == pytest.approx(20 - 0.0000165)
    text = CliRunner().invoke(main, ["usage", "--registry", str(path), "--by", "key"]).output
    assert "ws-support-007" in text and "20 USD per day" in text


def test_a_key_is_issued_with_its_own_limit_and_budget(env):
    gw, _up, _path = env
    created = api(gw, "POST", "/keys", {"workspace": "ws-support-007", "limit": "1 requests per minute",
                                        "budget": "5 USD per day"})
    assert created.status_code == 201, created.text
    key = created.json()
    assert (key["limit"], key["budget"]) == ("1 requests per minute", "5 USD per day")
    listed = api(gw, "GET", "/keys?workspace=ws-support-007").json()["data"]
    assert [(k["limit"], k["budget"]) for k in listed] == [("1 requests per minute", "5 USD per day")]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0, timeout=20)
    client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert info.value.body["code"] == "rate_limited" and f"key {key['id']}" in info.value.body["message"]
    bad = api(gw, "POST", "/keys", {"workspace": "ws-support-007", "limit": "1 request per minute"})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["param"] == "limit" and error["message"].startswith("--limit:1:3: error[RL001]")
