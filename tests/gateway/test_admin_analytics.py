"""The model-router service's analytics and health endpoints against a
registry-mode gateway on loopback (SQLite, and Postgres): a history written by
real requests of tenant keys through the gateway (the official openai client,
fake upstreams), and every number checked against one computed here from the
requests sent."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import openai
import pytest
from gateway_fakes import FAST, GatewayServer, chat_answer, config, http, rule, target, wait_for

from routelang.gateway import auth
from routelang.registry.artifacts import build_text
from routelang.registry.backends import open_store

ADMIN = "admin-secret"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
EXAMPLE = (Path(__file__).parents[2] / "examples" / "tenants.route").read_text()
ROUTER = "model_router_tenants"
# USD per token (input, output) of the example's targets.
PRICES = {"gpt4": (0.03e-3, 0.06e-3), "claude_sonnet": (0.003e-3, 0.015e-3), "gpt35": (0.0005e-3, 0.0015e-3)}


def _answer(body: dict) -> dict:
    """The fake upstream's answer: `fail` fails every call; `tokens P C` reports P prompt, C completion tokens."""
    words = body["messages"][0]["content"].split()
    if words[0] == "fail":
        return {"status": 500, "body": {"error": {"message": "down", "type": "server_error"}}}
    return {"body": chat_answer(body["model"], prompt_tokens=int(words[1]), completion_tokens=int(words[2])),
            "delay": 0.02}


@pytest.fixture(params=["sqlite", "postgres"])
def env(request, loop_thread, upstreams, tmp_path):
    up = upstreams()
    up.default = _answer
    text = EXAMPLE.replace('openai("gpt-4")', f'openai("gpt-4", "{up.url}/v1")').replace(
        'openai("gpt-3.5-turbo")', f'openai("gpt-3.5-turbo", "{up.url}/v1")').replace(
        'anthropic("claude-3-sonnet")', f'openai("claude-3-sonnet", "{up.url}/v1")')
    if request.param == "sqlite":
        location = tmp_path / "registry.db"
    else:
        location = request.getfixturevalue("postgres_server").new_database()
    store = open_store(location)
    built = build_text(text, "tenants.route")
    assert built.ok, built.result.render(built.problems)
    store.push(ROUTER, built.entry, built.sources, built.compiled, "first")
    store.deploy(ROUTER, 1)
    store.close()
    gw = loop_thread.run(GatewayServer(loop_thread, None, FAST, registry=location, tenant_keys=location,
                                       admin_keys=frozenset({auth.digest(ADMIN)}), poll_s=0.05).start())
    yield gw
    loop_thread.run(gw.stop())


def api(gw, path: str, headers=AS_ADMIN):
    return http("GET", gw.url + path, None, headers)


