"""Property tests: on random Mixtrain-schema configs and random requests with
odd values, generated Python == JSON interpretation == the mixtrain engine,
on the matched rule and on the selected targets (split too: both draw from
the global `random` generator, reseeded before each engine)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mixtrain.routing.conditions import ConditionEvaluator
from mixtrain.routing.engine import RoutingEngine as MixtrainEngine
from mixtrain.routing.exceptions import ConditionEvaluationError
from mixtrain.routing.models import RoutingCondition, RoutingConfig

from routelang.loader import make_router
from routelang.runtime import operators
from routelang.runtime.model import plan_from_config

FIELDS = ["user.tier", "user.credits", "request.type", "prompt", "a.b.c", "user"]
OPERATORS = ["equals", "not_equals", "contains", "not_contains", "in", "not_in", "exists", "not_exists",
             "greater_than", "less_than", "regex"]

scalars = st.one_of(
    st.sampled_from(["premium", "free", "1", "1.5", "", "nan", "inf", "True", "urgent", "[", "^p", "a.b", "é"]),
    st.integers(min_value=-3, max_value=3), st.sampled_from([0.5, 1.0, -0.0, 1e308, 10**400]),
    st.booleans(), st.none(),
    st.text(max_size=4),
)
condition_values = st.one_of(scalars.filter(lambda v: not (isinstance(v, int) and v > 10**300)),
                             st.lists(scalars.filter(lambda v: not (isinstance(v, int) and v > 10**300)),
                                      max_size=4))
request_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(st.sampled_from(["b", "c", "tier", "x"]), inner, max_size=3)),
    max_leaves=6)


def condition_leaves(operators):
    """Single conditions over `operators`, in the JSON form."""

    @st.composite
    def leaf(draw):
        op = draw(st.sampled_from(operators))
        out = {"field": draw(st.sampled_from(FIELDS)), "operator": op}
        if op not in ("exists", "not_exists"):
            out["value"] = draw(condition_values)
        return out

    return leaf()


def conditions():
    return condition_leaves(OPERATORS)  # Mixtrain's operators only


TARGETS = [{"provider": p, "model_name": m, "endpoint": f"https://{m}.example.com"}
           for p, m in [("modal", "gpt4"), ("fal", "flux"), ("custom", "llama"), ("modal", "gpt35")]]
SPLITS = [[1.0], [0.5, 0.5], [0.2, 0.8], [0.7, 0.2, 0.1], [0.0, 1.0]]


@st.composite
def rules(draw, index):
    strategy = draw(st.sampled_from(["single", "split", "shadow", "fallback"]))
    if strategy == "split":
        weights = draw(st.sampled_from(SPLITS))
    elif strategy == "shadow":
        weights = [1.0, 1.0]
    else:
        weights = [1.0] * draw(st.integers(1, 3))
    targets = [dict(TARGETS[(index + i) % len(TARGETS)], weight=w) for i, w in enumerate(weights)]
    return {
        "name": f"rule_{index}",
        "priority": draw(st.integers(0, 3)),
        "is_enabled": draw(st.booleans() | st.just(True)),
        "conditions": draw(st.lists(conditions(), max_size=3)),
        "strategy": strategy,
        "targets": targets,
    }


@st.composite
def configs(draw):
    count = draw(st.integers(1, 8))
    return {"name": "random", "rules": [draw(rules(i)) for i in range(count)]}


requests = st.dictionaries(st.sampled_from(["user", "request", "prompt", "a"]),
                           st.one_of(request_values, st.fixed_dictionaries(
                               {}, optional={"tier": request_values, "credits": request_values,
                                             "type": request_values, "b": request_values})), max_size=4)

TARGET_FIELDS = ("provider", "model_name", "endpoint", "weight", "label", "timeout_ms", "retry_count",
                 "headers", "is_shadow")


def _targets(targets) -> list[tuple]:
    return [tuple(getattr(t, f) for f in TARGET_FIELDS) for t in targets]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.lists(requests, min_size=1, max_size=6), st.integers(0, 2**32))
def test_python_equals_json_equals_mixtrain(config, reqs, seed):
    mixtrain = MixtrainEngine(RoutingConfig.from_json(config))
    plan = plan_from_config(config)
    by_json, by_python = make_router(plan, backend="json"), make_router(plan, backend="python")
    for request in reqs:
        random.seed(seed)
        expected = mixtrain.route_request(request)
        outcomes = []
        for router in (by_json, by_python):
            random.seed(seed)
            outcomes.append(router.route(request))
        want = None if expected.matched_rule is None else expected.matched_rule.name
        for got in outcomes:
            assert (None if got.matched_rule is None else got.matched_rule.name) == want, (config, request)
            assert _targets(got.selected_targets) == _targets(expected.selected_targets), (config, request)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(OPERATORS), request_values, condition_values)
def test_each_operator_equals_mixtrains_condition_evaluator(op, actual, expected):
    condition = RoutingCondition(field="x", operator=op, value=expected)
    try:
        want = ConditionEvaluator.evaluate_condition(condition, {"x": actual})
    except ConditionEvaluationError:  # Mixtrain raises: its rule fails to match
        want = False
    assert operators.apply(op, actual, condition.value) is want


@st.composite
def indexed_configs(draw):
    """Many rules testing one field with == / in (so the generated code indexes
    it), mixed with rules that do not, at clashing priorities."""
    keys = st.sampled_from(["premium", "free", 1, 1.0, True, 0, False, None, "1", ""])
    out = []
    for i in range(draw(st.integers(2, 12))):
        conds = draw(st.lists(conditions(), max_size=1))
        kind = draw(st.sampled_from(["equals", "in", "equals", "none"]))
        if kind == "equals":
            conds.insert(draw(st.integers(0, len(conds))), {"field": "user.tier", "operator": "equals",
                                                             "value": draw(keys)})
        elif kind == "in":
            conds.append({"field": "user.tier", "operator": "in", "value": draw(st.lists(keys, max_size=3))})
        out.append({"name": f"r{i}", "priority": draw(st.integers(0, 2)), "conditions": conds,
                    "targets": [dict(TARGETS[i % 4], weight=1.0)]})
    return {"name": "indexed", "rules": out}


tier_values = st.one_of(st.sampled_from(["premium", "free", 1, 1.0, True, 0, False, None, "1", "", 2]),
                        request_values)


@settings(max_examples=400, deadline=None)
@given(indexed_configs(), st.lists(tier_values, min_size=1, max_size=6), st.booleans())
def test_rule_index_keeps_first_match_order(config, tiers, as_missing):
    mixtrain = MixtrainEngine(RoutingConfig.from_json(config))
    by_python = make_router(plan_from_config(config), backend="python")
    for tier in tiers:
        request = {} if as_missing and tier is None else {"user": {"tier": tier, "credits": 5}}
        want = mixtrain.route_request(request).matched_rule
        got = by_python.route(request).matched_rule
        assert (got and got.name) == (want and want.name), (config, request)


ALL_OPERATORS = OPERATORS + ["greater_or_equal", "less_or_equal", "starts_with", "ends_with"]


def leaves():
    return condition_leaves(ALL_OPERATORS)  # with routelang's extensions


trees = st.recursive(leaves(), lambda inner: st.one_of(
    st.builds(lambda items: {"all": items}, st.lists(inner, max_size=3)),
    st.builds(lambda items: {"any": items}, st.lists(inner, max_size=3)),
    st.builds(lambda item: {"not": item}, inner)), max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(trees, st.integers(0, 3)), min_size=1, max_size=8), st.lists(requests, min_size=1,
                                                                                     max_size=6))
def test_generated_python_equals_interpreter_on_routelang_condition_trees(rule_trees, reqs):
    """Beyond Mixtrain: or / not / >= / starts_with, read from x-routelang.when."""
    config = {"name": "trees", "rules": [
        {"name": f"r{i}", "priority": priority, "conditions": [], "x-routelang": {"when": tree},
         "targets": [dict(TARGETS[i % 4], weight=1.0)]} for i, (tree, priority) in enumerate(rule_trees)]}
    plan = plan_from_config(config)
    by_json, by_python = make_router(plan, backend="json"), make_router(plan, backend="python")
    for request in reqs:
        for rule in plan.order:  # the interpreter's answer is operators.evaluate's, rule by rule
            if operators.evaluate(rule.when, request):
                want = rule.name
                break
        else:
            want = None
        assert by_json.decide(request) == by_python.decide(request), (config, request)
        got = by_python.route(request).matched_rule
        assert (got and got.name) == want
