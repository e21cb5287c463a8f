"""Strategies that compose (issue 8, A11): a split arm or a fallback step that is
itself a strategy, through the runtime (attempts, shadows, breakers, sticky
buckets), both executors, and Mixtrain's approximation."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mixtrain.routing.engine import RoutingEngine as MixtrainEngine
from mixtrain.routing.models import RoutingConfig
from mixtrain.routing.validator import RoutingValidator

import routelang
from routelang.backends.json import lower
from routelang.compiler import compile_text
from routelang.loader import make_router
from routelang.runtime.model import ConfigError, plan_from_config

TARGETS = """
import std.providers
target claude = anthropic("claude-3-sonnet") { circuit_breaker { failures 1 cooldown 10s successes 1 } }
target gpt4 = openai("gpt-4")
target turbo = openai("gpt-4-turbo")
target local = custom("llama", "https://llama.example.com")
"""

# The model-router seed: claude 70 / gpt-4 30 with a fallback order, inside primary 80 / canary 20.
SEED_RULE = """
rule agents priority 10 {
    split sticky by userId {
        80% primary: (split {
            70% preferred: (fallback claude, gpt4)
            30% alternative: (fallback gpt4, claude)
        })
        20% canary: (fallback turbo, claude, local)
    }
}
"""


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def source(body: str) -> str:
    return 'router nested "nested strategies"\n' + TARGETS + body


def load(body: str, backend: str = "python", clock=None):
    return routelang.load(source(body), backend=backend, **({"clock": clock} if clock else {}))


def models(targets) -> list[str]:
    return [t.model_name for t in targets]


@pytest.mark.parametrize("backend", ["python", "json"])
def test_a_split_of_fallback_chains_gives_the_chosen_arms_chain_in_order(backend):
    router = load(SEED_RULE, backend)
    seen = Counter()
    for i in range(400):
        result = router.route({"userId": f"user-{i}"})
        chain = tuple(models(result.attempts))
        assert chain in {("claude-3-sonnet", "gpt-4"), ("gpt-4", "claude-3-sonnet"),
                         ("gpt-4-turbo", "claude-3-sonnet", "llama")}
        assert result.shadows == ()
        assert result.selected_targets == list(result.attempts)  # Mixtrain's field: attempts, then shadows
        seen[chain] += 1
    # 80% * 70% = 56%, 80% * 30% = 24%, 20% canary, within sampling noise.
    assert 180 < seen[("claude-3-sonnet", "gpt-4")] < 270
    assert 60 < seen[("gpt-4", "claude-3-sonnet")] < 135
    assert 50 < seen[("gpt-4-turbo", "claude-3-sonnet", "llama")] < 115
    # Sticky by userId is the outer split's: a user stays on their side (primary or canary); the
    # inner 70/30, not sticky, picks at random each time.
    for user in ("user-7", "user-8", "user-9"):
        sides = {router.route({"userId": user}).attempts[0].model_name == "gpt-4-turbo" for _ in range(30)}
        assert len(sides) == 1


def test_nested_sticky_splits_use_their_own_salt_so_buckets_are_independent():
    # With the outer split's salt, the inner 70/30 would see only users the outer put below 80%,
    # i.e. u < 0.8, and give `preferred` 0.7/0.8 = 87.5% instead of 70%.
    router = load(SEED_RULE.replace("(split {", "(split sticky by userId {"))
    inner = Counter()
    for i in range(2000):
        chain = models(router.route({"userId": f"u{i}"}).attempts)
        if chain[0] != "gpt-4-turbo":
            inner[chain[0]] += 1
    share = inner["claude-3-sonnet"] / sum(inner.values())
    assert 0.65 < share < 0.75, share
    config, _ = lower(compile_text(source(SEED_RULE.replace("(split {", "(split sticky by userId {"))).router)
    tree = config["rules"][0]["x-routelang"]["strategy"]
    assert tree["salt"] == "agents" and tree["members"][0]["salt"] == "agents/0"


@pytest.mark.parametrize("backend", ["python", "json"])
def test_a_fallback_to_a_split_tries_the_split_pick_then_the_backup(backend):
    router = load("""