def _key(gw, workspace: str, agent: str | None = None) -> str:
    body = {"workspace": workspace} if agent is None else {"workspace": workspace, "agent": agent}
    created = http("POST", gw.url + "/api/keys", body, AS_ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["key"]


class Sent:
    """Each request sent and what it should add up to, kept apart from what the gateway records."""

    def __init__(self, gw):
        self.gw = gw
        self.requests: list[dict] = []

    def send(self, key: str, workspace: str, agent: str | None, target: str, tokens: tuple[int, int] | None):
        request_id = f"{len(self.requests):032x}"
        client = openai.OpenAI(base_url=self.gw.url + "/v1", api_key=key, max_retries=0, timeout=20)
        content = "fail" if tokens is None else f"tokens {tokens[0]} {tokens[1]}"
        started = time.perf_counter()
        try:
            client.chat.completions.create(model="any", messages=[{"role": "user", "content": content}],
                                           extra_headers={"x-request-id": request_id})
            ok = True
        except openai.APIStatusError:
            ok = False
        wall_ms = (time.perf_counter() - started) * 1000
        assert ok == (tokens is not None)
        cost = None if tokens is None else tokens[0] * PRICES[target][0] + tokens[1] * PRICES[target][1]
        self.requests.append({"id": request_id, "workspace": workspace, "agent": agent, "target": target,
                              "tokens": tokens, "cost": cost, "ok": ok, "wall_ms": wall_ms})

    def of(self, **match) -> list[dict]:
        return [r for r in self.requests if all(r[k] == v for k, v in match.items())]


def _workload(gw) -> Sent:
    marketing_creative = _key(gw, "ws-marketing-001", "creative")
    marketing = _key(gw, "ws-marketing-001")
    support = _key(gw, "ws-support-007")
    support_creative = _key(gw, "ws-support-007", "creative")
    sent = Sent(gw)
    for tokens in ((10, 4), (11, 5), (12, 6)):   # rule marketing: claude_sonnet first
        sent.send(marketing_creative, "ws-marketing-001", "creative", "claude_sonnet", tokens)
    for tokens in ((7, 3), (8, 1)):              # rule default: gpt35
        sent.send(support, "ws-support-007", None, "gpt35", tokens)
    sent.send(support_creative, "ws-support-007", "creative", "gpt4", (20, 9))   # rule creative: gpt4
    sent.send(marketing, "ws-marketing-001", None, "claude_sonnet", None)        # every target fails
    return sent


def _tokens(requests: list[dict]) -> int:
    return sum(sum(r["tokens"]) for r in requests if r["tokens"] is not None)


def _cost(requests: list[dict]) -> float:
    return sum(r["cost"] for r in requests if r["cost"] is not None)


def test_analytics_add_up_the_requests_sent(env):
    gw = env
    sent = _workload(gw)
    metrics = api(gw, "/api/metrics/requests?limit=100").json()
    assert metrics["count"] == len(sent.requests) == 7
    by_id = {m["requestId"]: m for m in metrics["metrics"]}
    assert [m["requestId"] for m in metrics["metrics"]] == [r["id"] for r in reversed(sent.requests)]  # newest first
    for r in sent.requests:
        m = by_id[r["id"]]
        assert (m["modelId"], m["workspaceId"], m["agentType"]) == (r["target"], r["workspace"], r["agent"])
        assert m["status"] == ("success" if r["ok"] else "error") and m["router"] == ROUTER
        if r["ok"]:
            assert m["usage"] == {"promptTokens": r["tokens"][0], "completionTokens": r["tokens"][1],
                                  "totalTokens": sum(r["tokens"]), "cost": pytest.approx(r["cost"], abs=1e-12)}
            assert m["latency"] >= 20   # the upstream's delay, in ms
        assert m["latency"] <= r["wall_ms"]   # the gateway's time is within what the client waited
        assert m["requestType"] is None and m["latency"] == m["totalLatency"]
        assert m["timestamp"].endswith("Z")
    newest = api(gw, "/api/metrics/requests?limit=2").json()
    assert [m["requestId"] for m in newest["metrics"]] == [sent.requests[-1]["id"], sent.requests[-2]["id"]]

    marketing = sent.of(workspace="ws-marketing-001")
    ws = api(gw, "/api/analytics/workspaces/ws-marketing-001?timeRange=7d").json()
    latencies = [by_id[r["id"]]["latency"] for r in marketing]
    assert ws == {"workspaceId": "ws-marketing-001", "timeRange": "7d", "totalRequests": 4, "uniqueAgents": 1,
                  "totalTokens": _tokens(marketing), "totalCost": pytest.approx(_cost(marketing), abs=1e-9),
                  "averageLatency": pytest.approx(sum(latencies) / len(latencies)), "successRate": 75.0,
                  "modelUsage": {"claude_sonnet": 4}, "agentUsage": {"creative": 3, "unknown": 1}}
    support = sent.of(workspace="ws-support-007")
    ws = api(gw, "/api/analytics/workspaces/ws-support-007").json()   # the service's default range: 24h
    assert (ws["timeRange"], ws["totalRequests"], ws["uniqueAgents"], ws["successRate"]) == ("24h", 3, 1, 100.0)
    assert ws["modelUsage"] == {"gpt35": 2, "gpt4": 1} and ws["agentUsage"] == {"unknown": 2, "creative": 1}
    assert (ws["totalTokens"], ws["totalCost"]) == (_tokens(support), pytest.approx(_cost(support), abs=1e-9))

    claude = sent.of(target="claude_sonnet")
    by_model = api(gw, "/api/analytics/models?timeRange=24h&modelId=claude-3-sonnet").json()   # a model name
    assert by_model["modelId"] == "claude-3-sonnet" and by_model["targets"] == ["claude_sonnet"]
    assert (by_model["totalRequests"], by_model["successRate"]) == (4, 75.0)
    assert by_model["requestsByStatus"] == {"success": 3, "error": 1}
    assert by_model["requestsByAgent"] == {"creative": 3, "unknown": 1}
    assert (by_model["totalTokens"], by_model["totalCost"]) == (_tokens(claude), pytest.approx(_cost(claude),
                                                                                              abs=1e-9))
    by_target = api(gw, "/api/analytics/models?modelId=gpt4").json()   # a target name
    assert (by_target["totalRequests"], by_target["totalTokens"], by_target["requestsByAgent"]) == (1, 29,
                                                                                                   {"creative": 1})
    everything = api(gw, "/api/analytics/models?timeRange=1h").json()
    assert (everything["modelId"], everything["targets"], everything["totalRequests"]) == ("all", [], 7)
    assert everything["totalTokens"] == _tokens(sent.requests)
    hours = {}
    for m in metrics["metrics"]:
        hour = f"{datetime.datetime.fromisoformat(m['timestamp']).astimezone(datetime.UTC).hour:02d}:00"
        hours[hour] = hours.get(hour, 0) + 1
    assert everything["hourlyDistribution"] == hours

    overview = api(gw, "/api/health/overview").json()
    assert overview["performance"]["requestsLastHour"] == 7
    assert overview["performance"]["successRate"] == pytest.approx(600 / 7)
    all_latencies = [m["latency"] for m in metrics["metrics"]]
    assert overview["performance"]["averageLatency"] == pytest.approx(sum(all_latencies) / 7)
    # The failed request (3 tries on each target) opened both breakers of its rule, as /routing shows.
    breakers = {t["name"]: t["breaker"] for t in http("GET", gw.url + "/routing").json()["routers"][0]["targets"]}
    assert breakers == {"claude_sonnet": "open", "gpt4": "open", "gpt35": "closed"}
    assert (overview["unhealthyModels"], overview["healthyModels"]) == (["claude_sonnet", "gpt4"], ["gpt35"])
    assert not gw.log_lines("bug")


def test_a_window_without_requests_has_no_made_up_numbers(env):
    gw = env
    ws = api(gw, "/api/analytics/workspaces/ws-support-007?timeRange=1h").json()
    assert ws == {"workspaceId": "ws-support-007", "timeRange": "1h", "totalRequests": 0, "uniqueAgents": 0,
                  "totalTokens": 0, "totalCost": 0.0, "averageLatency": None, "successRate": None,
                  "modelUsage": {}, "agentUsage": {}}
    assert api(gw, "/api/metrics/requests").json() == {"metrics": [], "count": 0}


@pytest.mark.parametrize("path, param", [
    ("/api/analytics/workspaces/ws-marketing-001?timeRange=7x", "timeRange"),
    ("/api/analytics/models?timeRange=1w", "timeRange"),
    ("/api/metrics/requests?limit=-1", "limit"),
    ("/api/metrics/requests?limit=0", "limit"),
    ("/api/metrics/requests?limit=ten", "limit"),
    ("/api/metrics/requests?limit=10001", "limit"),
    ("/api/analytics/workspaces/ws-nobody", "workspace"),
    ("/api/analytics/models?modelId=gpt-9", "modelId"),
])
def test_bad_parameters_are_openai_shaped_400s(env, path, param):
    answer = api(env, path)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_request", param)


def test_a_workspace_known_only_by_its_keys_has_analytics(env):
    gw = env
    _key(gw, "ws-keys-only")
    assert api(gw, "/api/analytics/workspaces/ws-keys-only").json()["totalRequests"] == 0


@pytest.mark.parametrize("path", ["/api/analytics/models", "/api/metrics/requests", "/api/health/overview",
                                  "/health/detailed"])
def test_they_need_an_admin_key(env, path):
    assert api(env, path, headers={}).json()["error"]["code"] == "missing_api_key"
    assert api(env, path, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_health_follows_drains_pushed_health_and_breakers(env):
    gw = env
    overview = api(gw, "/api/health/overview").json()
    assert overview["models"] == {"total": 3, "active": 3, "healthy": 3, "degraded": 0, "unhealthy": 0}
    assert overview["routing"] == {"totalRules": 3, "enabledRules": 3}
    assert sorted(overview["healthyModels"]) == ["claude_sonnet", "gpt35", "gpt4"]
    detailed = api(gw, "/health/detailed")
    assert detailed.status_code == 200
    body = detailed.json()
    assert (body["status"], body["service"]) == ("healthy", "routelang")
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "routers": "up", "targets": "up", "state": "up", "registry": "up"}
    assert body["checks"]["routers"]["detail"]["served"] == {ROUTER: 1}

    http("POST", gw.url + f"/api/targets/{ROUTER}/gpt35/drain", None, AS_ADMIN)
    drained = api(gw, "/health/detailed").json()   # taken out by hand: not a fault
    assert (drained["status"], drained["checks"]["targets"]["detail"]["drained"]) == ("healthy", 1)
    http("POST", gw.url + f"/api/targets/{ROUTER}/gpt4/health", {"healthy": False, "detail": "maintenance"},
         AS_ADMIN)
    overview = api(gw, "/api/health/overview").json()
    assert overview["models"] == {"total": 3, "active": 2, "healthy": 1, "degraded": 0, "unhealthy": 1}
    assert (overview["healthyModels"], overview["unhealthyModels"], overview["drainedModels"]) == (
        ["claude_sonnet"], ["gpt4"], ["gpt35"])
    body = api(gw, "/health/detailed").json()
    assert body["status"] == "degraded" and body["checks"]["targets"]["status"] == "degraded"
    assert {t["target"]: t["condition"] for t in body["targets"]} == {
        "gpt4": "unhealthy", "claude_sonnet": "healthy", "gpt35": "drained"}

    http("POST", gw.url + f"/api/targets/{ROUTER}/claude_sonnet/health", {"healthy": False}, AS_ADMIN)
    unhealthy = api(gw, "/health/detailed")
    assert unhealthy.status_code == 503 and unhealthy.json()["status"] == "unhealthy"
    assert http("GET", gw.url + "/health/ready").status_code == 503   # the same targets, the same verdict


def test_a_file_gateway_answers_health_but_has_no_history(gateway, upstreams):
    up = upstreams()
    text = EXAMPLE.replace('openai("gpt-4")', f'openai("gpt-4", "{up.url}/v1")').replace(
        'openai("gpt-3.5-turbo")', f'openai("gpt-3.5-turbo", "{up.url}/v1")').replace(
        'anthropic("claude-3-sonnet")', f'openai("claude-3-sonnet", "{up.url}/v1")')
    gw = gateway(text, admin_keys=frozenset({auth.digest(ADMIN)}))
    overview = api(gw, "/api/health/overview").json()
    assert overview["models"]["healthy"] == 3
    assert overview["performance"] == {"requestsLastHour": None, "averageLatency": None, "successRate": None}
    detailed = api(gw, "/health/detailed").json()
    assert detailed["status"] == "healthy" and detailed["checks"]["registry"]["status"] == "not_used"
    for path in ("/api/analytics/models", "/api/metrics/requests", "/api/analytics/workspaces/ws-support-007"):
        assert api(gw, path).json()["error"]["code"] == "no_registry"


def test_without_admin_keys_there_is_no_detailed_health(gateway, upstreams):
    up = upstreams()
    gw = gateway(EXAMPLE.replace('openai("gpt-3.5-turbo")', f'openai("gpt-3.5-turbo", "{up.url}/v1")'))
    assert http("GET", gw.url + "/health/detailed").status_code == 404



def test_a_registry_that_is_down_makes_health_degraded_and_analytics_unavailable(loop_thread, upstreams):
    """Its own PostgreSQL, stopped under a serving gateway: the health endpoints still answer (the
    registry `down`, no performance figures), the analytics are 503s, none waits long."""
    from services import PostgresServer

    server = PostgresServer()
    gw = None
    try:
        up = upstreams()
        location = server.new_database()
        store = open_store(location)
        built = build_text(EXAMPLE.replace('openai("gpt-3.5-turbo")', f'openai("gpt-3.5-turbo", "{up.url}/v1")'),
                           "tenants.route")
        store.push(ROUTER, built.entry, built.sources, built.compiled, "first")
        store.deploy(ROUTER, 1)
        store.close()
        gw = loop_thread.run(GatewayServer(loop_thread, None, FAST, registry=location,
                                           admin_keys=frozenset({auth.digest(ADMIN)}), poll_s=0.05).start())
        assert api(gw, "/api/health/overview").json()["performance"]["requestsLastHour"] == 0
        server.stop()
        started = time.monotonic()
        overview = api(gw, "/api/health/overview")
        assert overview.status_code == 200
        assert overview.json()["performance"] == {"requestsLastHour": None, "averageLatency": None,
                                                  "successRate": None}
        detailed = api(gw, "/health/detailed")
        assert detailed.status_code == 200
        body = detailed.json()
        assert (body["status"], body["checks"]["registry"]["status"]) == ("degraded", "down")
        assert body["checks"]["registry"]["detail"]["error"]
        for path in ("/api/analytics/models", "/api/metrics/requests", f"/api/routers/{ROUTER}/requests"):
            answer = api(gw, path)
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, "registry_unavailable")
        assert time.monotonic() - started < 15
        server.start()
        assert wait_for(lambda: api(gw, "/health/detailed").json()["status"] == "healthy", timeout=10)
        assert not gw.log_lines("bug")
    finally:
        if gw is not None:
            loop_thread.run(gw.stop())
        server.close()


