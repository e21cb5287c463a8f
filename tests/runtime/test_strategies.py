"""Every strategy, the sticky hash, circuit breakers and the metrics strategies."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter

import pytest

import routelang
from routelang.runtime.strategies import sticky_key, sticky_point

TARGETS = """
target a = { provider "modal" model "a" endpoint "https://a.example.com" cost 0.03 per 1k
             circuit_breaker { failures 2 cooldown 10s successes 2 } }
target b = { provider "fal" model "b" endpoint "https://b.example.com" cost 0.002 per 1k
             circuit_breaker { failures 2 cooldown 10s successes 1 } }
target c = { provider "custom" model "c" endpoint "https://c.example.com" }
"""


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def router(body: str, backend: str = "python", clock=None):
    text = 'router t "strategies"\n' + TARGETS + body
    return routelang.load(text, backend=backend, **({"clock": clock} if clock else {}))


def names(result):
    return [t.model_name for t in result.selected_targets]


@pytest.mark.parametrize("backend", ["python", "json"])
def test_single_shadow_and_fallback(backend):
    r = router("""
rule one priority 3 { when kind == "one" route c }
rule shadowed priority 2 { when kind == "shadow" route c shadow a }
rule chain priority 1 { fallback c, b, a }
""", backend)
    assert names(r.route({"kind": "one"})) == ["c"]
    shadow = r.route({"kind": "shadow"}).selected_targets
    assert [(t.model_name, t.is_shadow) for t in shadow] == [("c", False), ("a", True)]
    assert names(r.route({})) == ["c", "b", "a"]


def test_sticky_hash_is_the_published_one():
    salt, key = "image-ab-2026", "user-42"
    digest = hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()
    assert sticky_point(salt, key) == int(digest[:15], 16) / 16**15
    assert sticky_key("u1") == "u1"
    assert sticky_key(42) == "42"
    assert sticky_key({"b": 1, "a": [True, None]}) == json.dumps({"a": [True, None], "b": 1}, separators=(",", ":"))
    assert sticky_key(None) is None
    # the test vectors published in docs/semantics.md
    assert sticky_point("image-ab-2026", sticky_key("user-42")) == 0.5803672703213683
    assert sticky_point("image-ab-2026", sticky_key(42)) == 0.8555201268538285


def test_sticky_split_buckets_by_weight_and_is_stable_across_backends():
    body = 'rule ab priority 1 { split sticky by user.id salt "s1" { 80% control: c  20% variant: a } }'
    by_python, by_json = router(body), router(body, "json")
    counts = Counter()
    for i in range(4000):
        request = {"user": {"id": f"user-{i}"}}
        first = by_python.route(request).selected_targets[0].label
        assert by_python.route(request).selected_targets[0].label == first  # the same user, the same target
        assert by_json.route(request).selected_targets[0].label == first
        u = sticky_point("s1", f"user-{i}")
        assert first == ("control" if u * 1.0 < 0.8 else "variant")
        counts[first] += 1
    assert 0.77 < counts["control"] / 4000 < 0.83


def test_split_without_the_sticky_field_falls_back_to_random():
    r = router('rule ab priority 1 { split sticky by user.id { 50% c  50% b } }')
    seen = {r.route({}).selected_targets[0].model_name for _ in range(200)}
    assert seen == {"b", "c"}


@pytest.mark.parametrize("backend", ["python", "json"])
def test_a_split_with_no_failover_never_moves_a_request_to_another_arm(backend):
    """With the variant's breaker open, a plain split sends its users to the control; `no failover`
    selects nothing for them (the rule matched, its arm is unavailable) and still the control for the rest."""
    body = 'rule ab priority 1 {{ split sticky by user salt "s1"{} {{ 50% control: b  50% variant: a }} }}'
    plain, experiment = router(body.format(""), backend), router(body.format(" no failover"), backend)
    assert experiment.plan.order[0].selection.failover is False
    users = [f"user-{i}" for i in range(40)]
    arms = {u: experiment.route({"user": u}).selected_targets[0].label for u in users}
    assert set(arms.values()) == {"control", "variant"}
    for r in (plain, experiment):
        r.observe("a", ok=False)
        r.observe("a", ok=False)   # failures 2: a's breaker opens
    for user, arm in arms.items():
        moved, kept = plain.route({"user": user}), experiment.route({"user": user})
        assert [t.label for t in moved.selected_targets] == ["control"]
        if arm == "variant":
            assert kept.matched_rule.name == "ab" and kept.selected_targets == []
        else:
            assert [t.label for t in kept.selected_targets] == ["control"]


def test_round_robin_cycles_and_is_thread_safe():
    r = router("rule rr priority 1 { round_robin a, b, c }")
    assert [names(r.route({}))[0] for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    counts = Counter()
    lock = threading.Lock()

    def work():
        local = Counter(names(r.route({}))[0] for _ in range(900))
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == {"a": 2400, "b": 2400, "c": 2400}


def test_round_robin_turns_come_from_the_routers_turns_object():
    r = router("rule rr priority 1 { fallback (round_robin a, b), c }")
    taken = []

    class Shared:  # e.g. counters another process shares
        def take_turn(self, key):
            taken.append(key)
            return 7

    r.turns = Shared()
    assert names(r.route({}))[:2] == ["b", "c"]  # turn 7 of 2 targets: the second
    assert taken == [("rr", 1)]  # the rule, and the round-robin node's place in its strategy tree


def test_circuit_breaker_opens_probes_and_closes():
    clock = Clock()
    r = router("rule chain priority 1 { fallback a, b, c }", clock=clock)
    assert names(r.route({})) == ["a", "b", "c"]
    r.observe("a", ok=False)
    assert r.breaker_state("a") == "closed"
    r.observe("a", ok=False)  # second consecutive failure: open
    assert r.breaker_state("a") == "open"
    assert names(r.route({})) == ["b", "c"]
    clock.now += 10.0  # cooldown over: one half-open probe
    assert r.breaker_state("a") == "half_open"
    assert names(r.route({})) == ["a", "b", "c"]
    assert names(r.route({})) == ["b", "c"]  # the probe is out; no second one
    r.observe("a", ok=True)
    assert r.breaker_state("a") == "half_open"  # successes 2: one more probe needed
    assert names(r.route({})) == ["a", "b", "c"]
    r.observe("a", ok=True)
    assert r.breaker_state("a") == "closed"
    r.observe("a", ok=False)
    r.observe("a", ok=False)
    clock.now += 10.0
    r.route({})
    r.observe("a", ok=False)  # a failed probe opens the breaker again
    assert r.breaker_state("a") == "open"
    assert r.breaker_state("c") is None  # no breaker configured


def test_when_every_target_is_open_the_rule_still_matches_with_no_targets():
    clock = Clock()
    r = router("rule only priority 1 { route a }", clock=clock)
    r.observe("a", ok=False)
    r.observe("a", ok=False)
    result = r.route({})
    assert result.matched_rule.name == "only"
    assert result.selected_targets == []
    assert "circuit breaker is open" in result.explanation


def test_an_open_shadow_is_dropped_and_an_open_primary_sends_nothing():
    clock = Clock()
    r = router("rule s priority 1 { route a shadow b }", clock=clock)
    r.observe("b", ok=False)
    r.observe("b", ok=False)
    assert names(r.route({})) == ["a"]
    r.observe("a", ok=False)
    r.observe("a", ok=False)
    assert names(r.route({})) == []


def test_least_latency_tries_unmeasured_targets_first_then_the_fastest():
    r = router("rule fast priority 1 { least_latency a, b, c }")
    assert names(r.route({})) == ["a", "b", "c"]
    r.observe("a", latency_ms=300)
    assert names(r.route({})) == ["b", "c", "a"]  # unmeasured first
    r.observe("b", latency_ms=100)
    r.observe("c", latency_ms=200)
    assert names(r.route({})) == ["b", "c", "a"]
    for _ in range(10):
        r.observe("b", latency_ms=900)
    assert names(r.route({})) == ["c", "a", "b"]
    assert r.stats("b").requests == 11


def test_lowest_cost_orders_by_configured_cost_unknown_last():
    r = router("rule cheap priority 1 { lowest_cost c, a, b }")
    assert names(r.route({})) == ["b", "a", "c"]


def test_hybrid_weighs_cost_latency_and_reliability():
    r = router("rule h priority 1 { hybrid(cost 0.0, latency 0.5, reliability 0.5) a, b }")
    r.observe("a", latency_ms=100, ok=True)
    r.observe("b", latency_ms=100, ok=True)
    assert names(r.route({})) == ["a", "b"]  # a tie keeps written order
    r.observe("b", latency_ms=50, ok=True)
    assert names(r.route({}))[0] == "b"
    for _ in range(3):
        r.observe("b", latency_ms=50, ok=False)
        r.observe("b", ok=True)  # keep b's breaker closed; reliability drops to 4/7
    # a: latency 100 -> score 0.5*(50/100) + 0.5*1.0 = 0.75; b: 0.5*1.0 + 0.5*(4/7) ~ 0.786
    assert names(r.route({}))[0] == "b"
    r.observe("b", latency_ms=50, ok=False)
    r.observe("b", ok=True)  # b: reliability 5/9 -> 0.5 + 0.278 = 0.778, still ahead
    r.observe("a", latency_ms=40, ok=True)  # a's average drops to 82: 0.5*(50/82) + 0.5 = 0.805
    assert names(r.route({}))[0] == "a"


def test_observe_rejects_an_unknown_target():
    r = router("rule one priority 1 { route a }")
    with pytest.raises(KeyError):
        r.observe("nope", ok=False)


def test_observe_answers_the_breaker_state_after_the_outcome():
    clock = Clock()
    r = router("rule chain priority 1 { fallback a, b, c }", clock=clock)
    a = r.route({}).attempts[0]
    assert r.observe(a, ok=False) == "closed"
    assert r.observe(a, ok=False) == "open"          # failures 2
    clock.now += 10.0
    assert r.observe(a, ok=True) == "half_open"      # successes 2: one more needed
    assert r.observe(a, ok=True) == "closed"
    assert r.observe("c", ok=True) is None           # no breaker