rule r priority 1 { fallback (split { 50% a: claude  50% b: gpt4 }), local }
""", backend)
    random.seed(11)
    chains = {tuple(models(router.route({}).attempts)) for _ in range(60)}
    assert chains == {("claude-3-sonnet", "llama"), ("gpt-4", "llama")}


def test_a_nested_shadow_is_reported_apart_from_the_attempts():
    router = load("rule r priority 1 { fallback (route gpt4 shadow turbo), local }")
    result = router.route({})
    assert models(result.attempts) == ["gpt-4", "llama"]
    assert [(t.model_name, t.is_shadow) for t in result.shadows] == [("gpt-4-turbo", True)]
    assert [(t.model_name, t.is_shadow) for t in result.selected_targets] == [
        ("gpt-4", False), ("llama", False), ("gpt-4-turbo", True)]


def test_flat_strategies_report_attempts_and_shadows_too():
    router = load("""
rule s priority 2 { when kind == "shadow" route gpt4 shadow turbo }
rule f priority 1 { fallback gpt4, local }
""")
    shadowed = router.route({"kind": "shadow"})
    assert models(shadowed.attempts) == ["gpt-4"] and models(shadowed.shadows) == ["gpt-4-turbo"]
    assert models(shadowed.selected_targets) == ["gpt-4", "gpt-4-turbo"]
    chain = router.route({})
    assert models(chain.attempts) == ["gpt-4", "llama"] and chain.shadows == ()


def test_an_open_breaker_inside_a_nested_chain_is_skipped_and_an_arm_without_targets_is_not_picked():
    clock = Clock()
    router = load("""
