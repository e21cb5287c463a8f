"""The JSON backend against the real Mixtrain engine.

For every example: a snapshot of the compiled JSON (and the compiler's notes),
the config loads in Mixtrain's RoutingConfig and passes its RoutingValidator,
and Mixtrain's RoutingEngine picks, for a few hundred requests, the rule that
routelang's semantics pick. routelang's choice is computed here independently
of any engine: `operators.evaluate` over each rule's exact condition tree, in
`Router.evaluation_order()`. Rules that Mixtrain cannot express at all are
disabled in Mixtrain's view (with an RL902 warning); for those the test checks
that Mixtrain does exactly what the warning says: behaves as if the rule were
not there. Approximated conditions (RL902 on an enabled rule) are tested on
their own below."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mixtrain.routing import RoutingConfig, RoutingValidator
from mixtrain.routing.engine import RoutingEngine
from mixtrain.routing.strategies import TargetSelector

from routelang import envvars, ir
from routelang.backends.json import EXT, MAX_EXPANDED_RULES, lower
from routelang.compiler import compile_path, compile_text
from routelang.loader import load as load_runtime
from routelang.runtime import operators

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.route"))
RUNTIME_ENDPOINT_NOTE = "filled in at run time"


def compiled(path: Path, env: dict | None = None) -> tuple[ir.Router, dict, list]:
    result = compile_path(path, env=env)
    assert result.ok, result.render()
    config, notes = lower(result.router)
    return result.router, config, notes


def env_for(path: Path) -> dict[str, str]:
    """A value for every ${VAR} without a default in the file (defaults apply to the rest)."""
    names = {m.group(1) for m in envvars.ENV_REF.finditer(path.read_text()) if m.group(2) is None}
    return {name: f"https://{name.lower().replace('_', '-')}.example.com" for name in sorted(names)}


def render(config: dict, notes: list) -> str:
    lines = [json.dumps(config, indent=2, ensure_ascii=False), "", "notes:"]
    lines += [f"  {n.code.code} line {n.span.line}: {n.message}" for n in notes]
    return "\n".join(lines) + "\n"


# ---- snapshots and loading ----------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compiled_json_snapshot(path, snapshot):
    _, config, notes = compiled(path)
    assert render(config, notes) == snapshot


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compiled_json_is_deterministic(path):
    first = json.dumps(compiled(path)[1])
    assert json.dumps(compiled(path)[1]) == first


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_mixtrain_loads_and_validates_every_example(path):
    _, config, notes = compiled(path)
    errors = RoutingValidator.validate_config(RoutingConfig.from_json(config))
    env_notes = [n for n in notes if RUNTIME_ENDPOINT_NOTE in n.message]
    # Only unresolved ${VAR} endpoints may fail, and a note must have said so.
    assert bool(errors) == bool(env_notes)
    assert all("Endpoint must be a valid HTTP/HTTPS URL" in e for e in errors), errors
    if env_notes:
        _, resolved, _ = compiled(path, env=env_for(path))
        assert RoutingValidator.validate_config(RoutingConfig.from_json(resolved)) == []


# ---- routing: Mixtrain's engine vs routelang's semantics ------------------------------

def rule_trees(router: ir.Router, config: dict) -> dict[str, dict | None]:
    """Each routelang rule's exact condition tree, read from the compiled JSON."""
    out = {}
    for data in config["rules"]:
        ext = data.get(EXT, {})
        if "part_of" in ext:
            continue
        out[data["name"]] = ext["when"] if "when" in ext else {"all": [
            {k: c[k] for k in ("field", "operator", "value") if k in c} for c in data["conditions"]]}
    assert set(out) == {r.name for r in router.rules}
    return out


def mixtrain_blind_rules(config: dict) -> set[str]:
    """Rules routelang runs but Mixtrain sees as disabled (inexpressible conditions)."""
    return {d["name"] for d in config["rules"] if not d["is_enabled"] and d.get(EXT, {}).get("enabled")}


