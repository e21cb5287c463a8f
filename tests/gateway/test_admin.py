"""The admin API (/api) against a live gateway on loopback, with a real registry file:
keys, routers and versions, deploy/rollback, decisions, history, export/import,
draining and pushed health (seen in /routing, /metrics and in the routing itself)."""

from __future__ import annotations

import re

import pytest
from gateway_fakes import CHAT_RULES, config, http, rule, target, wait_for

from routelang.gateway import auth
from routelang.gateway.admin.endpoints import ENDPOINTS
from routelang.registry.artifacts import build_text
from routelang.registry.backends import open_store

ADMIN, CLIENT = "admin-secret", "client-secret"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
PREMIUM = {"user": {"tier": "premium", "id": "u-1"}}
TRIAL = {"user": {"tier": "trial", "id": "u-42"}}

ROUTE = '''router chat "Chat"

import std.providers

target small = openai("m-small", "{a}/v1")
target big = openai("m-big", "{b}/v1")
''' + CHAT_RULES


def source(a, b, premium: str = "big") -> str:
    return ROUTE.format(a=a.url, b=b.url, premium=premium)


@pytest.fixture
def env(upstreams, gateway, tmp_path):
    """A gateway serving router `chat` (the file) with a registry holding chat version 1, deployed."""
    a, b = upstreams("a"), upstreams("b")
    text = source(a, b)
    store = open_store(tmp_path / "reg" / "registry.db")
    built = build_text(text, "chat.route")
    assert built.ok, built.problems
    store.push("chat", built.entry, built.sources, built.compiled, "first")
    store.deploy("chat", 1)
    gw = gateway(text, api_keys=frozenset({auth.digest(CLIENT)}), admin_keys=frozenset({auth.digest(ADMIN)}),
                 store=store)

    class Env:
        pass

    e = Env()
    e.a, e.b, e.gw, e.store, e.text = a, b, gw, store, text
    return e


def api(env, method, path, body=None, headers=AS_ADMIN):
    return http(method, env.gw.url + "/api" + path, body, headers)


def assert_error(reply, status, code):
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code and set(error) >= {"message", "type", "param", "code"}, error
    return error


def sample_path(path: str) -> str:
    return re.sub(r"\{[a-z]+\}", "x", path).replace("/versions/x", "/versions/1")


# ---- keys ------------------------------------------------------------------------------------

def test_every_endpoint_needs_an_admin_key(env):
    for e in ENDPOINTS:
        path = sample_path(e.path)
        body = {} if e.body is not None else None
        assert_error(api(env, e.method, path, body, headers={}), 401, "missing_api_key")
        assert_error(api(env, e.method, path, body, headers={"Authorization": "Bearer nope"}), 401,
                     "invalid_api_key")
        error = assert_error(api(env, e.method, path, body, headers={"Authorization": f"Bearer {CLIENT}"}), 403,
                             "admin_key_required")
        assert error["type"] == "permission_error"
    # an admin key is not a client key either
    assert http("POST", env.gw.url + "/v1/chat/completions", CHAT, AS_ADMIN).status_code == 401


