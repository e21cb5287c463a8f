"""Tenants through the gateway, over real HTTP with the official `openai`
client: a key gives a request its workspace (rules route on it), its
workspace's restrictions, limits and budgets admit it, and every request
ends settled or released."""

from __future__ import annotations

import concurrent.futures
import json
import time

import openai
import pytest
from gateway_fakes import chunk, http, wait_for

from routelang.tenancy.keys import KeyStore

ROUTE = '''router tenants
import std.providers
target cheap = openai("cheap") {{ endpoint "{url}/v1" input_cost 1 per 1k output_cost 2 per 1k compliance ["gdpr"] }}
target dear = openai("dear") {{ endpoint "{url}/v1" input_cost 10 per 1k output_cost 20 per 1k }}

workspace ws-small {{
    budget {budget} USD per day
    limit {requests} requests per minute
    compliance ["gdpr"]
}}
workspace ws-open {{ }}

rule small priority 10 {{ when workspace.id == "ws-small" route cheap }}
rule rest {{ fallback dear, cheap }}
'''


@pytest.fixture
def tenants(gateway, upstreams, tmp_path):
    """(gateway, upstream, keys by workspace) for a router with two workspaces."""

    def start(budget="1", requests=1000, **options):
        up = upstreams()
        keys_file = tmp_path / "keys.db"
        store = KeyStore(keys_file)
        keys = {ws: store.create(ws)[1] for ws in ("ws-small", "ws-open")}
        revoked_key, revoked = store.create("ws-open")
        store.revoke(revoked_key.id)
        keys["revoked"] = revoked
        store.close()
        gw = gateway(ROUTE.format(url=up.url, budget=budget, requests=requests), tenant_keys=keys_file, **options)
        return gw, up, keys

    return start