def routelang_choice(router: ir.Router, trees: dict, request: dict, skip: set[str] = frozenset()) -> str | None:
    for rule in router.evaluation_order():
        if rule.name not in skip and operators.evaluate(trees[rule.name], request):
            return rule.name
    return None


def mixtrain_choice(engine: RoutingEngine, config: dict, request: dict) -> str | None:
    owner = {d["name"]: d.get(EXT, {}).get("part_of", d["name"]) for d in config["rules"]}
    result = engine.route_request(request)
    assert "error" not in (result.metadata or {}), result.explanation
    return None if result.matched_rule is None else owner[result.matched_rule.name]


def candidate_values(cmp: ir.Compare) -> list:
    """Values of `cmp.field` that make `cmp` true and values that make it false."""
    v, op = cmp.value, cmp.operator
    if op in ("in", "not_in"):
        return [*v, "zz-not-listed"]
    if op in ("greater_than", "less_than", "greater_or_equal", "less_or_equal"):
        n = operators.to_float(v)
        return [n - 1, n, n + 1, int(n), str(n + 1), "not a number"]
    if op in ("contains", "not_contains", "starts_with", "ends_with") and isinstance(v, str):
        return [v, f"head {v}", f"{v} tail", f"head {v} tail", "zz-other"]
    if op == "regex":
        return ["zz-other", str(v).strip("^$")]
    if op in ("exists", "not_exists"):
        return ["present", 0, False]
    return [v, "zz-other", 0, True]


