"""The model-router service's own example bodies, verbatim, on a router where a
model is served by two targets: `modelRestrictions`, `preferredModels` and
`fallbackModels` name models ("gpt-4"), and each model name stands for every
target serving it; a target name stands for itself; an unknown name is a 400
that names it, and nothing is stored."""

from __future__ import annotations

import copy

import pytest
from gateway_fakes import FAST, GatewayServer, http
from test_admin_tenants import AGENT_PREFERENCES, EXAMPLE, WORKSPACE_CONFIG

from routelang.gateway import auth
from routelang.registry.artifacts import build_text
from routelang.registry.backends import open_store

ADMIN = "admin-secret"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
ROUTER = "model_router_tenants"
# A second target serving gpt-4, in the marketing rule and allowed to the marketing workspace and the
# creative agent; the workspace's daily budget and the agent's latency lowered, so that the service's
# bodies (100 USD a day, 5000 ms) are changes to deploy.
BACKUP = '''target gpt4_backup = openai("gpt-4") {
    use resilient
    input_cost 0.03 per 1k
    output_cost 0.06 per 1k
    capabilities ["text-generation"]
    compliance ["gdpr", "ccpa", "hipaa"]
}
'''


@pytest.fixture
def gw(loop_thread, upstreams, tmp_path):
    up = upstreams()
    text = (EXAMPLE.replace("target gpt35 =", BACKUP + "target gpt35 =")
            .replace("fallback claude_sonnet, gpt4\n", "fallback claude_sonnet, gpt4, gpt4_backup\n")
            .replace("allow targets [gpt4, claude_sonnet]", "allow targets [gpt4, gpt4_backup, claude_sonnet]")
            .replace("budget 100 USD per day, 500 per week", "budget 50 USD per day, 500 per week")
            .replace("prefer gpt4, claude_sonnet", "prefer gpt4, gpt4_backup, claude_sonnet")
            .replace("require latency p95 <= 5s, success", "require latency p95 <= 4s, success")
            .replace('openai("gpt-4")', f'openai("gpt-4", "{up.url}/v1")')
            .replace('openai("gpt-3.5-turbo")', f'openai("gpt-3.5-turbo", "{up.url}/v1")')
            .replace('anthropic("claude-3-sonnet")', f'openai("claude-3-sonnet", "{up.url}/v1")'))
    path = tmp_path / "registry.db"
    store = open_store(path)
    built = build_text(text, "tenants.route")
    assert built.ok, built.result.render(built.problems)
    store.push(ROUTER, built.entry, built.sources, built.compiled, "first")
    store.deploy(ROUTER, 1)
    store.close()
    server = loop_thread.run(GatewayServer(loop_thread, None, FAST, registry=path, tenant_keys=path,
                                           admin_keys=frozenset({auth.digest(ADMIN)}), poll_s=0.05).start())
    server.registry_path = path
    yield server
    loop_thread.run(server.stop())


def post(gw, path, body):
    return http("POST", gw.url + "/api" + path, body, AS_ADMIN)


def _stored(gw, version: int) -> str:
    store = open_store(gw.registry_path)
    try:
        return store.version(ROUTER, version).sources["tenants.route"]
    finally:
        store.close()


def test_the_services_workspace_body_verbatim_names_every_target_of_a_model(gw):
    body = copy.deepcopy(WORKSPACE_CONFIG)
    assert body["modelRestrictions"] == ["gpt-4", "claude-3-sonnet"]   # model names, as the service writes them
    changed = post(gw, "/workspaces/ws-marketing-001/config", body)
    # Were "gpt-4" gpt4 alone, the marketing rule could reach gpt4_backup outside the restriction: a 422.
    assert changed.status_code == 200, changed.text
    assert changed.json()["diff"]["policy_changes"] == [
        ("workspace ws-marketing-001: budgets: 50 USD per day, 500 USD per week, 2000 USD per month"
         " -> 100 USD per day, 500 USD per week, 2000 USD per month")]
    assert "allow targets [gpt4, gpt4_backup, claude_sonnet]" in _stored(gw, 2)
    read = http("GET", gw.url + "/api/workspaces/ws-marketing-001/config", None, AS_ADMIN).json()
    assert read["modelRestrictions"] == ["gpt4", "gpt4_backup", "claude_sonnet"]   # read back as target names


