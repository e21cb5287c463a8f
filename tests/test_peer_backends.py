"""`routelang compile --target litellm|portkey`.

For generated routers whose every construct the peer can state (no RL911):
the Portkey config decides as routelang on generated requests (Portkey's
conditional router run by the reference evaluator, tests/portkey_reference.py),
and `routelang import` of either compiled config gives back a router that
selects the same targets the same way for every request. Constructs the peer
cannot state get an RL911 warning whose witness request really is routed
differently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portkey_reference import PortkeyConditionalRouter

from routelang import ir
from routelang.analysis.router import first_match
from routelang.backends import litellm as litellm_backend
from routelang.backends import portkey as portkey_backend
from routelang.cli import main
from routelang.compiler import compile_path, compile_text
from routelang.importers.litellm import import_litellm
from routelang.importers.portkey import import_portkey
from routelang.ir import condition_tree
from routelang.parser import quote

TARGETS = [f'target t{i} = {{ provider "openai" model "m{i}" endpoint "https://h{i}.example/v1" }}' for i in range(4)]
NAMES = st.sampled_from([f"t{i}" for i in range(4)])


def router_of(rules: list[str]) -> ir.Router:
    text = "router gen\n" + "\n".join(TARGETS) + "\n" + "\n".join(rules)
    result = compile_text(text, "gen.route")
    assert result.ok, text + "\n" + result.render()
    return result.router


def shape(member) -> tuple:
    """What a strategy selects, as structure: targets by model and endpoint, split weights, fallback order."""
    if isinstance(member, ir.Single):
        return shape(member.target)
    if isinstance(member, ir.NestedArm):
        return shape(member.strategy)
    if isinstance(member, ir.Split):
        return ("split", tuple(sorted((round(a.weight, 9), shape(a)) for a in member.arms)))
    if isinstance(member, ir.Fallback):
        return ("fallback", tuple(shape(c) for c in member.candidates))
    return ("target", member.model_name, member.endpoint)


def decide(router: ir.Router, request: dict) -> tuple | None:
    order = router.evaluation_order()
    rule = first_match(order, [condition_tree(r.when) if r.when is not None else None for r in order], request)
    return shape(rule.strategy) if rule is not None else None


# ---- generated routers -----------------------------------------------------------------

STRINGS = st.sampled_from(["free", "paid", "eu", "us", "5", "12", "", "gpt-4o"])
FIELDS = {"metadata.tier": STRINGS, "metadata.region": STRINGS, "model": STRINGS,
          "max_tokens": st.integers(-5, 20)}
PATTERNS = st.sampled_from(["^f", "ee$", "^[0-9]+$", "a|z", "^$", "x"])   # none matches "undefined"


@st.composite
def leaves(draw) -> str:
    field = draw(st.sampled_from(sorted(FIELDS)))
    values = FIELDS[field]
    op = draw(st.sampled_from(["==", "!=", "in", "not in", "=~", ">", ">=", "<", "<="]))
    if op in ("in", "not in"):
        return f"{field} {op} [{', '.join(json.dumps(v) for v in draw(st.lists(values, min_size=1, max_size=3)))}]"
    if op == "=~":
        return f"{field} =~ {quote(draw(PATTERNS))}"
    if op in (">", ">=", "<", "<="):
        return f"{field} {op} {draw(st.integers(-5, 20))}"
    return f"{field} {op} {json.dumps(draw(values))}"


def conditions(depth: int = 2):
    if depth == 0:
        return leaves()
    sub = conditions(depth - 1)
    return st.one_of(
        leaves(),
        st.lists(sub, min_size=2, max_size=3).map(lambda cs: "(" + " and ".join(cs) + ")"),
        st.lists(sub, min_size=2, max_size=3).map(lambda cs: "(" + " or ".join(cs) + ")"),
        # `not` over what Portkey can negate exactly (not a numeric comparison).
        leaves().filter(lambda c: not any(f" {op} " in c for op in (">", ">=", "<", "<="))).map(
            lambda c: f"not ({c})"),
    )


@st.composite
def strategies(draw) -> str:
    a, b, c = draw(NAMES), draw(NAMES), draw(NAMES)
    return draw(st.sampled_from([
        f"route {a}",
        f"split {{ 70% {a}  30% {b} }}",
        f"fallback {a}, {b}",
        f"fallback (split {{ 50% {a}  50% {b} }}), {c}",
        f"split {{ 60% (fallback {a}, {b})  40% {c} }}",
    ]))


@st.composite
def portkey_routers(draw) -> list[str]:
    n = draw(st.integers(1, 4))
    rules = [f"rule r{i} priority {100 - i} {{ when {draw(conditions())} {draw(strategies())} }}" for i in range(n)]
    if draw(st.booleans()):
        rules.append(f"rule rest priority 0 {{ {draw(strategies())} }}")
    return rules


REQUESTS = st.fixed_dictionaries({
    "metadata": st.dictionaries(st.sampled_from(["tier", "region"]), STRINGS, max_size=2),
    "model": STRINGS,
    "max_tokens": st.integers(-5, 20),
}).map(lambda r: {k: v for k, v in r.items() if not (k == "max_tokens" and v == 20)})  # sometimes missing


def portkey_context(request: dict) -> dict:
    params = {k: v for k, v in request.items() if k != "metadata"}
    return {"metadata": request.get("metadata", {}), "params": params, "url": {"pathname": "/v1/chat/completions"}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portkey_routers(), st.lists(REQUESTS, min_size=1, max_size=6))
def test_portkey_config_decides_as_routelang_and_imports_back(rules, requests):
    router = router_of(rules)
    config, notes = portkey_backend.lower(router)
    assert [n for n in notes if n.code.code == "RL911"] == []
    back = compile_text(import_portkey(config, "portkey.json")[0], "back.route")
    assert back.ok, back.render()
    order = router.evaluation_order()
    for request in requests:
        ours = first_match(order, [condition_tree(r.when) if r.when is not None else None for r in order], request)
        if config.get("strategy", {}).get("mode") == "conditional":
            try:
                theirs = PortkeyConditionalRouter(config, portkey_context(request)).resolve_target()["name"]
            except LookupError:
                theirs = None
            assert theirs == (ours.name if ours is not None else None), (rules, request, config)
        assert decide(back.router, request) == decide(router, request), (rules, request)


@st.composite
def litellm_routers(draw) -> list[str]:
    groups = draw(st.lists(st.sampled_from(["g1", "g2", "g3", "g4"]), min_size=1, max_size=3, unique=True))
    rules = []
    for i, group in enumerate(groups):
        names = [group] + draw(st.lists(st.sampled_from(["a1", "a2"]), max_size=1))
        when = f"model == {quote(group)}" if len(names) == 1 else f"model in [{', '.join(map(quote, names))}]"
        a, b, c = draw(NAMES), draw(NAMES), draw(NAMES)
        strategy = draw(st.sampled_from([f"route {a}", f"split {{ 70% {a}  30% {b} }}", f"fallback {a}, {b}, {c}",
                                         f"fallback (split {{ 25% {a}  75% {b} }}), {c}"]))
        rules.append(f"rule r{i} priority {100 - i} {{ when {when} {strategy} }}")
    return rules


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(litellm_routers(), st.lists(st.sampled_from(["g1", "g2", "g3", "g4", "a1", "a2", "other"]), min_size=1))
def test_litellm_config_imports_back_to_the_same_decisions(rules, models):
    router = router_of(rules)
    config, notes = litellm_backend.lower(router)
    assert [n for n in notes if n.code.code == "RL911"] == []
    text = yaml.safe_dump(config, sort_keys=False)
    back = compile_text(import_litellm(yaml.safe_load(text), "config.yaml")[0], "back.route")
    assert back.ok, back.render()
    for model in models:
        request = {"model": model}
        assert decide(back.router, request) == decide(router, request), (rules, model, text)


# ---- what the peers cannot state ----------------------------------------------------------

@pytest.mark.parametrize("rule, what", [
    ('when metadata.tag =~ "und" route t1', "tests a missing key as the text `undefined`"),
    ("when metadata.beta exists route t1", "Portkey has no `exists`"),
    ('when user.tier == "gold" route t1', "`user.tier` is none of them"),
    ("when not (max_tokens > 5) route t1", "a negated comparison"),
])
def test_portkey_warns_with_a_witness_portkey_really_routes_differently(rule, what):
    router = router_of([f"rule odd priority 10 {{ {rule} }}", "rule rest priority 0 { route t0 }"])
    config, notes = portkey_backend.lower(router)
    [warning] = [n for n in notes if n.code.code == "RL911"]
    assert what in warning.message
    witness = warning.witness
    assert witness is not None
    ours = "odd" if decide(router, witness) == ("target", "m1", "https://h1.example/v1") else "rest"
    theirs = PortkeyConditionalRouter(config, portkey_context(witness)).resolve_target()["name"]
    assert ours != theirs
    _, exact_notes = portkey_backend.lower(router, exact=True)
    assert [n.level.value for n in exact_notes if n.code.code == "RL911"] == ["error"]


def test_portkey_notes_settings_it_has_no_place_for():
    router = router_of(['rule a priority 1 { route t0 shadow t1 }'])
    config, notes = portkey_backend.lower(router)
    assert config == {"provider": "openai", "override_params": {"model": "m0"}, "custom_host": "https://h0.example/v1"}
    assert any("does not mirror requests" in n.message for n in notes)


def test_litellm_warns_where_a_rule_is_not_a_model_group():
    router = router_of(['rule tier priority 10 { when metadata.tier == "paid" route t1 }',
                        'rule sticky priority 5 { when model == "g" split sticky by user { 50% t0  50% t1 } }'])
    config, notes = litellm_backend.lower(router)
    warnings = {n.rule: n for n in notes if n.code.code == "RL911"}
    assert "picks a model group by the request's `model` only" in warnings["tier"].message
    assert warnings["tier"].witness == {"metadata": {"tier": "paid"}}
    assert "sticky by `user`" in warnings["sticky"].message
    assert [d["model_name"] for d in config["model_list"]] == ["tier", "g", "g"]


def test_cli_compiles_to_litellm_yaml_and_portkey_json(tmp_path):
    src = tmp_path / "r.route"
    src.write_text("router r\nimport std.providers\n"
                   'target a = openai("gpt-4o") { retries 2 timeout 30s '
                   'headers { "Authorization": "Bearer ${OPENAI_API_KEY}" } }\n'
                   'rule chat priority 10 { when model == "gpt" fallback a, anthropic("claude") }\n')
    runner = CliRunner()
    litellm = runner.invoke(main, ["compile", str(src), "--target", "litellm"])
    assert litellm.exit_code == 0, litellm.output
    config = yaml.safe_load(litellm.stdout)
    assert config["model_list"][0]["litellm_params"] == {
        "model": "openai/gpt-4o", "api_base": "https://api.openai.com/v1", "api_key": "os.environ/OPENAI_API_KEY",
        "timeout": 30.0}
    assert config["router_settings"]["fallbacks"] == [{"gpt": ["gpt-fallback-1"]}]
    portkey = runner.invoke(main, ["compile", str(src), "--target", "portkey"])
    assert portkey.exit_code == 0, portkey.output
    assert json.loads(portkey.stdout)["strategy"]["conditions"][0]["query"] == {"params.model": {"$eq": "gpt"}}
    src.write_text('router r\ntarget t = { provider "openai" model "m" endpoint "https://x.example" }\n'
                   "rule a priority 1 { when metadata.beta exists route t }\n")
    strict = runner.invoke(main, ["compile", str(src), "--target", "portkey", "--exact"])
    assert strict.exit_code == 1
    assert "error[RL911]" in strict.output


EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("example", ["hybrid_local_remote", "fallback_chain", "user_tiering"])
@pytest.mark.parametrize("backend", ["litellm", "portkey"])
def test_compiled_examples(example, backend, snapshot):
    """The compiled config and its notes, pinned: a change of either shows in review."""
    result = compile_path(EXAMPLES / f"{example}.route")
    assert result.ok, result.render()
    if backend == "litellm":
        config, notes = litellm_backend.lower(result.router)
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120)
    else:
        config, notes = portkey_backend.lower(result.router)
        text = json.dumps(config, indent=2, ensure_ascii=False)
    messages = [f"{n.code.code} {n.level.value}: {n.message}" for n in notes]
    assert {"config": text, "notes": messages} == snapshot


def test_cli_exact_is_for_config_targets(tmp_path):
    src = tmp_path / "r.route"
    src.write_text('router r\ntarget t = { provider "openai" model "m" endpoint "https://x.example" }\n'
                   "rule a priority 1 { route t }\n")
    result = CliRunner().invoke(main, ["compile", str(src), "--target", "python", "--exact"])
    assert result.exit_code == 2
    assert "--exact is for the config targets" in result.output