def sample_requests(router: ir.Router, count: int, seed: int) -> list[dict]:
    """The file's own test requests plus `count` random ones built from the
    values its conditions mention (each field set or missing at random)."""
    fields: dict[str, list] = {}
    for rule in router.rules:
        for cmp in ir.walk_conditions(rule.when):
            fields.setdefault(cmp.field, []).extend(candidate_values(cmp))
        for strategy in rule.strategy.walk():
            if isinstance(strategy, ir.Split) and strategy.sticky_by:
                fields.setdefault(strategy.sticky_by, []).extend(["u-1", "u-2", 42])
    rng = random.Random(seed)
    requests = [t.request for t in router.tests]
    for _ in range(count):
        request: dict = {}
        for field, values in sorted(fields.items()):
            if rng.random() < 0.35:
                continue
            *parents, leaf = field.split(".")
            node = request
            for key in parents:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    break
            else:
                node[leaf] = rng.choice(values)
        requests.append(request)
    return requests


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_mixtrain_routes_each_example_as_routelang_says(path):
    router, config, notes = compiled(path, env=env_for(path))
    trees = rule_trees(router, config)
    blind = mixtrain_blind_rules(config)
    approximated = {n.rule for n in notes if n.code.code == "RL902"} - blind
    assert not approximated, "an example with an approximated condition needs its own routing expectations"
    engine = RoutingEngine(RoutingConfig.from_json(config))
    runtime = load_runtime(config)
    matched = set()
    for request in sample_requests(router, count=300, seed=2026):
        expected = routelang_choice(router, trees, request)
        got = mixtrain_choice(engine, config, request)
        # Mixtrain routes as routelang would without the rules it cannot see ...
        assert got == routelang_choice(router, trees, request, skip=blind), request
        # ... which is routelang's answer whenever the answer is a rule it can see.
        if expected not in blind:
            assert got == expected, request
        # routelang's own runtime reads the extension fields and agrees with the semantics.
        spec = runtime.matched_rule(request)
        assert (spec.name if spec else None) == expected, request
        matched.add(expected)
    # The sample requests exercise most rules (so the comparison means something).
    assert len(matched - {None}) >= max(1, len(router.rules) // 2), matched


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_mixtrain_selects_the_written_target_for_route_rules(path):
    router, config, _ = compiled(path, env=env_for(path))
    engine = RoutingEngine(RoutingConfig.from_json(config))
    rules = {d["name"]: d for d in config["rules"]}
    for rule in router.rules:
        if rule.strategy.kind not in ("single", "shadow", "fallback") or not rules[rule.name]["is_enabled"]:
            continue
        targets = mixtrain_targets(engine, rule.name)
        primary = rule.strategy.targets[0]
        assert (targets[0].provider, targets[0].model_name) == (primary.provider, primary.model_name)


def mixtrain_targets(engine: RoutingEngine, name: str):
    """What Mixtrain's strategy selects for the rule `name` (whatever the request)."""
    rule = next(r for r in engine.config.rules if r.name == name)
    return TargetSelector.select_targets(rule.strategy, rule.targets, {})


# ---- extension fields and notes ---------------------------------------------------------

T = '{ provider "custom" model "%s" endpoint "https://%s.example.com" }'


def lower_text(body: str) -> tuple[dict, list[str]]:
    text = "router r\n" + body.replace("T1", T % ("m1", "m1")).replace("T2", T % ("m2", "m2")).replace(
        "T3", T % ("m3", "m3"))
    result = compile_text(text)
    assert result.ok, result.render()
    config, notes = lower(result.router)
    RoutingConfig.from_json(config)  # always loads
    return config, [n.message for n in notes]


def route_in_mixtrain(config: dict, request: dict) -> str | None:
    result = RoutingEngine(RoutingConfig.from_json(config)).route_request(request)
    return None if result.matched_rule is None else result.matched_rule.name


def test_or_expands_into_rules_mixtrain_can_run():
    config, notes = lower_text('rule a priority 5 { when x == 1 or (y == 2 and z exists) route T1 }\n'
                               'rule b priority 1 { route T2 }')
    names = [r["name"] for r in config["rules"]]
    assert names == ["a", "a (or 2)", "b"]
    second = config["rules"][1]
    assert second[EXT] == {"part_of": "a"}
    assert [c["operator"] for c in second["conditions"]] == ["equals", "exists"]
    assert config["rules"][0][EXT]["when"] == {"any": [
        {"field": "x", "operator": "equals", "value": 1},
        {"all": [{"field": "y", "operator": "equals", "value": 2}, {"field": "z", "operator": "exists"}]}]}
    assert any("Mixtrain has no `or`; it gets 2 rules (`a`, `a (or 2)`)" in n for n in notes)
    assert route_in_mixtrain(config, {"x": 1}) == "a"
    assert route_in_mixtrain(config, {"y": 2, "z": "here"}) == "a (or 2)"
    assert route_in_mixtrain(config, {"y": 2}) == "b"
    assert load_runtime(config).matched_rule({"y": 2, "z": "here"}).name == "a"


def test_or_expansion_names_never_collide():
    config, _ = lower_text('rule a { when x == 1 or x == 2 route T1 }\nrule "a (or 2)" { route T2 }')
    assert [r["name"] for r in config["rules"]] == ["a", "a (or 2)'", "a (or 2)"]
    assert RoutingValidator.validate_config(RoutingConfig.from_json(config)) == []


def test_not_becomes_the_negated_operator_when_exact():
    config, notes = lower_text('rule a { when not (x == 1) and not (y in [1, 2]) and not z exists route T1 }')
    rule = config["rules"][0]
    assert [(c["operator"], c.get("value")) for c in rule["conditions"]] == [
        ("not_equals", 1), ("not_in", [1, 2]), ("not_exists", None)]
    assert rule["is_enabled"] is True and "when" in rule[EXT]
    assert notes == []


@pytest.mark.parametrize("when, request_", [
    ("x >= 3", {"x": 3}), ("x <= 3", {"x": 3}), ("x >= 2.5 and x <= 2.5", {"x": "2.5"}),
    ("not (x contains 5)", {}), ("x >= -1e999", {"x": "-inf"}), ("x <= 1e999", {"x": 1e999}),
])
def test_conditions_with_an_exact_mixtrain_form_are_lowered_exactly(when, request_):
    """Defect A5: these used to become a disabled rule without conditions."""
    config, notes = lower_text(f"rule a priority 9 {{ when {when} route T1 }}\nrule b {{ route T2 }}")
    rule = config["rules"][0]
    assert rule["is_enabled"] is True and "enabled" not in rule[EXT]
    assert not [n for n in notes if "cannot" in n]  # at most the note that `or` became two rules
    assert RoutingValidator.validate_config(RoutingConfig.from_json(config)) == []
    assert route_in_mixtrain(config, request_).split(" (or ")[0] == "a" == load_runtime(config).matched_rule(request_).name


@pytest.mark.parametrize("when, witness", [
    ("not (x > 3)", {"x": "abc"}),
    ('not (x =~ "a")', None),
    ('not (x contains "a")', None),
])
def test_approximations_warn_with_a_witness_mixtrain_routes_differently(when, witness):
    result = compile_text("router r\n" + f"rule a priority 9 {{ when {when} route T1 }}\nrule b {{ route T2 }}"
                          .replace("T1", T % ("m1", "m1")).replace("T2", T % ("m2", "m2")))
    config, notes = lower(result.router)
    [warning] = [n for n in notes if n.code.code == "RL902"]
    assert warning.level.value == "warning" and "cannot state" in warning.message
    assert config["rules"][0]["is_enabled"] is True  # a subset of the rule's requests, not none of them
    if witness is not None:
        assert warning.witness == witness
        assert route_in_mixtrain(config, witness) == "b"
        assert load_runtime(config).matched_rule(witness).name == "a"
    else:  # str() of the field fails: no JSON witness, the message describes it
        assert "an integer of more than 4,300 digits" in warning.message
        request = {"x": 10 ** 4301}
        assert route_in_mixtrain(config, request) == "b"
        assert load_runtime(config).matched_rule(request).name == "a"
    _, exact_notes = lower(result.router, exact=True)
    assert [n.level.value for n in exact_notes if n.code.code == "RL902"] == ["error"]


@pytest.mark.parametrize("when, what", [
    ("x == { k: 1 }", "Mixtrain cannot compare with an object"),
    (" and ".join(f"(a{i} == 1 or b{i} == 1)" for i in range(6)), f"more than {MAX_EXPANDED_RULES} `or` branches"),
])
def test_inexpressible_conditions_disable_the_rule_for_mixtrain_only(when, what):
    result = compile_text("router r\n" + f"rule a priority 9 {{ when {when} route T1 }}\nrule b {{ route T2 }}"
                          .replace("T1", T % ("m1", "m1")).replace("T2", T % ("m2", "m2")))
    config, notes = lower(result.router)
    rule = config["rules"][0]
    assert rule["is_enabled"] is False and rule[EXT]["enabled"] is True and rule["conditions"] == []
    [warning] = notes
    assert warning.code.code == "RL902" and what in warning.message
    assert warning.witness is not None and route_in_mixtrain(config, warning.witness) == "b"
    assert load_runtime(config).matched_rule(warning.witness).name == "a"
    assert RoutingValidator.validate_config(RoutingConfig.from_json(config)) == []
    assert route_in_mixtrain(config, {}) == "b"
    assert load_runtime(config).rules[0].enabled is True


def test_compile_mixtrain_exact_fails_on_what_stays_inexact(tmp_path):
    source = tmp_path / "r.route"
    source.write_text("router r\n" + ('rule a priority 9 { when not (x > 3) route T1 }\nrule b { route T2 }'
                      .replace("T1", T % ("m1", "m1")).replace("T2", T % ("m2", "m2"))))
    loose = subprocess.run([sys.executable, "-m", "routelang", "compile", str(source)], capture_output=True, text=True,
                           check=False)
    assert loose.returncode == 0 and "warning[RL902]" in loose.stderr
    strict = subprocess.run([sys.executable, "-m", "routelang", "compile", "--mixtrain-exact", str(source)],
                            capture_output=True, text=True, check=False)
    assert strict.returncode == 1 and "error[RL902]" in strict.stderr and strict.stdout == ""


def test_a_disabled_inexpressible_rule_stays_disabled_everywhere():
    config, notes = lower_text("rule a disabled { when x >= 3 route T1 }\nrule b { route T2 }")
    assert config["rules"][0]["is_enabled"] is False and "enabled" not in config["rules"][0][EXT]
    assert notes == []
    assert load_runtime(config).matched_rule({"x": 5}).name == "b"


def test_starts_with_and_ends_with_become_exact_regexes():
    config, notes = lower_text('rule a { when p starts_with "a.b(" and p ends_with "$x" route T1 }\n'
                               'rule b { route T2 }')
    assert [c["value"] for c in config["rules"][0]["conditions"]] == [r"^a\.b\(", r"\$x\Z"]
    assert notes == []
    for text, expected in [("a.b($x", "a"), ("a.b(..$x", "a"), ("aXb($x", "b"), ("a.b($x\n", "b"),
                           ("\na.b($x", "b"), ("a.b(", "b")]:
        assert route_in_mixtrain(config, {"p": text}) == expected, text


def test_sticky_split_keeps_the_hash_settings_in_the_extension():
    config, notes = lower_text("rule a { split sticky by user.id { 70% T1  30% T2 } }\n"
                               'rule b { split sticky by user.id salt "s1" { 50% T1  50% T2 } }')
    assert config["rules"][0]["strategy"] == "split"
    assert config["rules"][0][EXT]["strategy"] == {"kind": "split", "sticky_by": "user.id", "salt": "a"}
    assert config["rules"][1][EXT]["strategy"]["salt"] == "s1"
    assert [t["weight"] for t in config["rules"][0]["targets"]] == [0.7, 0.3]
    assert "rule `a`: Mixtrain splits at random; routelang buckets by `user.id`" in notes[0]


def test_round_robin_is_an_equal_split_for_mixtrain():
    config, notes = lower_text("rule a { round_robin T1, T2, T3 }")
    rule = config["rules"][0]
    assert rule["strategy"] == "split" and rule[EXT]["strategy"] == {"kind": "round_robin"}
    assert [t["weight"] for t in rule["targets"]] == [1 / 3] * 3
    assert RoutingValidator.validate_config(RoutingConfig.from_json(config)) == []
    assert notes == ["rule `a`: Mixtrain has no round_robin; it gets an equal random split"]


@pytest.mark.parametrize("strategy, ext", [
    ("least_latency T1, T2", {"kind": "least_latency"}),
    ("lowest_cost T1, T2", {"kind": "lowest_cost"}),
    ("hybrid(cost 0.5, latency 0.5) T1, T2",
     {"kind": "hybrid", "cost_weight": 0.5, "latency_weight": 0.5, "reliability_weight": 0.0}),
])
def test_metric_strategies_are_fallback_chains_for_mixtrain(strategy, ext):
    config, notes = lower_text(f"rule a {{ {strategy} }}")
    rule = config["rules"][0]
    assert rule["strategy"] == "fallback" and rule[EXT]["strategy"] == ext
    assert [t["model_name"] for t in rule["targets"]] == ["m1", "m2"]
    assert notes == [(f"rule `a`: Mixtrain has no {ext['kind']}; it returns the targets in written order "
                     f"as a fallback chain")]
    result = RoutingEngine(RoutingConfig.from_json(config)).route_request({})
    assert [t.model_name for t in result.selected_targets] == ["m1", "m2"]


def test_target_extension_fields():
    config, _ = lower_text(
        'target t = { provider "custom" model "m" endpoint "https://m.example.com" cost 0.03 per 1k\n'
        '  circuit_breaker { failures 3 cooldown 30s successes 2 } health_check { path "/h" interval 10s } }\n'
        "rule a { route t }")
    target = config["rules"][0]["targets"][0]
    assert target[EXT] == {
        "name": "t", "cost_per_1k_tokens": 0.03,
        "circuit_breaker": {"failure_threshold": 3, "cooldown_ms": 30000, "success_threshold": 2},
        "health_check": {"path": "/h", "interval_ms": 10000},
    }
    loaded = RoutingConfig.from_json(config).to_json()["rules"][0]["targets"][0]
    assert EXT not in loaded and loaded["model_name"] == "m"  # Mixtrain ignores the extension


def test_config_level_extension_and_field_order():
    config, _ = lower_text('rule a "desc" { when x == 1 route T1 }')
    assert list(config) == ["name", "rules", EXT]
    assert config[EXT]["format"] == 1 and re.fullmatch(r"routelang \S+", config[EXT]["compiler"])
    assert list(config["rules"][0]) == ["name", "description", "priority", "is_enabled", "conditions",
                                        "strategy", "targets"]


def test_unresolved_env_endpoint_is_noted_and_resolves_with_env():
    text = 'router r\nrule a { route { provider "p" model "m" endpoint "${HOST:-http://localhost:1}/v1" } }'
    result = compile_text(text)
    config, notes = lower(result.router)
    assert config["rules"][0]["targets"][0]["endpoint"] == "${HOST:-http://localhost:1}/v1"
    assert any(RUNTIME_ENDPOINT_NOTE in n.message for n in notes)
    resolved, _ = lower(compile_text(text, env={}).router)
    assert resolved["rules"][0]["targets"][0]["endpoint"] == "http://localhost:1/v1"


def test_a_witness_json_cannot_print_is_described_not_crashed_on(tmp_path):
    """The witness of `not (prompt contains "x")` holds an integer str() refuses;
    the CLI printed it with json.dumps and crashed."""
    source = tmp_path / "r.route"
    source.write_text("router r\n" + ('rule n priority 2 { when not (tokens > 10) route T1 }\n'
                                      'rule c priority 1 { when not (prompt contains "x") route T1 }\n'
                                      'rule b { route T2 }').replace("T1", T % ("m1", "m1")).replace(
                                          "T2", T % ("m2", "m2")))
    proc = subprocess.run([sys.executable, "-m", "routelang", "compile", str(source)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if "rule `c`: Mixtrain's" in x]
    assert "goes to rule `b` in Mixtrain" in line and "holding an integer of more than 4,300 digits" in line
    described = json.loads(line.split("in Mixtrain: ")[1].split(" with ")[0])
    request = {**described, "prompt": 10 ** 4301}
    config = json.loads(proc.stdout)
    assert route_in_mixtrain(config, request) == "b"
    assert load_runtime(config).matched_rule(request).name == "c"


def test_runtime_endpoints_get_one_note_listing_the_targets(snapshot):
    """Two `${VAR}` targets used by three rules: one note, not one per target and rule."""
    text = ('router r\n'
            'target local = { provider "p" model "m" endpoint "${LOCAL:-http://localhost:1}" }\n'
            'target remote = { provider "p" model "r" endpoint "${REMOTE}" }\n'
            'rule a priority 2 { when x == 1 fallback local, remote }\n'
            'rule b priority 1 { when x == 2 route remote shadow local }\n'
            'rule c { route local }\n')
    result = compile_text(text)
    _, notes = lower(result.router)
    [note] = [n for n in notes if RUNTIME_ENDPOINT_NOTE in n.message]
    assert "`local`" in note.message and "`remote`" in note.message
    assert (note.span.line, note.span.column) == (2, 50)
    assert [(r.span.line, r.span.column) for r in note.related] == [(3, 51)]
    assert result.render([note]) == snapshot