def test_the_services_agent_body_verbatim_and_target_names_mixed_in(gw):
    changed = post(gw, "/agents/creative/preferences", copy.deepcopy(AGENT_PREFERENCES))
    # Were "gpt-4" gpt4 alone, the agent could not use gpt4_backup, which the marketing rule sends it to: a 422.
    assert changed.status_code == 200, changed.text
    assert changed.json()["diff"]["policy_changes"] == [
        ("agent creative: requirements: success >= 95%, latency p95 <= 4s, cost per 1k tokens <= 10 USD"
         " -> success >= 95%, latency p95 <= 5s, cost per 1k tokens <= 10 USD")]
    assert "prefer gpt4, gpt4_backup, claude_sonnet\n    fallback gpt35\n" in _stored(gw, 2)
    # Target names stay themselves, in the order given.
    mixed = dict(AGENT_PREFERENCES, preferredModels=["claude-3-sonnet", "gpt4_backup", "gpt4"])
    assert post(gw, "/agents/creative/preferences", mixed).status_code == 200
    assert "prefer claude_sonnet, gpt4_backup, gpt4\n" in _stored(gw, 3)


@pytest.mark.parametrize("path, body, field", [
    ("/workspaces/ws-marketing-001/config", dict(WORKSPACE_CONFIG, modelRestrictions=["gpt-4", "gpt-5"]),
     "modelRestrictions"),
    ("/agents/creative/preferences", dict(AGENT_PREFERENCES, preferredModels=["claude-3-opus"]), "preferredModels"),
    ("/agents/creative/preferences", dict(AGENT_PREFERENCES, fallbackModels=["gpt-3.5"]), "fallbackModels"),
])
def test_an_unknown_model_is_a_400_naming_it(gw, path, body, field):
    refused = post(gw, path, body)
    assert refused.status_code == 400
    unknown = next(m for m in body[field] if m not in ("gpt-4", "claude-3-sonnet"))
    message = refused.json()["error"]["message"]
    assert f"{field}: the router has no target or model {unknown!r}" in message and "gpt-3.5-turbo" in message
    store = open_store(gw.registry_path)
    assert [v["version"] for v in store.versions(ROUTER)] == [1]
    store.close()


@pytest.mark.parametrize("path, body, field", [
    ("/workspaces/ws-marketing-001/config", dict(WORKSPACE_CONFIG, budgetLimits={"daily": "10"}),
     "budgetLimits.daily"),
    ("/workspaces/ws-marketing-001/config", dict(WORKSPACE_CONFIG, budgetLimits={"daily": True}),   # was 1 USD
     "budgetLimits.daily"),
    ("/workspaces/ws-marketing-001/config",
     dict(WORKSPACE_CONFIG, qualityRequirements={"minSuccessRate": "0.95"}), "qualityRequirements.minSuccessRate"),
    ("/agents/creative/preferences",
     dict(AGENT_PREFERENCES, performanceRequirements={"maxLatency": True}), "performanceRequirements.maxLatency"),
    ("/agents/creative/preferences",
     dict(AGENT_PREFERENCES, performanceRequirements={"maxCostPerToken": "0.01"}),
     "performanceRequirements.maxCostPerToken"),
])
def test_a_number_given_as_a_string_or_a_bool_is_a_400_naming_it(gw, path, body, field):
    """The service's bodies give whole numbers where the model has floats (100 USD, 5000 ms): they
    stay accepted, as above; a string or a bool is not read as a number."""
    refused = post(gw, path, body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == field and error["message"].startswith(f"invalid body: {field}: "), error
    store = open_store(gw.registry_path)
    assert [v["version"] for v in store.versions(ROUTER)] == [1]
    store.close()
