"""Strategies executed for real, retries, fallback, Retry-After, breakers, health checks."""

from __future__ import annotations

import json
import time

import openai
import pytest
from gateway_fakes import FAST, chat_answer, config, http, rule, target, wait_for

from routelang.gateway.executor import Settings
from routelang.gateway.state import InProcessState

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def post(gw, body=None, path="/v1/chat/completions", headers=None):
    return http("POST", gw.url + path, CHAT if body is None else body, headers)


def get(gw, path):
    return http("GET", gw.url + path)


def fail(status=500, **extra):
    return {"status": status, "body": {"error": {"message": f"failed with {status}", "type": "server_error"}},
            **extra}


def test_fallback_moves_to_the_next_target(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = fail(503)
    gw = gateway(config(rule("chain", [target(a, "ma"), target(b, "mb")], strategy="fallback")))
    r = post(gw)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "from b"
    assert r.headers["x-routelang-target"] == "mb" and r.headers["x-routelang-attempts"] == "2"
    assert len(a.received) == 1 and b.received[0]["body"]["model"] == "mb"


def test_retries_the_same_target_before_falling_back(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.script = [fail(500), fail(429)]
    gw = gateway(config(rule("chain", [target(a, "ma", retry_count=2), target(b, "mb")], strategy="fallback")))
    r = post(gw)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "from a"
    assert r.headers["x-routelang-attempts"] == "3"
    assert len(a.received) == 3 and b.received == []
    attempts = gw.log_lines()[-1]["attempts"]
    assert [x["outcome"] for x in attempts] == ["http_500", "http_429", "ok"]


def test_retry_waits_for_retry_after_ms(upstreams, gateway):
    a = upstreams("a")
    a.script = [fail(429, headers={"retry-after-ms": "400"})]
    gw = gateway(config(rule("one", [target(a, retry_count=1)])))
    start = time.monotonic()
    r = post(gw)
    assert r.status_code == 200
    assert time.monotonic() - start >= 0.4
    assert len(a.received) == 2


def test_retry_waits_are_not_counted_as_overhead(upstreams, gateway):
    """Overhead is the gateway's own time: waiting for upstreams and for Retry-After back-off are
    not (two waits of 0.4 s here; the gateway's own work is a few milliseconds)."""
    a = upstreams("a")
    a.script = [fail(429, headers={"retry-after-ms": "400"}), fail(503, headers={"retry-after-ms": "400"})]
    gw = gateway(config(rule("one", [target(a, retry_count=2)])))
    r = post(gw)
    assert r.status_code == 200 and len(a.received) == 3
    line = gw.log_lines()[-1]
    assert line["ms"] >= 800
    assert float(r.headers["x-routelang-overhead-ms"]) < 400 and line["overhead_ms"] < 400
    metrics = http("GET", gw.url + "/metrics").text
    assert "routelang_overhead_seconds_bucket{le=\"0.5\"} 1.0" in metrics


def test_a_retry_after_beyond_the_limit_moves_on_instead_of_waiting(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.script = [fail(503, headers={"Retry-After": "3600"})]
    gw = gateway(config(rule("chain", [target(a, retry_count=3), target(b, "mb")], strategy="fallback")))
    r = post(gw)
    assert r.status_code == 200 and r.headers["x-routelang-target"] == "mb"
    assert len(a.received) == 1


def test_insufficient_quota_is_never_retried_but_fails_over(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = {"status": 429, "body": {"error": {"message": "quota", "type": "insufficient_quota",
                                                   "code": "insufficient_quota"}}}
    gw = gateway(config(rule("chain", [target(a, retry_count=3), target(b, "mb")], strategy="fallback")))
    r = post(gw)
    assert r.status_code == 200 and r.headers["x-routelang-target"] == "mb"
    assert len(a.received) == 1


def test_a_client_error_is_not_retried_nor_failed_over(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = {"status": 422, "body": {"error": {"message": "bad", "type": "invalid_request_error"}}}
    gw = gateway(config(rule("chain", [target(a, retry_count=3), target(b, "mb")], strategy="fallback")))
    r = post(gw)
    assert r.status_code == 422 and r.json()["error"]["message"] == "bad"
    assert len(a.received) == 1 and b.received == []


def test_a_redirect_is_not_followed_but_goes_back_to_the_client(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = {"status": 307, "body": {"moved": True}, "headers": {"Location": b.url + "/v1/chat/completions"}}
    gw = gateway(config(rule("chain", [target(a), target(b, "mb")], strategy="fallback")))
    r = post(gw)
    assert r.status_code == 307 and r.headers["location"] == b.url + "/v1/chat/completions"
    assert len(a.received) == 1 and b.received == []   # the body was not posted again anywhere


def test_connect_errors_and_timeouts_fail_over(upstreams, gateway):
    hang, b = upstreams("hang"), upstreams("b")
    hang.default = {"hang": True}
    dead = {"provider": "openai", "model_name": "dead", "endpoint": "http://127.0.0.1:9/v1"}
    # A timeout long enough for the call to reach the upstream even on a loaded machine.
    gw = gateway(config(rule("chain", [dead, target(hang, "slow", timeout_ms=1500), target(b, "mb")],
                             strategy="fallback")))
    r = post(gw)
    assert r.status_code == 200 and r.headers["x-routelang-target"] == "mb"
    outcomes = [a["outcome"] for a in gw.log_lines()[-1]["attempts"]]
    assert outcomes == ["connect_error", "timeout", "ok"]
    assert len(hang.received) == 1
    assert wait_for(lambda: hang.cancelled == 1)  # the timed-out call was really abandoned


def test_every_target_failing_names_each_attempt(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default, b.default = fail(500), fail(502)
    gw = gateway(config(rule("chain", [target(a, "ma"), target(b, "mb")], strategy="fallback")))
    r = post(gw)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "all_targets_failed" and error["type"] == "upstream_error"
    assert "ma: http_500" in error["message"] and "mb: http_502" in error["message"]


def test_a_split_tries_the_other_arms_when_its_pick_fails(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = fail(500)
    gw = gateway(config(rule("split", [target(a, "ma", weight=0.5), target(b, "mb", weight=0.5)],
                             strategy="split")))
    answers = [post(gw) for _ in range(24)]
    assert all(r.status_code == 200 and r.headers["x-routelang-target"] == "mb" for r in answers)
    assert {r.headers["x-routelang-attempts"] for r in answers} == {"1", "2"}  # a was picked sometimes
    assert 0 < len(a.received) < 24


def test_sticky_split_keeps_a_user_on_one_target(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    gw = gateway(config(rule("ab", [target(a, "ma", weight=0.5), target(b, "mb", weight=0.5)], strategy="split",
                             ext={"strategy": {"kind": "split", "sticky_by": "user", "salt": "s"}})))
    for user in ("u1", "u2", "u3", "u4"):
        seen = {post(gw, {**CHAT, "user": user}).headers["x-routelang-target"] for _ in range(4)}
        assert len(seen) == 1


def test_round_robin_cycles(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    gw = gateway(config(rule("rr", [target(a, "ma"), target(b, "mb")], strategy="round_robin",
                             ext={"strategy": {"kind": "round_robin"}})))
    assert [post(gw).headers["x-routelang-target"] for _ in range(4)] == ["ma", "mb", "ma", "mb"]


def test_round_robin_turns_go_through_the_state_and_carry_over_a_reload(upstreams, gateway):
    class SharedTurns(InProcessState):  # stands for a store that replicas share
        def __init__(self):
            super().__init__()
            self.keys = []

        def take_turn(self, key):
            self.keys.append(key)
            return super().take_turn(key)

    state = SharedTurns()
    state.take_turn(("test-router", "rr", 0))  # a turn another replica took (router, rule, node)
    a, b = upstreams("a"), upstreams("b")
    rr = rule("rr", [target(a, "ma"), target(b, "mb")], strategy="round_robin",
              ext={"strategy": {"kind": "round_robin"}})
    gw = gateway(config(rr), state=state)
    assert [post(gw).headers["x-routelang-target"] for _ in range(3)] == ["mb", "ma", "mb"]
    gw.path.write_text(json.dumps(config({**rr, "description": "changed"})))
    assert wait_for(lambda: gw.gateway.routers.get(None).version == 2)  # the file watcher reloaded it
    assert post(gw).headers["x-routelang-target"] == "ma"  # the rotation goes on across the reload
    assert state.keys == [("test-router", "rr", 0)] * 5


def test_lowest_cost_and_least_latency_use_measurements(upstreams, gateway):
    slow, fast = upstreams("slow"), upstreams("fast")
    slow.default = {"delay": 0.15, "body": chat_answer("slow")}
    gw = gateway(config(
        rule("cheap", [target(slow, "pricey", **{"x-routelang": {"cost_per_1k_tokens": 2.0}}),
                       target(fast, "thrifty", **{"x-routelang": {"cost_per_1k_tokens": 0.5}})],
             strategy="lowest_cost", conditions=[{"field": "metadata.goal", "operator": "equals", "value": "cost"}],
             priority=10, ext={"strategy": {"kind": "lowest_cost"}}),
        rule("quick", [target(slow, "s"), target(fast, "f")], strategy="least_latency",
             ext={"strategy": {"kind": "least_latency"}})))
    assert post(gw, {**CHAT, "metadata": {"goal": "cost"}}).headers["x-routelang-target"] == "thrifty"
    # Cold start: each unmeasured target is tried first once, then the faster one wins.
    picks = [post(gw).headers["x-routelang-target"] for _ in range(4)]
    assert picks[:2] == ["s", "f"] and picks[2:] == ["f", "f"]


def test_decide_explains_hybrid_scores_without_calling_upstreams(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    gw = gateway(config(rule("scored", [target(a, "ma", **{"x-routelang": {"cost_per_1k_tokens": 1.0}}),
                                        target(b, "mb", **{"x-routelang": {"cost_per_1k_tokens": 4.0}})],
                             strategy="hybrid", ext={"strategy": {"kind": "hybrid", "cost_weight": 0.6,
                                                                  "latency_weight": 0.2,
                                                                  "reliability_weight": 0.2}})))
    r = post(gw, {**CHAT, "metadata": {"tier": "gold"}}, "/routing/decide",
             headers={"X-Team": "ml", "Authorization": "Bearer secret"})
    out = r.json()
    assert out["rule"] == "scored" and out["attempts"][0]["name"] == "ma"
    assert [c["score"] for c in out["candidates"]] == pytest.approx([1.0, 0.55])
    assert "ma has the highest hybrid score 1.0000" in out["reason"]
    assert out["document"]["headers"]["x-team"] == "ml" and "authorization" not in out["document"]["headers"]
    assert out["document"]["request"] == {"type": "chat", "path": "/v1/chat/completions", "stream": False,
                                          "model": "auto", "tokens": 1}
    assert a.received == [] and b.received == []


def test_an_open_breaker_skips_the_target_and_recovers(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 2, "cooldown_ms": 400,
                                                   "success_threshold": 1}}}
    a.script = [fail(500), fail(500)]
    gw = gateway(config(rule("chain", [target(a, "ma", **breaker), target(b, "mb")], strategy="fallback")))
    assert post(gw).headers["x-routelang-target"] == "mb"
    assert post(gw).headers["x-routelang-target"] == "mb"
    assert len(a.received) == 2
    assert post(gw).headers["x-routelang-target"] == "mb"  # open: a is not even tried
    assert len(a.received) == 2
    routing = get(gw, "/routing").json()
    assert next(t for t in routing["targets"] if t["name"] == "ma")["breaker"] == "open"
    assert 'routelang_breaker_state{router="test-router",target="ma"} 2.0' in get(gw, "/metrics").text
    time.sleep(0.45)
    assert post(gw).headers["x-routelang-target"] == "ma"  # the half-open probe succeeds: closed again
    assert get(gw, "/routing").json()["targets"][0]["breaker"] == "closed"


def test_all_breakers_open_is_a_503_with_retry_after(upstreams, gateway):
    a = upstreams("a")
    a.default = fail(500)
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 1, "cooldown_ms": 5000}}}
    gw = gateway(config(rule("one", [target(a, "ma", **breaker)])))
    assert post(gw).status_code == 502
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(**CHAT)
    assert info.value.status_code == 503 and info.value.code == "targets_unavailable"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 5
    assert len(a.received) == 1


def test_health_checks_take_targets_out_and_back(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    hc = {"x-routelang": {"health_check": {"path": "/health", "interval_ms": 50, "timeout_ms": 500}}}
    gw = gateway(config(rule("split", [target(a, "ma", weight=0.5, **hc), target(b, "mb", weight=0.5, **hc)],
                             strategy="split")))
    a.health_status = 503
    assert wait_for(lambda: get(gw, "/routing").json()["targets"][0]["healthy"] is False)
    assert {post(gw).headers["x-routelang-target"] for _ in range(12)} == {"mb"}
    assert a.received == []
    b.health_status = 503
    assert wait_for(lambda: get(gw, "/health/ready").status_code == 503)
    r = post(gw)
    assert r.status_code == 503 and r.json()["error"]["code"] == "targets_unavailable"
    assert "(ma: health check fails; mb: health check fails)" in r.json()["error"]["message"]
    assert r.headers["Retry-After"] == "1"
    a.health_status = b.health_status = 200
    assert wait_for(lambda: get(gw, "/health/ready").status_code == 200)
    assert wait_for(lambda: post(gw).headers.get("x-routelang-target") == "ma")
    assert 'routelang_target_healthy{target="ma"} 1.0' in get(gw, "/metrics").text


def test_a_hanging_shadow_never_delays_the_answer(upstreams, gateway):
    primary, shadow = upstreams("p"), upstreams("s")
    shadow.default = {"hang": True}
    settings = Settings(**{**FAST.__dict__, "shadow_limit": 2})
    gw = gateway(config(rule("mirror", [target(primary, "mp"), target(shadow, "ms")], strategy="shadow")),
                 settings=settings)
    for _ in range(4):
        r = post(gw)
        assert r.status_code == 200 and r.headers["x-routelang-target"] == "mp"
    # The answers came while the shadow calls still hang; past the limit they are dropped and counted.
    assert wait_for(lambda: len(shadow.received) == 2)
    assert not any(rec["done"] for rec in shadow.received)
    assert 'routelang_shadow_dropped_total{router="test-router",target="ms"} 2.0' in get(gw, "/metrics").text


def test_shadow_outcomes_are_recorded(upstreams, gateway):
    primary, shadow = upstreams("p"), upstreams("s")
    shadow.default = fail(500)
    gw = gateway(config(rule("mirror", [target(primary, "mp"), target(shadow, "ms")], strategy="shadow")))
    assert post(gw, {**CHAT, "stream": True}).status_code == 200
    assert wait_for(lambda: 'routelang_shadow_requests_total{outcome="http_500",router="test-router",target="ms"} 1.0'
                    in get(gw, "/metrics").text)
    assert "stream" not in shadow.received[0]["body"]  # shadow copies are never streamed
    assert wait_for(lambda: gw.log_lines("shadow") and gw.log_lines("shadow")[0]["outcome"] == "http_500")


def test_a_half_open_target_later_in_a_chain_gets_its_probe(upstreams, gateway):
    # Regression: the runtime's selection already took the half-open probe for every target of a
    # fallback chain; the executor must not then skip the second target as "breaker open".
    a, b = upstreams("a"), upstreams("b")
    a.default = fail(500)
    b.script = [fail(500)]
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 1, "cooldown_ms": 300}}}
    gw = gateway(config(rule("chain", [target(a, "ma"), target(b, "mb", **breaker)], strategy="fallback")))
    assert post(gw).status_code == 502          # b fails once: open
    assert post(gw).status_code == 502 and len(b.received) == 1   # open: b not tried
    time.sleep(0.35)
    reply = post(gw)                            # half-open: b's probe goes, succeeds
    assert reply.status_code == 200 and reply.headers["x-routelang-target"] == "mb"


def test_x_should_retry_overrides_the_status(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.script = [fail(400, headers={"x-should-retry": "true"})]
    gw = gateway(config(rule("chain", [target(a, "ma", retry_count=2), target(b, "mb")], strategy="fallback")))
    first = post(gw)  # a 400 the upstream asks to retry: retried, and the retry answers
    assert first.status_code == 200 and first.headers["x-routelang-attempts"] == "2"
    a.script = [fail(503, headers={"x-should-retry": "false"})]
    second = post(gw)  # a 503 the upstream says not to retry: passed back as it is
    assert second.status_code == 503 and len(b.received) == 0


def test_decide_for_another_endpoint_and_unmatched_requests(upstreams, gateway):
    a = upstreams("a")
    gw = gateway(config(rule("emb", [target(a, "e")], conditions=[
        {"field": "request.type", "operator": "equals", "value": "embedding"}])))
    out = post(gw, {"model": "x", "input": "abcdefgh"}, "/routing/decide?path=/v1/embeddings").json()
    assert out["rule"] == "emb" and out["document"]["request"]["tokens"] == 2
    out = post(gw, {"model": "x"}, "/routing/decide").json()
    assert out["rule"] is None and out["reason"] == "No rules matched the request"
    assert post(gw, {}, "/routing/decide?path=/v2/x").json()["error"]["code"] == "invalid_request"


def test_retries_stop_when_the_targets_breaker_opens(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = fail(500)
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 2, "cooldown_ms": 60000}}}
    gw = gateway(config(rule("chain", [target(a, "ma", retry_count=5, **breaker), target(b, "mb")],
                             strategy="fallback")))
    reply = post(gw)
    assert reply.status_code == 200 and reply.headers["x-routelang-target"] == "mb"
    assert len(a.received) == 2  # not 6: the breaker opened after the second failure
    assert reply.headers["x-routelang-attempts"] == "3"