rule r priority 1 { split { 50% a: (fallback claude)  50% b: (fallback gpt4, local) } }
""", clock=clock)
    router.observe("claude", ok=False)  # failures 1: open for 10s
    assert router.breaker_state("claude") == "open"
    for _ in range(30):  # the claude-only arm has nothing to offer: every request goes to the other
        assert models(router.route({}).attempts) == ["gpt-4", "llama"]
    clock.now += 11
    random.seed(3)
    picks = Counter(tuple(models(router.route({}).attempts)) for _ in range(40))
    assert picks[("claude-3-sonnet",)] >= 1  # half-open: the probe goes out once its arm is picked


def test_the_runtime_reads_the_exact_tree_back_from_the_compiled_json():
    config, _ = lower(compile_text(source(SEED_RULE)).router)
    plan = plan_from_config(config)
    root = plan.rules[0].selection
    assert root.kind == "split" and root.weights == (0.8, 0.2) and root.sticky_by == "userId"
    primary, canary = root.members
    assert primary.kind == "split" and primary.weights == (0.7, 0.3)
    assert [m.kind for m in primary.members] == ["fallback", "fallback"]
    assert models(primary.members[1].members) == ["gpt-4", "claude-3-sonnet"]
    assert models(canary.members) == ["gpt-4-turbo", "claude-3-sonnet", "llama"]
    assert plan.rules[0].strategy == "split"  # RuleSpec.strategy: the outermost kind


@pytest.mark.parametrize("tree, message", [
    ({"kind": "round_robin", "members": [0, {"kind": "single", "members": [1]}]}, "cannot have strategies"),
    ({"kind": "fallback", "members": [0, 7]}, "not the index"),
    ({"kind": "split", "members": [0, 1], "weights": [1.0]}, "one number per member"),
    ({"kind": "shadow", "members": [0]}, "exactly 2"),
    ({"kind": "teleport", "members": [0]}, "unknown strategy"),
])
def test_a_malformed_tree_is_a_config_error(tree, message):
    target = {"provider": "custom", "model_name": "m", "endpoint": "https://m.example.com"}
    config = {"name": "x", "rules": [{"name": "r", "strategy": "fallback", "targets": [target, dict(target)],
                                      "x-routelang": {"strategy": tree}}]}
    with pytest.raises(ConfigError, match=message):
        plan_from_config(config)


# ---- Mixtrain's approximation ---------------------------------------------------------

def test_mixtrain_gets_a_valid_split_weighted_by_first_choice_and_a_note():
    config, notes = lower(compile_text(source(SEED_RULE)).router)
    rule = config["rules"][0]
    assert rule["strategy"] == "split"
    weights = [(t["model_name"], t["weight"]) for t in rule["targets"]]
    # What routelang tries first: claude 80% * 70%, gpt-4 80% * 30%, turbo 20%; the fallbacks weigh 0.
    assert weights[:3] == [("claude-3-sonnet", pytest.approx(0.56)), ("gpt-4", pytest.approx(0.24)),
                           ("gpt-4-turbo", pytest.approx(0.2))]
    assert all(w == 0.0 for _, w in weights[3:]) and len(weights) == 7
    assert RoutingValidator.validate_config(RoutingConfig.from_json(config)) == []
    assert any("cannot nest strategies" in n.message and "random split over the 7 targets" in n.message
               for n in notes)


@pytest.mark.parametrize("seed", range(40))
def test_mixtrain_picks_the_target_routelang_tries_first_for_a_random_split_of_chains(seed):
    body = "rule r priority 1 { split { 80% primary: (fallback claude, gpt4)  20% canary: (fallback turbo, local) } }"
    config, _ = lower(compile_text(source(body)).router)
    random.seed(seed)
    mixtrain = MixtrainEngine(RoutingConfig.from_json(config)).route_request({}).selected_targets
    random.seed(seed)
    ours = routelang.load(config, backend="json").route({})
    assert [t.model_name for t in mixtrain] == models(ours.attempts[:1])


def test_mixtrain_gets_a_fallback_over_every_target_in_written_order():
    config, notes = lower(compile_text(source("rule r priority 1 { fallback (round_robin gpt4, turbo), local }")).router)
    rule = config["rules"][0]
    assert rule["strategy"] == "fallback"
    assert [t["model_name"] for t in rule["targets"]] == ["gpt-4", "gpt-4-turbo", "llama"]
    assert RoutingValidator.validate_config(RoutingConfig.from_json(config)) == []
    assert any("one fallback chain of all 3 targets" in n.message for n in notes)
    router = routelang.load(config)
    assert [models(router.route({}).attempts) for _ in range(3)] == [
        ["gpt-4", "llama"], ["gpt-4-turbo", "llama"], ["gpt-4", "llama"]]


# ---- generated Python == JSON interpreter, on random nested strategies --------------------

NAMES = ["claude", "gpt4", "turbo", "local"]
WEIGHTS = [["100%"], ["50%", "50%"], ["20%", "80%"], ["70%", "20%", "10%"]]


def leaf_strategies():
    names = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(", ".join)
    return st.one_of(
        st.sampled_from(NAMES).map(lambda n: f"route {n}"),
        st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)).map(lambda p: f"route {p[0]} shadow {p[1]}"),
        names.map(lambda n: f"round_robin {n}"),
        names.map(lambda n: f"least_latency {n}"),
        names.map(lambda n: f"lowest_cost {n}"),
        names.map(lambda n: f"hybrid(cost 0.5, latency 0.3, reliability 0.2) {n}"),
    )


def nested_strategies():
    def extend(inner):
        member = st.one_of(st.sampled_from(NAMES), inner.map(lambda s: f"({s})"))
        split = st.tuples(st.sampled_from(WEIGHTS), st.lists(member, min_size=3, max_size=3), st.booleans()).map(
            lambda x: ("split sticky by user " if x[2] else "split ")
            + "{ " + "  ".join(f"{w} {m}" for w, m in zip(x[0], x[1])) + " }")
        fallback = st.lists(member, min_size=1, max_size=3).map(lambda ms: "fallback " + ", ".join(ms))
        return st.one_of(split, fallback)

    return st.recursive(leaf_strategies(), extend, max_leaves=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(nested_strategies(), min_size=1, max_size=3), st.integers(0, 2**32),
       st.lists(st.sampled_from(["u1", "u2", "u3", 42, None]), min_size=1, max_size=5))
def test_generated_python_equals_interpreter_on_nested_strategies(bodies, seed, users):
    rules = "\n".join(f'rule r{i} priority {i} {{ when n == {i} {body} }}' for i, body in enumerate(bodies))
    result = compile_text(source(rules))
    assert result.ok, result.render()
    config, _ = lower(result.router)
    RoutingConfig.from_json(config)  # Mixtrain loads the approximation
    plan = plan_from_config(config)
    by_json, by_python = make_router(plan, backend="json"), make_router(plan, backend="python")
    for user in users:
        for n in range(len(bodies)):
            request = {"n": n, "user": user}
            random.seed(seed)
            a = by_json.route(request)
            random.seed(seed)
            b = by_python.route(request)
            assert a.matched_rule.name == b.matched_rule.name == f"r{n}"
            assert a.attempts == b.attempts and a.shadows == b.shadows, (rules, request)
            assert a.selected_targets == b.selected_targets
            assert a.selected_targets == [*a.attempts, *a.shadows]


def test_env_references_are_filled_in_nested_strategies_too():
    body = 'rule r priority 1 { fallback (split { 50% a: local  50% b: custom("v", "${VLLM:-http://v.local}") }), gpt4 }'
    router = routelang.load(source(body), env={"VLLM": "http://gpu-1:8000"})
    endpoints = {t.endpoint for _ in range(30) for t in router.route({}).attempts}
    assert "http://gpu-1:8000" in endpoints and not any("${" in e for e in endpoints)