def client(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def ask(gw, key, **extra):
    return client(gw, key).chat.completions.create(
        model="any", messages=[{"role": "user", "content": "x" * 400}], max_tokens=100, **extra)


def test_the_key_gives_the_request_its_workspace_and_rules_route_on_it(tenants):
    gw, up, keys = tenants()
    assert ask(gw, keys["ws-small"]).model == "cheap"
    assert ask(gw, keys["ws-open"]).model == "dear"
    with pytest.raises(openai.AuthenticationError) as info:
        ask(gw, keys["revoked"])
    assert info.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        ask(gw, "rlk_not-a-key")
    # The upstream never sees the tenant key.
    assert all("rlk_" not in json.dumps(r["headers"]) for r in up.received)


def test_a_request_rate_limit_answers_429_with_openai_headers(tenants):
    gw, _up, keys = tenants(requests=2)
    ask(gw, keys["ws-small"])
    ask(gw, keys["ws-small"])
    reply = http("POST", gw.url + "/v1/chat/completions",
                 {"model": "any", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10},
                 headers={"Authorization": f"Bearer {keys['ws-small']}"})
    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "rate_limited"
    assert int(reply.headers["Retry-After"]) == 30     # 2 per minute: one more in 30 s
    assert reply.headers["x-ratelimit-limit-requests"] == "2"
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"
    assert reply.headers["x-ratelimit-reset-requests"].endswith("s")
    ask(gw, keys["ws-open"])  # another workspace is not limited by this one
    metrics = http("GET", gw.url + "/metrics").text
    assert 'routelang_tenant_refusals_total{code="rate_limited",workspace="ws-small"} 1.0' in metrics


def test_admitted_answers_carry_openais_rate_limit_headers_streams_too(tenants):
    gw, up, keys = tenants(requests=5, admitted_rate_headers=True)   # serve --rate-limit-headers all
    first = client(gw, keys["ws-small"]).chat.completions.with_raw_response.create(
        model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    assert first.headers["x-ratelimit-limit-requests"] == "5"
    assert first.headers["x-ratelimit-remaining-requests"] == "4"
    assert first.headers["x-ratelimit-reset-requests"] == "12s"        # one request back at 5 per minute
    up.default = {"stream": [chunk("cheap", "a"), chunk("cheap", None, "stop"), "[DONE]"]}
    with client(gw, keys["ws-small"]).chat.completions.with_streaming_response.create(
            model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=10, stream=True) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "3"
    unlimited = client(gw, keys["ws-open"]).chat.completions.with_raw_response.create(
        model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    assert not any(h.startswith("x-ratelimit") for h in unlimited.headers)
    assert http("GET", gw.url + "/routing").json()["ledger"] == {"backend": "memory", "holds": 0}


def test_rate_limit_headers_on_refusals_only_leave_admitted_answers_without_them(tenants):
    # serve's default (--rate-limit-headers refusals): the 429 says the limit; an admitted answer does not.
    gw, _up, keys = tenants(requests=1)
    first = client(gw, keys["ws-small"]).chat.completions.with_raw_response.create(
        model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    assert first.http_response.status_code == 200
    assert not any(h.startswith("x-ratelimit") for h in first.headers)
    with pytest.raises(openai.RateLimitError) as info:
        ask(gw, keys["ws-small"])
    assert info.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_requests_that_repeat_a_clients_x_request_id_are_each_admitted_and_billed(tenants):
    # The ledger's holds are the gateway's own: a client (or a proxy) that sends one x-request-id on
    # every request was answered 500 from its second request on, when holds were keyed by it.
    gw, _up, keys = tenants()
    for _ in range(3):
        reply = client(gw, keys["ws-small"]).chat.completions.with_raw_response.create(
            model="any", messages=[{"role": "user", "content": "x" * 400}], max_tokens=100,
            extra_headers={"x-request-id": "the-same-id"})
        assert reply.http_response.status_code == 200
        assert reply.headers["x-request-id"] == "the-same-id"
    workspace = next(s for s in _scopes(gw) if s.name == "ws-small")
    assert gw.gateway.tenants.ledger.spent(workspace, "day") == (3 * 9_000_000, 0)   # each billed, none held


def test_spend_is_settled_to_the_real_usage_and_the_budget_refuses_what_may_not_fit(tenants):
    # 1 USD per 1k input, 2 per 1k output; the fake upstream reports 5 prompt + 2 completion tokens:
    # 0.009 USD a request. The estimate: 100 prompt tokens + 100 max_tokens = 0.3 USD.
    gw, _up, keys = tenants(budget="0.305")
    ask(gw, keys["ws-small"])
    ledger = gw.gateway.tenants.ledger
    workspace = next(s for s in _scopes(gw) if s.name == "ws-small")
    assert ledger.spent(workspace, "day") == (9_000_000, 0)   # nano-dollars, nothing left held
    with pytest.raises(openai.RateLimitError) as info:
        ask(gw, keys["ws-small"])   # 0.009 spent + a 0.3 estimate > 0.305
    assert info.value.body["code"] == "budget_exceeded"
    assert "may cost up to 0.3 USD" in info.value.body["message"]


def _scopes(gw):
    from routelang.tenancy.ledger import Scope

    loaded = gw.gateway.routers.all()[0]
    return [Scope(p.kind, p.name, p.budgets, p.limits, p.timezone)
            for p in gw.gateway.tenants.policies(loaded).values()]


def test_concurrent_requests_at_the_edge_of_a_budget_never_overrun_it(tenants):
    # 2 USD: room for 6 estimates of 0.3 USD (the 7th would pass 2.1); 40 requests at once.
    gw, up, keys = tenants(budget="2")
    up.default = {"body": {"id": "c", "object": "chat.completion", "created": 1, "model": "cheap",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 100, "completion_tokens": 100, "total_tokens": 200}},
                  "delay": 0.2}
    outcomes = []

    def one(_):
        try:
            ask(gw, keys["ws-small"])
            return "ok"
        except openai.RateLimitError as exc:
            return exc.body["code"]

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(one, range(40)))
    assert outcomes.count("ok") == 6 and outcomes.count("budget_exceeded") == 34
    workspace = next(s for s in _scopes(gw) if s.name == "ws-small")
    spent, held = gw.gateway.tenants.ledger.spent(workspace, "day")
    assert held == 0 and spent == 6 * 300_000_000 <= 2_000_000_000


def test_a_stream_the_client_leaves_is_billed_for_what_it_streamed_and_its_hold_freed(tenants, loop_thread):
    gw, up, keys = tenants()
    up.default = {"stream": [chunk("cheap", "a"), chunk("cheap", "b"), chunk("cheap", "c"), chunk("cheap", "d")],
                  "stall_after": 3}

    async def leave_after_three_frames():
        import aiohttp

        async with aiohttp.ClientSession() as session, session.post(gw.url + "/v1/chat/completions", json={
                "model": "any", "stream": True, "max_tokens": 100,
                "messages": [{"role": "user", "content": "x" * 400}]},
                headers={"Authorization": f"Bearer {keys['ws-small']}"}) as resp:
            seen = 0
            async for line in resp.content:
                if line.startswith(b"data:"):
                    seen += 1
                if seen == 3:
                    return   # leave mid-stream

    loop_thread.run(leave_after_three_frames())
    ledger = gw.gateway.tenants.ledger
    workspace = next(s for s in _scopes(gw) if s.name == "ws-small")
    assert wait_for(lambda: ledger.spent(workspace, "day")[1] == 0)
    # 100 prompt tokens (400 characters / 4) at 1 USD per 1k + 3 streamed frames at 2 USD per 1k.
    assert ledger.spent(workspace, "day") == (100 * 1000 * 1000 + 3 * 2000 * 1000, 0)


def test_an_upstream_failure_releases_the_hold(tenants):
    gw, up, keys = tenants()
    up.default = {"status": 500, "body": {"error": {"message": "boom"}}}
    with pytest.raises(openai.APIStatusError):
        ask(gw, keys["ws-small"])
    workspace = next(s for s in _scopes(gw) if s.name == "ws-small")
    assert gw.gateway.tenants.ledger.spent(workspace, "day") == (0, 0)


MIXTRAIN = {
    "name": "json-router",
    "rules": [{"name": "all", "priority": 0, "conditions": [], "strategy": "single",
               "targets": [{"provider": "openai", "model_name": "dear", "endpoint": "URL", "weight": 1.0,
                            "x-routelang": {"name": "dear"}}]}],
    "x-routelang": {"format": 1, "policies": [
        {"kind": "workspace", "name": "ws-health", "compliance": ["hipaa"], "timezone": "UTC"}]},
}


def test_a_target_outside_the_restrictions_is_refused_403_even_without_the_checker(gateway, upstreams, tmp_path):
    """A plain JSON config is not proven by the checker: the gateway holds the line itself."""
    up = upstreams()
    store = KeyStore(tmp_path / "keys.db")
    _key, secret = store.create("ws-health")
    store.close()
    config = json.loads(json.dumps(MIXTRAIN).replace("URL", up.url + "/v1"))
    gw = gateway(config, tenant_keys=tmp_path / "keys.db")
    with pytest.raises(openai.PermissionDeniedError) as info:
        ask(gw, secret)
    assert info.value.body["code"] == "model_not_allowed"
    assert "dear: it lacks compliance hipaa" in info.value.body["message"]
    assert up.received == []


QUALITY = '''router quality
import std.providers
target bad = openai("bad") {{ endpoint "{bad}/v1" input_cost 1 per 1k }}
target good = openai("good") {{ endpoint "{good}/v1" input_cost 3 per 1k }}

workspace ws-picky {{ require success >= 90% }}
workspace ws-thrifty {{ require cost per 1k tokens <= 2 }}
workspace ws-strict {{ require cost per 1k tokens <= 0.5 otherwise refuse }}

rule all {{ fallback bad, good }}
'''


def test_quality_requirements_take_targets_out_of_selection(gateway, upstreams, tmp_path):
    bad, good = upstreams("bad"), upstreams("good")
    bad.default = {"status": 500, "body": {"error": {"message": "down"}}}
    store = KeyStore(tmp_path / "keys.db")
    keys = {ws: store.create(ws)[1] for ws in ("ws-picky", "ws-thrifty", "ws-strict")}
    store.close()
    gw = gateway(QUALITY.format(bad=bad.url, good=good.url), tenant_keys=tmp_path / "keys.db")
    for _ in range(30):
        assert ask(gw, keys["ws-picky"]).model == "good"   # bad fails, good answers
    # Judged after 20 attempts (0 % success < 90 %): bad leaves ws-picky's selection.
    assert len(bad.received) == 20
    # Only the price matters to ws-thrifty: good costs 3 USD per 1k tokens, more than 2; bad qualifies.
    bad.default = None
    assert ask(gw, keys["ws-thrifty"]).model == "bad"
    with pytest.raises(openai.InternalServerError) as info:
        ask(gw, keys["ws-strict"])
    assert info.value.status_code == 503 and info.value.body["code"] == "no_qualified_target"
    assert info.value.body["message"] == ("no target meets the requirements of workspace ws-strict:"
                                          " bad costs 1 USD per 1k tokens; good costs 3 USD per 1k tokens")


def test_a_settle_that_fails_after_the_upstream_call_neither_double_counts_nor_leaks(tenants):
    gw, _up, keys = tenants(budget="0.35")
    ledger = gw.gateway.tenants.ledger
    ledger.hold_ttl_s = 0.5
    real_settle, failures = ledger.settle, []

    def failing_settle(request_id, tokens, nanos):
        failures.append(request_id)
        raise OSError("the ledger's store went away")

    ledger.settle = failing_settle
    assert ask(gw, keys["ws-small"]).model == "cheap"       # the client still gets its answer
    ledger.settle = real_settle
    assert any("settle: OSError" in line["error"] for line in gw.log_lines("bug"))
    workspace = next(s for s in _scopes(gw) if s.name == "ws-small")
    assert ledger.spent(workspace, "day") == (0, 300_000_000)   # held, not charged
    with pytest.raises(openai.RateLimitError):
        ask(gw, keys["ws-small"])                              # the hold still counts ...
    time.sleep(1.1)   # past the hold's 0.5 s and the once-a-second sweep
    assert ask(gw, keys["ws-small"]).model == "cheap"        # ... until it expires: nothing leaks
    assert ledger.settle(failures[0], 100, 10**9) is False   # a late settle of the failed one changes nothing
    assert ledger.spent(workspace, "day")[0] == 9_000_000    # only the last request's real cost


def _keyed(gw, up_url_keys_file, **allowance):
    from routelang.tenancy.keys import allowance as read_allowance

    budgets, limits = read_allowance(allowance.get("budget"), allowance.get("limit"))
    store = KeyStore(up_url_keys_file)
    key, secret = store.create("ws-small", budgets=budgets, limits=limits)
    store.close()
    return key, secret


def test_a_key_limit_refuses_while_its_workspace_has_room(tenants, tmp_path):
    gw, _up, keys = tenants(requests=1000)
    key, secret = _keyed(gw, tmp_path / "keys.db", limit="2 requests per minute")
    ask(gw, secret)
    ask(gw, secret)
    reply = http("POST", gw.url + "/v1/chat/completions",
                 {"model": "any", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10},
                 headers={"Authorization": f"Bearer {secret}"})
    assert reply.status_code == 429 and reply.json()["error"]["code"] == "rate_limited"
    assert f"key {key.id} is over its limit of 2 requests per minute" in reply.json()["error"]["message"]
    assert reply.headers["x-ratelimit-limit-requests"] == "2"
    assert int(reply.headers["Retry-After"]) == 30
    ask(gw, keys["ws-small"])   # the workspace has room: its other keys go on


def test_a_key_budget_refuses_all_or_nothing_across_its_scopes(tenants, tmp_path):
    # Each request is estimated at 0.3 USD (100 prompt + 100 max tokens at the cheap target) and costs
    # 0.009 USD (5 prompt + 2 completion tokens): the key's 0.305 USD a day has room for one estimate.
    gw, _up, keys = tenants(budget="10")
    key, secret = _keyed(gw, tmp_path / "keys.db", budget="0.305 USD per day")
    ask(gw, secret)
    with pytest.raises(openai.RateLimitError) as info:
        ask(gw, secret)   # 0.009 spent + 0.3 > 0.305
    assert info.value.body["code"] == "budget_exceeded"
    assert info.value.body["message"].startswith(f"the daily budget of key {key.id} (0.305 USD) has 0.296 USD left")
    ledger = gw.gateway.tenants.ledger
    workspace = next(s for s in _scopes(gw) if s.name == "ws-small")
    assert ledger.spent(workspace, "day") == (9_000_000, 0)   # the refused request took nothing from it
    ask(gw, keys["ws-small"])