def test_a_breaker_open_then_half_open_is_unhealthy_then_degraded(gateway, upstreams):
    a, b = upstreams("a"), upstreams("b")
    a.script = [{"status": 500, "body": {}}, {"status": 500, "body": {}}]
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 2, "cooldown_ms": 400,
                                                   "success_threshold": 1}}}
    gw = gateway(config(rule("chain", [target(a, "ma", **breaker), target(b, "mb")], strategy="fallback")),
                 admin_keys=frozenset({auth.digest(ADMIN)}))
    for _ in range(2):
        http("POST", gw.url + "/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    overview = api(gw, "/api/health/overview").json()
    assert (overview["unhealthyModels"], overview["healthyModels"]) == (["ma"], ["mb"])
    assert api(gw, "/health/detailed").json()["status"] == "degraded"
    time.sleep(0.45)   # the cooldown is over: one probe request may go through
    overview = api(gw, "/api/health/overview").json()
    assert (overview["degradedModels"], overview["models"]["degraded"]) == (["ma"], 1)
    detailed = api(gw, "/health/detailed").json()
    assert detailed["status"] == "degraded"
    assert [(t["target"], t["condition"], t["breaker"]) for t in detailed["targets"]] == [
        ("ma", "degraded", "half_open"), ("mb", "healthy", None)]