def test_without_admin_keys_there_is_no_api(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    gw = gateway(source(a, b))
    reply = http("GET", gw.url + "/api/routers", headers=AS_ADMIN)
    assert_error(reply, 404, "unknown_endpoint")
    assert_error(http("GET", gw.url + "/api/openapi.json"), 404, "unknown_endpoint")


def test_unknown_paths_and_methods(env):
    assert_error(api(env, "GET", "/nothing/here"), 404, "unknown_endpoint")
    assert_error(api(env, "PUT", "/routers/chat"), 405, "method_not_allowed")
    assert_error(api(env, "GET", "/route"), 405, "method_not_allowed")


# ---- routers and versions ----------------------------------------------------------------------

def test_routers_versions_and_rules(env):
    listed = api(env, "GET", "/routers").json()
    assert listed == {"object": "list", "data": [{"name": "chat", "active_version": 1, "latest_version": 1,
                                                   "served": True}]}
    detail = api(env, "GET", "/routers/chat").json()
    assert detail["versions"] == 1 and detail["deployments"][0]["version"] == 1
    assert [r["name"] for r in detail["config"]["rules"]] == ["premium", "ab", "default"]
    versions = api(env, "GET", "/routers/chat/versions").json()
    assert versions["active_version"] == 1 and versions["data"][0]["message"] == "first"
    assert versions["data"][0]["active"] is True
    one = api(env, "GET", "/routers/chat/versions/1").json()
    assert one["entry"] == "chat.route" and "chat.route" in one["sources"] and one["compiled"] == detail["config"]
    rules = api(env, "GET", "/routers/chat/rules").json()
    assert rules["version"] == 1 and [r["name"] for r in rules["data"]] == ["premium", "ab", "default"]
    assert_error(api(env, "GET", "/routers/nope"), 404, "router_not_found")
    assert_error(api(env, "GET", "/routers/nope/versions"), 404, "router_not_found")
    assert_error(api(env, "GET", "/routers/nope/rules"), 404, "router_not_found")
    assert_error(api(env, "GET", "/routers/chat/versions/9"), 404, "version_not_found")
    assert_error(api(env, "GET", "/routers/chat/versions/x"), 400, "invalid_request")


def test_push_checks_like_routelang_push(env):
    changed = source(env.a, env.b, premium="small")
    pushed = api(env, "POST", "/routers/chat/versions", {"source": changed, "message": "premium to small"})
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["version"] == 2 and pushed.json()["created"] is True and pushed.json()["active"] is False
    again = api(env, "POST", "/routers/chat/versions", {"source": changed})
    assert again.status_code == 200 and again.json()["version"] == 2 and again.json()["created"] is False
    # the same text as `routelang push` stores it (standard library modules included): same content hash
    assert api(env, "POST", "/routers/chat/versions", {"source": env.text}).json()["version"] == 1
    # errors stop it, with the diagnostics
    broken = changed.replace("route small\n}", "route nowhere\n}")
    error = assert_error(api(env, "POST", "/routers/chat/versions", {"source": broken}), 422, "does_not_check")
    assert "RL101" in error["message"] and error["diagnostics"][0]["code"] == "RL101"
    assert error["diagnostics"][0]["file"] == "chat.route"
    # an import of a file next to the server is not found: a push is its text alone
    error = assert_error(api(env, "POST", "/routers/chat/versions",
                             {"source": changed.replace("import std.providers", 'import std.providers\nimport "x.route"')}),
                         422, "does_not_check")
    assert error["diagnostics"][0]["code"] == "RL104"
    # warnings are returned and do not stop it
    shadowed = changed.replace("rule default priority 10 {", "rule late priority 5 {\n    route big\n}\n\n"
                               "rule default priority 10 {")
    warned = api(env, "POST", "/routers/chat/versions", {"source": shadowed})
    assert warned.status_code == 201, warned.text
    assert warned.json()["warnings"] and warned.json()["warnings"][0]["severity"] == "warning"
    assert "warning[" in warned.json()["warnings_text"]
    assert [v["version"] for v in api(env, "GET", "/routers/chat/versions").json()["data"]] == [1, 2, 3]


def test_push_a_mixtrain_config_and_bad_bodies(env):
    config = api(env, "GET", "/routers/chat/versions/1").json()["compiled"]
    config["rules"][0]["targets"][0]["model_name"] = "m-huge"
    pushed = api(env, "POST", "/routers/chat/versions", {"config": config, "message": "json"})
    assert pushed.status_code == 201, pushed.text
    stored = api(env, "GET", f"/routers/chat/versions/{pushed.json()['version']}").json()
    assert stored["compiled"]["rules"][0]["targets"][0]["model_name"] == "m-huge"
    bad = dict(config, rules=[dict(config["rules"][0], strategy="no-such-strategy")])
    assert_error(api(env, "POST", "/routers/chat/versions", {"config": bad}), 422, "does_not_check")
    assert_error(api(env, "POST", "/routers/chat/versions", {"config": config, "source": "x"}), 400,
                 "invalid_request")
    assert_error(api(env, "POST", "/routers/chat/versions", {}), 400, "invalid_request")
    assert_error(api(env, "POST", "/routers/chat/versions", {"source": 3}), 400, "invalid_request")
    assert_error(api(env, "POST", "/routers/chat/versions", {"source": "x", "extra": 1}), 400, "invalid_request")
    assert_error(api(env, "POST", "/routers/chat/versions", b"{not json"), 400, "invalid_json")
    assert_error(api(env, "POST", "/routers/-bad/versions", {"source": env.text}), 400, "invalid_request")
    # a new router by push
    fresh = api(env, "POST", "/routers/fresh/versions", {"source": env.text.replace("router chat", "router fresh")})
    assert fresh.status_code == 201 and fresh.json()["router"] == "fresh"
    names = [r["name"] for r in api(env, "GET", "/routers").json()["data"]]
    assert names == ["chat", "fresh"]
    assert api(env, "GET", "/routers").json()["data"][1] == {"name": "fresh", "active_version": None,
                                                             "latest_version": 1, "served": False}


def test_deploy_shows_the_semantic_diff_and_rollback(env):
    api(env, "POST", "/routers/chat/versions", {"source": source(env.a, env.b, premium="small")})
    dry = api(env, "POST", "/routers/chat/deploy", {"version": 2, "dry_run": True}).json()
    assert dry["deployed"] is False and dry["previous_version"] == 1
    assert env.store.active_version("chat") == 1
    deployed = api(env, "POST", "/routers/chat/deploy", {"version": 2}).json()
    assert deployed["deployed"] is True and deployed["version"] == 2
    change = deployed["diff"]["changes"][0]
    assert change["old_rule"] == "premium" and change["witness"]["user"]["tier"] == "premium"
    assert "change route" in deployed["diff"]["text"] and deployed["diff"]["exact"] is True
    assert env.store.active_version("chat") == 2
    same = api(env, "POST", "/routers/chat/deploy", {"version": 2}).json()
    assert same["deployed"] is False and same["diff"] is None
    assert_error(api(env, "POST", "/routers/chat/deploy", {"version": 7}), 404, "version_not_found")
    assert_error(api(env, "POST", "/routers/chat/deploy", {"version": 0}), 400, "invalid_request")
    assert_error(api(env, "POST", "/routers/nope/deploy", {"version": 1}), 404, "router_not_found")
    rolled = api(env, "POST", "/routers/chat/rollback").json()
    assert rolled == {"router": "chat", "from_version": 2, "to_version": 1}
    assert_error(api(env, "POST", "/routers/chat/rollback"), 409, "nothing_to_roll_back")
    assert_error(api(env, "POST", "/routers/nope/rollback"), 404, "router_not_found")


def test_delete(env):
    assert api(env, "DELETE", "/routers/chat").json() == {"router": "chat", "deleted": True}
    assert_error(api(env, "GET", "/routers/chat"), 404, "router_not_found")
    assert_error(api(env, "DELETE", "/routers/chat"), 404, "router_not_found")
    assert api(env, "GET", "/routers").json()["data"] == []


# ---- decisions -----------------------------------------------------------------------------------

def test_route_decides_records_and_hides_header_values(env):
    routed = api(env, "POST", "/route", {"router": "chat", "data": PREMIUM}).json()
    assert routed["matched_rule"] == {"name": "premium", "priority": 100, "strategy": "single"}
    assert [t["model_name"] for t in routed["selected_targets"]] == ["m-big"]
    assert routed["router"] == "chat" and routed["unavailable"] is False and routed["reason"]
    split = api(env, "POST", "/route", {"data": TRIAL}).json()   # the default router
    assert split["matched_rule"]["name"] == "ab" and len(split["selected_targets"]) == 1
    assert len(split["attempts"]) == 2   # the pick, then the other arm as failover
    assert split["attempts"][0] == split["selected_targets"][0]
    row = api(env, "GET", f"/requests/{routed['request_id']}").json()
    assert row["rule"] == "premium" and row["router"] == "chat" and row["selected_target"] == "m-big"
    listed = api(env, "GET", "/routers/chat/requests?limit=1").json()
    assert [r["id"] for r in listed["data"]] == [split["request_id"]]
    quiet = api(env, "POST", "/route", {"router": "chat", "data": PREMIUM, "record": False}).json()
    assert quiet["request_id"] is None
    assert len(api(env, "GET", "/routers/chat/requests").json()["data"]) == 2
    nothing = api(env, "POST", "/route", {"router": "chat", "data": {"user": "x"}}).json()
    assert nothing["matched_rule"]["name"] == "default"
    assert_error(api(env, "POST", "/route", {"router": "nope", "data": {}}), 404, "router_not_found")
    assert_error(api(env, "POST", "/route", {"router": "chat"}), 400, "invalid_request")
    assert_error(api(env, "POST", "/route", {"router": "chat", "data": []}), 400, "invalid_request")
    assert_error(api(env, "GET", "/requests/" + "0" * 32), 404, "request_not_found")
    assert_error(api(env, "GET", "/routers/chat/requests?limit=0"), 400, "invalid_request")
    assert_error(api(env, "GET", "/routers/chat/requests?limit=ten"), 400, "invalid_request")
    assert_error(api(env, "GET", "/routers/nope/requests"), 404, "router_not_found")


def test_a_registry_router_this_gateway_does_not_serve_is_decided_by_its_active_version(env):
    other = env.text.replace("router chat", "router other").replace('"premium"', '"gold"')
    api(env, "POST", "/routers/other/versions", {"source": other})
    assert_error(api(env, "POST", "/route", {"router": "other", "data": PREMIUM}), 409, "not_deployed")
    api(env, "POST", "/routers/other/deploy", {"version": 1})
    routed = api(env, "POST", "/route", {"router": "other", "data": {"user": {"tier": "gold"}}}).json()
    assert routed["matched_rule"]["name"] == "premium" and routed["version"] == 1
    assert_error(api(env, "POST", "/targets/other/big/drain"), 404, "router_not_served")
    # deleted and pushed again from elsewhere (another process): version 1 again, another content
    env.store.delete("other")
    built = build_text(other.replace('"gold"', '"silver"'), "other.route")
    env.store.push("other", built.entry, built.sources, built.compiled)
    env.store.deploy("other", 1)
    again = api(env, "POST", "/route", {"router": "other", "data": {"user": {"tier": "silver"}}}).json()
    assert again["matched_rule"]["name"] == "premium" and again["version"] == 1


def test_routing_test_reports_every_condition_of_every_rule(env):
    tested = api(env, "POST", "/routing/test", {"router": "chat", "data": TRIAL, "expected_rule": "premium"}).json()
    assert tested["matched_rule"]["name"] == "ab" and tested["passed"] is False
    assert tested["request_id"] is None   # a test is not recorded
    rules = {r["name"]: r for r in tested["rules"]}
    assert [r["name"] for r in tested["rules"]] == ["premium", "ab", "default"]
    assert rules["premium"]["matched"] is False and rules["premium"]["selected"] is False
    assert rules["premium"]["conditions"] == [{"field": "user.tier", "operator": "equals", "value": "premium",
                                               "words": 'user.tier is "premium"', "actual": "trial",
                                               "held": False}]
    assert rules["ab"]["matched"] is True and rules["ab"]["selected"] is True
    assert rules["ab"]["conditions"][0]["held"] is True
    assert rules["default"]["matched"] is True and rules["default"]["conditions"] == []
    ok = api(env, "POST", "/routing/test", {"router": "chat", "data": TRIAL, "expected_rule": "ab"}).json()
    assert ok["passed"] is True
    assert api(env, "POST", "/routing/test", {"data": PREMIUM}).json()["passed"] is None
    assert_error(api(env, "POST", "/routing/test", {"router": "nope", "data": {}}), 404, "router_not_found")


# ---- export and import ---------------------------------------------------------------------------

def test_export_then_import_into_another_registry_is_idempotent(env, gateway, tmp_path):
    api(env, "POST", "/routers/chat/versions", {"source": source(env.a, env.b, premium="small"), "message": "two"})
    api(env, "POST", "/routers/chat/deploy", {"version": 2})
    api(env, "POST", "/routers/other/versions", {"source": env.text.replace("router chat", "router other")})
    exported = api(env, "GET", "/export").json()
    assert exported["format"] == "routelang-registry" and exported["format_version"] == 1
    chat = exported["routers"][0]
    assert chat["name"] == "chat" and chat["active_version"] == 2 and len(chat["versions"]) == 2
    assert [d["version"] for d in chat["deployments"]] == [1, 2]

    store = open_store(tmp_path / "second.db")
    second = gateway(env.text, admin_keys=frozenset({auth.digest(ADMIN)}), store=store)
    first = http("POST", second.url + "/api/import", exported, AS_ADMIN)
    assert first.status_code == 200, first.text
    assert first.json()["routers"] == [
        {"name": "chat", "created_versions": [1, 2], "existing_versions": [], "active_version": 2, "deployed": True},
        {"name": "other", "created_versions": [1], "existing_versions": [], "active_version": None,
         "deployed": False}]
    again = http("POST", second.url + "/api/import", exported, AS_ADMIN).json()
    assert again["routers"][0] == {"name": "chat", "created_versions": [], "existing_versions": [1, 2],
                                   "active_version": 2, "deployed": False}
    reexported = http("GET", second.url + "/api/export", headers=AS_ADMIN).json()
    hashes = [[v["content_hash"] for v in r["versions"]] for r in reexported["routers"]]
    assert hashes == [[v["content_hash"] for v in r["versions"]] for r in exported["routers"]]
    # a version that does not check clean stops the whole import before anything is written
    broken = {**exported, "routers": [{**chat, "name": "broken", "active_version": None, "versions": [
        {**chat["versions"][0], "sources": {**chat["versions"][0]["sources"],
                                            "chat.route": "router broken\nrule r { route nowhere }\n"}}]}]}
    error = assert_error(http("POST", second.url + "/api/import", broken, AS_ADMIN), 422, "does_not_check")
    assert error["diagnostics"]
    assert [r["name"] for r in http("GET", second.url + "/api/routers", headers=AS_ADMIN).json()["data"]] == \
        ["chat", "other"]
    # source names are written to a temporary directory to be checked: never outside it
    for name in ("../escape.route", "/tmp/escape.route", "a/../../escape.route"):
        escaping = {**exported, "routers": [{**chat, "name": "esc", "active_version": None, "versions": [
            {**chat["versions"][0], "sources": {**chat["versions"][0]["sources"], name: "x"}}]}]}
        error = assert_error(http("POST", second.url + "/api/import", escaping, AS_ADMIN), 400, "invalid_request")
        assert "not a source file's name" in error["message"]
    assert not (tmp_path.parent / "escape.route").exists()
    bad = {**exported, "routers": [{**chat, "active_version": 9}]}
    assert_error(http("POST", second.url + "/api/import", bad, AS_ADMIN), 400, "invalid_request")
    assert_error(http("POST", second.url + "/api/import", {"routers": "x"}, AS_ADMIN), 400, "invalid_request")


def test_a_gateway_serving_a_file_has_no_registry_endpoints(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    gw = gateway(source(a, b), admin_keys=frozenset({auth.digest(ADMIN)}))
    for path in ("/routers", "/routers/chat", "/export", "/requests/" + "0" * 32):
        assert_error(http("GET", gw.url + "/api" + path, headers=AS_ADMIN), 409, "no_registry")
    routed = http("POST", gw.url + "/api/route", {"data": PREMIUM}, AS_ADMIN).json()
    assert routed["matched_rule"]["name"] == "premium" and routed["request_id"] is None
    assert_error(http("POST", gw.url + "/api/route", {"router": "other", "data": PREMIUM}, AS_ADMIN), 404,
                 "router_not_served")


def test_targets_without_a_name_are_shown_too(upstreams, gateway):
    up = upstreams()
    gw = gateway({"name": "plain", "rules": [{"name": "all", "priority": 1, "conditions": [], "strategy": "single",
                                             "targets": [{"provider": "openai", "model_name": "m",
                                                          "endpoint": up.url + "/v1"}]}]},
                 admin_keys=frozenset({auth.digest(ADMIN)}))
    routed = http("POST", gw.url + "/api/route", {"data": {}}, AS_ADMIN)
    assert routed.status_code == 200, routed.text
    assert routed.json()["selected_targets"][0]["name"] is None
    assert http("POST", gw.url + "/api/targets/plain/m/drain", headers=AS_ADMIN).json()["drained"] is True


# ---- targets: drain and pushed health --------------------------------------------------------------

def metric(gw, name: str, target: str) -> float | None:
    text = http("GET", gw.url + "/metrics").text
    match = re.search(rf'^{name}{{target="{target}"}} (\S+)$', text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def routing_target(gw, name: str) -> dict:
    targets = http("GET", gw.url + "/routing", headers={"Authorization": f"Bearer {CLIENT}"}).json()["targets"]
    return next(t for t in targets if t["name"] == name)


def chat(gw, tier: str, user: str) -> str:
    reply = http("POST", gw.url + "/v1/chat/completions", {**CHAT, "user": {"tier": tier, "id": user}},
                 {"Authorization": f"Bearer {CLIENT}"})
    assert reply.status_code == 200, reply.text
    return reply.headers["x-routelang-target"]


def test_a_drained_target_leaves_selection_like_an_unhealthy_one(env):
    users = [f"u-{i}" for i in range(40)]
    before = {chat(env.gw, "trial", u) for u in users}
    assert before == {"small", "big"}   # both arms of the split serve
    drained = api(env, "POST", "/targets/chat/big/drain").json()
    assert drained == {"router": "chat", "target": "big", "drained": True, "healthy": None, "health_detail": None,
                       "selectable": False}
    assert routing_target(env.gw, "big")["drained"] is True and routing_target(env.gw, "small")["drained"] is False
    assert metric(env.gw, "routelang_target_drained", "big") == 1
    candidates = http("POST", env.gw.url + "/routing/decide", {"user": {"tier": "trial", "id": "u-1"}},
                      {"Authorization": f"Bearer {CLIENT}"}).json()["candidates"]
    assert {c["target"]: c["available"] for c in candidates} == {"small": True, "big": False}
    # the split renormalises over the arms left; the premium rule (big only) has nothing to try
    assert {chat(env.gw, "trial", u) for u in users} == {"small"}
    decided = api(env, "POST", "/route", {"data": TRIAL}).json()
    assert [t["model_name"] for t in decided["attempts"]] == ["m-small"]
    unavailable = api(env, "POST", "/route", {"data": PREMIUM}).json()
    assert unavailable["unavailable"] is True and unavailable["attempts"] == []
    premium = http("POST", env.gw.url + "/v1/chat/completions", {**CHAT, "user": {"tier": "premium"}},
                   {"Authorization": f"Bearer {CLIENT}"})
    assert premium.status_code == 503 and premium.json()["error"]["code"] == "targets_unavailable"
    assert "no target may be tried (big: drained)" in premium.json()["error"]["message"]   # not "health fails"
    assert http("GET", env.gw.url + "/health/ready").json()["healthy_targets"] == 1
    undrained = api(env, "POST", "/targets/chat/big/undrain").json()
    assert undrained["drained"] is False and undrained["selectable"] is True
    assert metric(env.gw, "routelang_target_drained", "big") == 0
    assert {chat(env.gw, "trial", u) for u in users} == before
    assert_error(api(env, "POST", "/targets/chat/nope/drain"), 404, "target_not_found")
    assert_error(api(env, "POST", "/targets/nope/big/drain"), 404, "router_not_served")
    assert_error(api(env, "POST", "/targets/chat/nope/undrain"), 404, "target_not_found")
    assert_error(api(env, "POST", "/targets/nope/big/health", {"healthy": True}), 404, "router_not_served")


def test_pushed_health_counts_as_a_probe_does(env):
    pushed = api(env, "POST", "/targets/chat/small/health", {"healthy": False, "detail": "error rate 40%"}).json()
    assert pushed["healthy"] is False and pushed["health_detail"] == "error rate 40%" and pushed["selectable"] is False
    seen = routing_target(env.gw, "small")
    assert seen["healthy"] is False and seen["health_detail"] == "error rate 40%" and seen["health_pushed"] is True
    assert metric(env.gw, "routelang_target_healthy", "small") == 0
    basic = http("POST", env.gw.url + "/v1/chat/completions", {**CHAT, "user": {"tier": "basic"}},
                 {"Authorization": f"Bearer {CLIENT}"})
    assert basic.status_code == 503
    assert {chat(env.gw, "trial", f"u-{i}") for i in range(30)} == {"big"}
    # pushed health survives a reload of the file (the target stays)
    env.gw.path.write_text(env.text.replace('"Chat"', '"Chat, reloaded"'))
    assert wait_for(lambda: env.gw.gateway.routers.get(None).version == 2)
    assert routing_target(env.gw, "small")["healthy"] is False
    healthy = api(env, "POST", "/targets/chat/small/health", {"healthy": True}).json()
    assert healthy["healthy"] is True and healthy["selectable"] is True
    assert metric(env.gw, "routelang_target_healthy", "small") == 1
    assert chat(env.gw, "basic", "u-1") == "small"
    assert_error(api(env, "POST", "/targets/chat/small/health", {"healthy": "maybe"}), 400, "invalid_request")
    assert_error(api(env, "POST", "/targets/chat/small/health", {}), 400, "invalid_request")


def test_the_openapi_document_is_served_and_covers_every_endpoint(env):
    doc = http("GET", env.gw.url + "/api/openapi.json").json()   # no key needed: it holds no secrets
    assert doc["openapi"] == "3.1.0"
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert {(e.method, e.full_path) for e in ENDPOINTS} <= operations
    push = doc["paths"]["/api/routers/{name}/versions"]["post"]
    schema = push["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/PushBody"}
    assert set(doc["components"]["schemas"]["PushBody"]["properties"]) == {"source", "config", "filename", "message"}
    assert {"201", "200", "401", "403", "422"} <= set(push["responses"])


def test_a_drained_target_with_a_health_check_logs_only_real_health_changes(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    checked = {"x-routelang": {"health_check": {"path": "/health", "interval_ms": 50, "timeout_ms": 1000}}}
    gw = gateway(config(rule("all", [target(a, "ma"), target(b, "mb", **checked)], strategy="fallback")),
                 admin_keys=frozenset({auth.digest(ADMIN)}))
    assert wait_for(lambda: b.health_probes >= 1)
    assert http("POST", gw.url + "/api/targets/test-router/mb/drain", headers=AS_ADMIN).json()["drained"] is True
    probes = b.health_probes
    assert wait_for(lambda: b.health_probes >= probes + 3)
    assert gw.log_lines("health") == []   # healthy all along: no change to log, drained or not
    b.health_status = 503
    assert wait_for(lambda: len(gw.log_lines("health")) == 1)
    assert gw.log_lines("health")[0]["healthy"] is False


def test_a_registry_it_cannot_use_is_a_503_not_a_bug(env, tmp_path):
    from routelang.registry.backends import open_store

    newer = open_store(env.store.location)
    newer.execute("UPDATE schema_version SET version = 999")   # written by a newer routelang
    newer.close()
    error = assert_error(api(env, "GET", "/routers"), 503, "registry_unavailable")
    assert "upgrade routelang" in error["message"]
    assert env.gw.log_lines("bug") == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_write_the_database_refuses_is_a_503_not_a_conflict(backend, upstreams, gateway, tmp_path, request,
                                                              monkeypatch):
    """Rollback, deploy and push whose write fails in the database (SQLite: the file's write lock
    held past the busy timeout; Postgres: a read-only database) answer 503 registry_unavailable
    (rollback answered 409 nothing_to_roll_back), and change nothing."""
    from services import writes_refused

    a, b = upstreams("a"), upstreams("b")
    postgres = request.getfixturevalue("postgres_server") if backend == "postgres" else None
    location = tmp_path / "reg" / "registry.db" if postgres is None else postgres.new_database()
    store = open_store(location)
    for version, premium in ((1, "big"), (2, "small")):
        built = build_text(source(a, b, premium), "chat.route")
        store.push("chat", built.entry, built.sources, built.compiled, f"v{version}")
        store.deploy("chat", version)
    gw = gateway(source(a, b), admin_keys=frozenset({auth.digest(ADMIN)}), store=store)

    def call(method: str, path: str, body: dict | None = None):
        return http(method, gw.url + "/api/routers/chat" + path, body, AS_ADMIN)

    third = {"source": source(a, b) + "\n# a third version\n", "message": "v3"}
    with writes_refused(location, monkeypatch, postgres):
        for path, body in (("/rollback", None), ("/deploy", {"version": 1}), ("/versions", third)):
            error = assert_error(call("POST", path, body), 503, "registry_unavailable")
            assert error["message"].startswith("the registry cannot be used now: "), error
    listed = call("GET", "/versions").json()
    assert listed["active_version"] == 2 and len(listed["data"]) == 2
    assert gw.log_lines("bug") == []
    store.close()


@pytest.mark.parametrize("path, body, field", [
    ("/routers/chat/deploy", {"version": True}, "version"),           # was version 1
    ("/routers/chat/deploy", {"version": "1"}, "version"),
    ("/routers/chat/deploy", {"version": 1.0}, "version"),
    ("/routers/chat/deploy", {"version": 1, "dry_run": "false"}, "dry_run"),
    ("/routers/chat/deploy", {"version": 1, "dry_run": 0}, "dry_run"),
    ("/route", {"router": "chat", "data": PREMIUM, "record": "no"}, "record"),   # was false
    ("/targets/chat/small/health", {"healthy": "false"}, "healthy"),
    ("/targets/chat/small/health", {"healthy": 1}, "healthy"),
    ("/routers/chat/versions", {"source": "x", "message": 7}, "message"),
])
def test_a_value_of_another_json_type_is_a_400_naming_the_field_never_coerced(env, path, body, field):
    error = assert_error(api(env, "POST", path, body), 400, "invalid_request")
    assert error["param"] == field and error["message"].startswith(f"invalid body: {field}: "), error
    assert [d["version"] for d in env.store.deployments("chat")] == [1]
    assert env.store.list_requests("chat") == []
    assert routing_target(env.gw, "small")["healthy"] is None


@pytest.mark.parametrize("path", ["/routers/chat/versions/0_1", "/routers/chat/versions/%201", "/routers/chat/versions/+1",
                                  "/routers/chat/requests?limit=1_0"])
def test_a_number_in_a_path_or_query_is_digits_only(env, path):
    """int() read `0_1`, ` 1` and `+1` as 1 (version 1 answered for them) and `1_0` as 10."""
    error = assert_error(api(env, "GET", path), 400, "invalid_request")
    assert error["param"] in ("version", "limit"), error
