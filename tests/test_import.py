"""`routelang import`: Mixtrain JSON -> .route.

The property: for any config Mixtrain's RoutingConfig loads and its
RoutingValidator passes, compiling the imported .route file gives the same
canonical dump (`RoutingConfig.from_json(x).to_json()`) as the original,
value types included (1 vs 1.0 vs "1" vs true), so the comparison is on
`json.dumps(..., sort_keys=True)`, not `==` (where 1 == 1.0 == True)."""

import copy
import itertools
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mixtrain.routing import RoutingConfig, RoutingValidator
from mixtrain.routing.engine import RoutingEngine as MixtrainEngine

from routelang.backends.json import lower
from routelang.cli import main
from routelang.compiler import compile_path, compile_text
from routelang.envvars import has_refs
from routelang.importers.mixtrain import (
    PRESET_ENDPOINTS,
    ImportProblem,
    import_config,
    import_config_with_notes,
    validation_errors,
)
from routelang.lint import lint
from routelang.loader import make_router
from routelang.printer import field_text, percent_text, regex_text
from routelang.runtime.model import plan_from_config


def canonical(config: dict) -> str:
    return json.dumps(RoutingConfig.from_json(config).to_json(), sort_keys=True, ensure_ascii=False)


def round_trip(config: dict) -> tuple[str, dict]:
    text = import_config(config, "input.json")
    result = compile_text(text, "imported.route")
    assert result.ok, text + "\n" + result.render()
    compiled, _notes = lower(result.router)
    return text, compiled


# ---- generated configs ------------------------------------------------------------

ODD_TEXT = st.sampled_from([
    "plain", "with space", 'quo"te', "back\\slash", "tab\there", "new\nline", "ünïcödé ✓", "日本語",
    "route", "not", "true", "null", "priority", "rule", "is_shadow", "target", "split", "disabled", "1abc", "a-b", "${HOME}", "{}", "#hash", "r\"x\"",
])
TEXT = st.one_of(ODD_TEXT, st.text(min_size=0, max_size=12))
NAME = st.one_of(ODD_TEXT, st.text(min_size=1, max_size=12)).filter(lambda s: s.strip())
SEGMENT = st.one_of(
    st.sampled_from(["user", "tier", "request", "type", "model", "not", "in", "x-id", "first name", "ü", '"q"',
                     "route", "true", "target", "is_shadow", "and", "or", "note", "exists"]),
    st.text(alphabet=st.characters(blacklist_characters=".", blacklist_categories=("Cs",)), min_size=1, max_size=8),
)
# Empty first or last segments ("a.", ".a", ".") Mixtrain's validator passes; blank fields and ".." it rejects.
FIELD = st.one_of(
    st.lists(SEGMENT, min_size=1, max_size=3).map(".".join).filter(lambda f: f.strip()),
    st.sampled_from(["a.", ".a", ".", "user.tier.", ". x"]),
)
LOOSE_FIELD = st.one_of(FIELD, st.sampled_from(["", " ", "\t", "a..b", ".."]),
                        st.lists(st.one_of(SEGMENT, st.just("")), min_size=1, max_size=3).map(".".join))
FLOAT = st.floats(allow_nan=False, allow_infinity=False)
SCALAR = st.one_of(
    st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30), FLOAT, TEXT,
    st.sampled_from(["5", "1.5", "-3", "true", "null", "1e3", " 7 "]),
)
JSON = st.recursive(
    st.one_of(st.none(), SCALAR),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
LIST = st.lists(JSON, max_size=4)
# Strings float() accepts count as numbers for Mixtrain (and for routelang).
NUMERIC = st.one_of(st.integers(), FLOAT, st.booleans(), st.sampled_from(["10", "2.5", " 3 ", "-1e2", "inf", "1_000"]))
REGEX = st.one_of(
    st.sampled_from([r"^prod_", r"^flux-\d+", r"\bfoo\b", r'say "hi"\s', r"a|b", r"[\w.-]+@example\.com$", "x",
                     r"\\", 5, 1.5, True]),
    TEXT.filter(lambda s: _compiles(s)),
)


def _compiles(pattern) -> bool:
    try:
        re.compile(str(pattern))
    except re.error:
        return False
    return True


# `loose=True` draws configs that RoutingConfig loads but RoutingValidator may
# reject (non-list values for `in`, null values, negative priorities, ...) and
# the Limits of docs/import.md; `loose=False` draws only configs the validator passes.

@st.composite
def conditions(draw, loose: bool = False):
    op = draw(st.sampled_from(["equals", "not_equals", "contains", "not_contains", "in", "not_in",
                               "exists", "not_exists", "greater_than", "less_than", "regex"]))
    cond = {"field": draw(LOOSE_FIELD if loose else FIELD), "operator": op}
    if op in ("equals", "not_equals", "contains", "not_contains"):
        cond["value"] = draw(st.one_of(SCALAR, LIST))
    elif op in ("in", "not_in"):
        cond["value"] = draw(st.one_of(LIST, SCALAR, st.none()) if loose else LIST)
    elif op in ("greater_than", "less_than"):
        cond["value"] = draw(NUMERIC)
    elif op == "regex":
        cond["value"] = draw(REGEX)
    elif draw(st.booleans()):
        cond["value"] = draw(st.one_of(st.none(), SCALAR) if loose else st.none())
    if loose and op not in ("exists", "not_exists") and draw(st.integers(0, 9)) == 0:
        cond["value"] = None  # the validator: "requires a value"
    if draw(st.booleans()):
        cond["description"] = draw(st.one_of(TEXT, st.none()))  # null is the model's default here
    return cond


# Spellings Mixtrain's models coerce: the canonical dump is what counts.
COERCED_WEIGHT_ONE = st.sampled_from([1.0, 1, "1", "1.0", True])
BOOL_SPELLINGS = st.one_of(st.booleans(), st.sampled_from([0, 1, "true", "false", "yes", "no", "on", "off"]))


# `${VAR}` in a target string is an environment reference in routelang, a literal
# in Mixtrain (a Limit in docs/import.md): only loose configs have them.
def _literal(strategy):
    return strategy.filter(lambda text: not has_refs(text))


@st.composite
def targets(draw, loose: bool = False):
    text, name = (TEXT, NAME) if loose else (_literal(TEXT), _literal(NAME))
    t = {
        "provider": draw(st.sampled_from(["modal", "fal", "custom", "openai", "anthropic", "azure", "vllm", "my provider"])),
        "model_name": draw(name),
        "endpoint": draw(st.sampled_from(["https://", "http://"] + (["ftp://", ""] if loose else []))) + draw(text),
    }
    optional = {
        "weight": st.one_of(COERCED_WEIGHT_ONE, st.floats(min_value=0.0, max_value=1.0)),
        "label": st.one_of(text, st.none()),
        "timeout_ms": st.one_of(st.integers(min_value=100, max_value=2**53), st.sampled_from(["500", 1000.0])),
        "retry_count": st.one_of(st.integers(min_value=0, max_value=5), st.sampled_from(["3", 2.0])),
        "headers": st.one_of(st.dictionaries(TEXT, text, max_size=3), st.none()),
        "function_name": st.one_of(text, st.none()),
        "request_class": st.one_of(text, st.none()),
        "is_shadow": BOOL_SPELLINGS,
        "x-unknown-key": JSON,  # Mixtrain ignores unknown keys
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            t[key] = draw(strategy)
    return t


@st.composite
def split_weights(draw, n: int) -> list[float]:
    if n == 1:
        return [1.0]
    if draw(st.booleans()):  # whole percents
        cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=n - 1, max_size=n - 1, unique=True)))
        bounds = [0, *cuts, 100]
        return [(b - a) / 100 for a, b in itertools.pairwise(bounds)]
    parts = draw(st.lists(st.integers(1, 50), min_size=n, max_size=n))
    return [p / sum(parts) for p in parts]  # e.g. 1/3, not a whole percent


@st.composite
def rules(draw, name: str, pool: list[dict], loose: bool = False):
    strategy = draw(st.sampled_from(["single", "split", "shadow", "fallback"]))
    count = {"shadow": 2}.get(strategy) or draw(st.integers(1, 4 if strategy != "single" or loose else 1))
    chosen = [dict(draw(st.sampled_from(pool))) if pool and draw(st.booleans()) else draw(targets(loose))
              for _ in range(count)]
    if strategy == "split":
        labels = []
        for t, w in zip(chosen, draw(split_weights(count))):
            t["weight"] = w
            if labels and draw(st.booleans()):
                t["label"] = draw(st.sampled_from(labels))  # Mixtrain accepts repeated labels
            elif t.get("label"):
                labels.append(t["label"])
    rule = {"name": name, "targets": chosen}
    if strategy != "single" or draw(st.booleans()):  # single is Mixtrain's default
        rule["strategy"] = strategy
    if draw(st.booleans()):
        rule["priority"] = draw(st.one_of(st.integers(min_value=-5 if loose else 0, max_value=10**12),
                                          st.sampled_from(["7", 3.0])))
    if draw(st.booleans()):
        rule["description"] = draw(st.one_of(TEXT, st.none()) if loose else TEXT)
    if draw(st.booleans()):
        rule["is_enabled"] = draw(BOOL_SPELLINGS)
    if draw(st.booleans()):
        rule["conditions"] = draw(st.lists(conditions(loose), max_size=4))
    return rule


@st.composite
def configs(draw, loose: bool = False):
    names = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    pool = draw(st.lists(targets(loose), max_size=3))
    config = {"name": draw(NAME), "rules": [draw(rules(n, pool, loose)) for n in names]}
    if draw(st.booleans()):
        config["description"] = draw(st.one_of(TEXT, st.none()) if loose else TEXT)
    if draw(st.booleans()):
        config["metadata"] = draw(st.one_of(st.dictionaries(TEXT, JSON, max_size=4), st.none()) if loose
                                  else st.dictionaries(TEXT, JSON, max_size=4))
    return config


# ---- routing: Mixtrain's engine and routelang's runtime decide alike ---------------

def _set(request: dict, segments: list[str], value) -> None:
    node = request
    for seg in segments[:-1]:
        if not isinstance(node.get(seg), dict):
            node[seg] = {}
        node = node[seg]
    node[segments[-1]] = value


@st.composite
def requests_for(draw, config: dict) -> dict:
    """A request that sets some of the fields the config's conditions read, to
    values the conditions name (or list), or to any JSON."""
    fields, values = [], [None]
    for rule in config["rules"]:
        for c in rule.get("conditions", []):
            fields.append(c["field"])
            v = c.get("value")
            values.extend(v if isinstance(v, list) else [v])
    request: dict = {}
    for f in draw(st.lists(st.sampled_from(fields), max_size=6)) if fields else []:
        _set(request, f.split("."), draw(st.one_of(st.sampled_from(values), JSON)))
    return request


def _target_dump(t) -> str:
    data = t.model_dump() if hasattr(t, "model_dump") else {k: v for k, v in t.to_dict().items() if k != "name"}
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def decisions(router, request: dict, seed: int) -> tuple:
    """(rule name, selected targets) with the split's random draw fixed."""
    random.seed(seed)
    result = router.route_request(request) if isinstance(router, MixtrainEngine) else router.route(request)
    rule = result.matched_rule.name if result.matched_rule is not None else None
    return rule, tuple(_target_dump(t) for t in result.selected_targets)


def assert_routes_like_mixtrain(config: dict, compiled: dict, requests: list[dict]) -> None:
    engines = {
        "mixtrain(original)": MixtrainEngine(RoutingConfig.from_json(config)),
        "mixtrain(compiled)": MixtrainEngine(RoutingConfig.from_json(compiled)),
        "routelang(python)": make_router(plan_from_config(compiled), backend="python"),
        "routelang(json)": make_router(plan_from_config(compiled), backend="json"),
    }
    for seed, request in enumerate(requests):
        seen = {name: decisions(engine, request, seed) for name, engine in engines.items()}
        assert len(set(seen.values())) == 1, (request, seen)


ROUND_TRIP_EXAMPLES = 200


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.data())
def test_round_trip_preserves_mixtrains_canonical_dump_and_routing(config, data):
    assert RoutingValidator.validate_config(RoutingConfig.from_json(config)) == []
    _, notes = import_config_with_notes(config, "input.json")
    assert notes == []
    _, compiled = round_trip(config)
    assert canonical(compiled) == canonical(config)
    assert_routes_like_mixtrain(config, compiled, [{}] + data.draw(st.lists(requests_for(config), max_size=6)))


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(loose=True), st.data())
def test_every_config_mixtrain_loads_imports_and_never_routes_differently(config, data):
    """Beyond the promise: whatever RoutingConfig loads imports without an
    internal error; what the validator rejects does not compile, or comes
    with a note; and whenever the import compiles, it routes as Mixtrain does."""
    text, notes = import_config_with_notes(config, "input.json")
    result = compile_text(text, "imported.route")
    assert not any(d.code.code == "RL001" for d in result.diagnostics), text + result.render()
    if RoutingValidator.validate_config(RoutingConfig.from_json(config)):
        assert not result.ok or notes, text
    if result.ok:
        compiled, _ = lower(result.router)
        assert_routes_like_mixtrain(config, compiled, [{}] + data.draw(st.lists(requests_for(config), max_size=6)))


# ---- hand-written configs ---------------------------------------------------------

SEED = {  # the JSON example from the Mixtrain README (seed 000)
    "name": "My Routing Config",
    "description": "Production routing configuration",
    "rules": [{
        "name": "premium_users",
        "description": "Route premium users to premium models",
        "priority": 100,
        "conditions": [{"field": "user.tier", "operator": "equals", "value": "premium"}],
        "strategy": "single",
        "targets": [{"provider": "modal", "model_name": "premium-gpt4",
                     "endpoint": "https://premium-gpt4.modal.run", "weight": 1.0}],
    }],
}

AB_AND_FALLBACK = {
    "name": "production",
    "metadata": {"owner": "platform", "version": 3, "ratio": 0.5, "tags": ["a", "b"], "nested": {"on": True}},
    "rules": [
        {"name": "image ab test", "description": "Test flux-v2 on 20% of images", "priority": 90,
         "conditions": [{"field": "request.type", "operator": "equals", "value": "image",
                         "description": "image requests only"}],
         "strategy": "split",
         "targets": [
             {"provider": "modal", "model_name": "flux-v1", "endpoint": "https://flux-v1.modal.run",
              "weight": 0.8, "label": "control"},
             {"provider": "modal", "model_name": "flux-v2", "endpoint": "https://flux-v2.modal.run",
              "weight": 0.2, "label": "new variant"}]},
        {"name": "thirds", "priority": 50, "strategy": "split",
         "targets": [
             {"provider": "fal", "model_name": "a", "endpoint": "https://fal.run/a", "weight": 1 / 3},
             {"provider": "fal", "model_name": "b", "endpoint": "https://fal.run/b", "weight": 1 / 3},
             {"provider": "fal", "model_name": "c", "endpoint": "https://fal.run/c", "weight": 1 / 3}]},
        {"name": "ha", "priority": 10, "is_enabled": False, "strategy": "fallback",
         "targets": [
             {"provider": "modal", "model_name": "primary", "endpoint": "https://primary.modal.run",
              "timeout_ms": 30000, "retry_count": 2, "headers": {"Authorization": "Bearer ${TOKEN}"},
              "function_name": "generate", "request_class": "GenerateRequest"},
             {"provider": "fal", "model_name": "backup", "endpoint": "https://fal.run/backup", "timeout_ms": 1500},
             {"provider": "together", "model_name": "emergency", "endpoint": "https://emergency.example.com",
              "weight": 0.5}]},
        {"name": "shadow", "priority": 5, "strategy": "shadow",
         "targets": [
             {"provider": "modal", "model_name": "primary", "endpoint": "https://primary.modal.run",
              "timeout_ms": 30000, "retry_count": 2, "headers": {"Authorization": "Bearer ${TOKEN}"},
              "function_name": "generate", "request_class": "GenerateRequest"},
             {"provider": "modal", "model_name": "experimental", "endpoint": "https://experimental.modal.run",
              "is_shadow": True}]},
    ],
}

EVERY_OPERATOR = {
    "name": 'odd "names" config',
    "description": "every operator",
    "rules": [{
        "name": "everything",
        "priority": 1,
        "conditions": [
            {"field": "user.tier", "operator": "equals", "value": "premium"},
            {"field": "user.status", "operator": "not_equals", "value": "blocked"},
            {"field": "prompt", "operator": "contains", "value": "urgent"},
            {"field": "prompt", "operator": "not_contains", "value": "spam"},
            {"field": "request.type", "operator": "in", "value": ["image", "video", 3, None, True]},
            {"field": "user.region", "operator": "not_in", "value": ["restricted_region"]},
            {"field": "user.id", "operator": "exists"},
            {"field": "user.banned", "operator": "not_exists"},
            {"field": "user.credits", "operator": "greater_than", "value": 100},
            {"field": "request.tokens", "operator": "less_than", "value": "1000"},
            {"field": "request.id", "operator": "regex", "value": r"^prod_\d+$"},
            {"field": "request.path", "operator": "regex", "value": 'say "hi"\\s'},
            {"field": "user.first name", "operator": "equals", "value": 1.0},
            {"field": "not.really", "operator": "equals", "value": False},
        ],
        "strategy": "single",
        "targets": [{"provider": "custom", "model_name": "m", "endpoint": "https://m.example.com"}],
    }],
}


@pytest.mark.parametrize("config", [SEED, AB_AND_FALLBACK, EVERY_OPERATOR], ids=["seed", "ab_fallback", "operators"])
def test_import_output(config, snapshot):
    text, compiled = round_trip(config)
    assert text == snapshot
    assert canonical(compiled) == canonical(config)


def test_reused_target_becomes_a_named_definition():
    text = import_config(AB_AND_FALLBACK, "x.json")
    assert "target primary = modal(" in text
    assert text.count('"https://primary.modal.run"') == 1
    assert "route primary shadow modal(" in text


def test_an_azure_target_imports_as_the_stdlib_preset():
    config = {"name": "r", "rules": [{"name": "all", "priority": 0, "conditions": [], "strategy": "single",
                                      "targets": [{"provider": "azure", "model_name": "gpt-4o-prod",
                                                   "endpoint": "https://contoso.openai.azure.com"}]}]}
    text, compiled = round_trip(config)
    assert 'azure("gpt-4o-prod", "https://contoso.openai.azure.com")' in text
    assert canonical(compiled) == canonical(config)


def test_identifier_labels_are_written_before_the_target():
    text = import_config(AB_AND_FALLBACK, "x.json")
    assert '80% control: modal("flux-v1"' in text
    assert '20% modal("flux-v2", "https://flux-v2.modal.run") { label "new variant" }' in text


def test_weight_that_is_no_whole_percent_is_written_as_a_fraction():
    assert percent_text(0.8) == "80%"
    assert percent_text(0.125) == "12.5%"
    assert percent_text(0.07) == "7%"
    assert percent_text(1 / 3) is None
    assert "0.3333333333333333 fal(" in import_config(AB_AND_FALLBACK, "x.json")


def test_spelling_helpers():
    assert field_text(["user", "tier"]) == "user.tier"
    assert field_text(["not", "x"]) == '"not".x'
    assert field_text(["user", "first name"]) == 'user."first name"'
    assert regex_text(r"^a\d") == r'r"^a\d"'
    assert regex_text('a"\\d') == '"a\\"\\\\d"'
    assert regex_text("^a") == '"^a"'


@pytest.mark.parametrize("config, message", [
    ({"name": "x", "description": None, "rules": SEED["rules"]}, "router: description is null"),
    ({"name": "x", "metadata": None, "rules": SEED["rules"]}, "router: metadata is null"),
    ({"name": "x", "rules": [dict(SEED["rules"][0], targets=SEED["rules"][0]["targets"] * 2)]},
     "strategy single with 2 targets"),
    ({"name": "x", "rules": [dict(SEED["rules"][0], conditions=[
        {"field": "a", "operator": "exists", "value": 3}])]}, "the value 3 of `exists`"),
    ({"name": "x", "rules": [dict(SEED["rules"][0], conditions=[
        {"field": "y", "operator": "in", "value": "abc"}])]}, "written as `in []`, which routes the same"),
    ({"name": "x", "rules": [dict(SEED["rules"][0], conditions=[
        {"field": "a", "operator": "equals", "value": float("nan")}])]}, "nan has no routelang spelling"),
])
def test_what_routelang_cannot_say_is_reported(config, message):
    text, notes = import_config_with_notes(config, "x.json")
    assert any(message in str(n) for n in notes), notes
    assert "# NOTE: " in text


def seed_with(**rule) -> dict:
    return {"name": "x", "rules": [dict(SEED["rules"][0], **rule)]}


def test_split_entries_sharing_a_label_round_trip():
    """Regression: the import of split entries that share a label failed RL221."""
    config = seed_with(strategy="split", targets=[
        {"provider": "modal", "model_name": m, "endpoint": f"https://{m}.modal.run", "weight": 0.5, "label": "arm"}
        for m in ("a", "b")])
    text, compiled = round_trip(config)
    assert text.count('arm: modal(') == 2
    assert canonical(compiled) == canonical(config)
    assert "duplicate-label" in [d.code.name for d in lint(compile_text(text))]


@pytest.mark.parametrize("operator, written", [("in", "y in []"), ("not_in", "y not in []")])
@pytest.mark.parametrize("value", ["abc", 5, None, True])
def test_list_operators_with_a_non_list_value_import_as_the_empty_list(operator, written, value):
    """Regression: `in` with a non-list value gave `internal error: FormatError`.
    Mixtrain's engine: `in` a non-list never matches, `not_in` always does."""
    condition = {"field": "y", "operator": operator}
    if value is not None:
        condition["value"] = value
    config = seed_with(conditions=[condition])
    text, notes = import_config_with_notes(config, "x.json")
    assert f"when {written}" in text and "Mixtrain's validator rejects it" in str(notes[0])
    result = compile_text(text)
    assert result.ok
    assert_routes_like_mixtrain(config, lower(result.router)[0], [{}, {"y": "abc"}, {"y": ["abc"]}, {"y": 5}])


@pytest.mark.parametrize("field", ["a.", ".a", "."])
def test_empty_first_or_last_segment_round_trips_with_a_lint_warning(field):
    """Regression: Mixtrain accepts `"a."`; the import failed RL220."""
    config = seed_with(conditions=[{"field": field, "operator": "equals", "value": 3}])
    text, compiled = round_trip(config)
    assert canonical(compiled) == canonical(config)
    assert_routes_like_mixtrain(config, compiled, [{}, {"a": {"": 3}}, {"": {"a": 3}}, {"": {"": 3}}, {"a": 3}])
    assert "empty-path-segment" in [d.code.name for d in lint(compile_text(text))]


@pytest.mark.parametrize("field", ["", " ", "a..b"])
def test_fields_mixtrains_validator_rejects_are_checker_errors(field):
    config = seed_with(conditions=[{"field": field, "operator": "equals", "value": 3}])
    assert validation_errors(config)
    result = compile_text(import_config(config, "x.json"))
    assert [d.code.code for d in result.diagnostics] == ["RL220"]


def test_configs_mixtrain_rejects_are_refused():
    with pytest.raises(ImportProblem, match="At least one routing rule"):
        import_config({"name": "x", "rules": []}, "x.json")
    with pytest.raises(ImportProblem, match="JSON object"):
        import_config([1, 2], "x.json")
    with pytest.raises(ImportProblem, match=r"rules\.0\.conditions\.0\.operator"):
        import_config({"name": "x", "rules": [dict(SEED["rules"][0], conditions=[
            {"field": "a", "operator": "is_in", "value": [1]}])]}, "x.json")


# ---- CLI ----------------------------------------------------------------------------

def test_cli_import_prints_and_writes(tmp_path):
    src = tmp_path / "routing.json"
    src.write_text(json.dumps(SEED))
    runner = CliRunner()
    printed = runner.invoke(main, ["import", str(src)])
    assert printed.exit_code == 0
    assert printed.output == import_config(SEED, "routing.json")
    out = tmp_path / "routing.route"
    written = runner.invoke(main, ["import", str(src), "-o", str(out)])
    assert written.exit_code == 0 and written.output == ""
    assert out.read_text() == printed.output


@pytest.mark.parametrize("content, code, message", [
    ('{"name": "x",', 1, "routing.json:1:14: error: invalid JSON"),
    ('{"name": "x", "rules": []}', 1, "Mixtrain's RoutingConfig rejects this config"),
])
def test_cli_import_errors(tmp_path, content, code, message):
    src = tmp_path / "routing.json"
    src.write_text(content)
    result = CliRunner().invoke(main, ["import", str(src)])
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_import_missing_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["import", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_cli_import_warns_and_strict_fails_on_what_it_cannot_say(tmp_path):
    src = tmp_path / "routing.json"
    src.write_text(json.dumps({"name": "x", "description": None, "rules": SEED["rules"]}))
    lenient = CliRunner().invoke(main, ["import", str(src)])
    assert lenient.exit_code == 0
    assert "warning: router: description is null" in lenient.output
    strict = CliRunner().invoke(main, ["import", "--strict", str(src)])
    assert strict.exit_code == 1


def test_cli_import_reports_mixtrain_validator_errors(tmp_path):
    src = tmp_path / "routing.json"
    src.write_text(json.dumps({"name": "x", "rules": [dict(SEED["rules"][0], priority=-1)]}))
    result = CliRunner().invoke(main, ["import", str(src)])
    assert result.exit_code == 0
    assert "warning: Mixtrain's validator: rule[0]: Rule priority cannot be negative" in result.output
    assert "priority -1" in result.output


# ---- configs routelang compiled: the x-routelang fields come back -------------------

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.route"))


def without_target_names(config: dict) -> str:
    """The config as JSON, minus the target names the importer may add (it
    names a target that several rules share)."""
    config = copy.deepcopy(config)
    for rule in config["rules"]:
        for t in rule["targets"]:
            ext = t.get("x-routelang", {})
            ext.pop("name", None)
            if not ext:
                t.pop("x-routelang", None)
    return json.dumps(config, sort_keys=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compiled_example_imports_back_to_the_same_config(path):
    original, _ = lower(compile_path(path).router)
    text, notes = import_config_with_notes(original, path.name)
    assert notes == []
    result = compile_text(text, "imported.route")
    assert result.ok, result.render()
    again, _ = lower(result.router)
    assert without_target_names(again) == without_target_names(original)


def test_extensions_come_back_as_routelang_constructs():
    original, _ = lower(compile_path(EXAMPLES_DIR / "complex_conditions.route").router)
    text = import_config(original, "complex_conditions.json")
    assert "(request.priority == \"urgent\" or prompt contains \"URGENT\")" in text
    assert "rule \"urgent (or 2)\"" not in text
    assert "when user.credits >= 1000\n        and (user.email ends_with \"@mixtrain.ai\" or " in text
    original, _ = lower(compile_path(EXAMPLES_DIR / "cost_latency_strategies.route").router)
    text = import_config(original, "cost.json")
    for construct in ("lowest_cost local_llama, gpt4o_mini, claude_haiku", "round_robin gpt4o,",
                      "hybrid(cost 0.4, latency 0.4, reliability 0.2) gpt4o, claude_sonnet, gpt4o_mini",
                      "circuit_breaker { failures 3 cooldown 30s successes 3 }", "cost 0.005 per 1k",
                      'health_check { path "/health" interval 15s timeout 2s }'):
        assert construct in text


JUNK_EXT = st.dictionaries(
    st.sampled_from(["when", "strategy", "enabled", "part_of", "name", "cost_per_1k_tokens", "circuit_breaker",
                     "health_check", "kind", "sticky_by"]),
    st.one_of(JSON, st.fixed_dictionaries({"kind": st.sampled_from(["split", "round_robin", "hybrid", "x"])}),
              st.fixed_dictionaries({"field": FIELD, "operator": st.sampled_from(["equals", "starts_with", "?"])})),
    max_size=3)


@st.composite
def configs_with_junk_extensions(draw):
    config = draw(configs())
    for rule in config["rules"]:
        if draw(st.booleans()):
            rule["x-routelang"] = draw(JUNK_EXT)
        for t in rule["targets"]:
            if draw(st.booleans()):
                t["x-routelang"] = draw(JUNK_EXT)
    return config


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs_with_junk_extensions())
def test_malformed_extensions_never_break_the_round_trip(config):
    _, compiled = round_trip(config)
    assert canonical(compiled) == canonical(config)


def test_extensions_that_disagree_with_mixtrains_fields_are_ignored():
    original, _ = lower(compile_path(EXAMPLES_DIR / "complex_conditions.route").router)
    edited = copy.deepcopy(original)
    expanded = next(r for r in edited["rules"] if r["name"] == "urgent (or 2)")
    expanded["conditions"][0]["value"] = "CRITICAL"  # edited by hand after compiling
    text, notes = import_config_with_notes(edited, "edited.json")
    assert [n.where for n in notes] == ["x-routelang"]
    assert 'rule "urgent (or 2)"' in text and 'prompt contains "CRITICAL"' in text
    _, compiled = round_trip(edited)
    assert canonical(compiled) == canonical(edited)


LEAVES = st.sampled_from([
    'user.tier == "premium"', "user.credits > 100", "user.credits >= 10", "user.n <= 2.5",
    'user.email ends_with "@example.com"', 'user.name starts_with "test"', 'prompt contains "urgent"',
    'prompt not contains "spam"', 'request.type in ["image", "video"]', 'user.region not in ["eu"]',
    "user.beta exists", "user.banned not exists", r'request.model =~ r"^flux-\d+"', "user.x != 1.5",
    'user.tier == "free" note "free tier"', 'x contains 5',
])


def expressions(depth: int = 3):
    """Condition text with and / or / not and parentheses, as people write it."""
    if depth == 0:
        return LEAVES
    inner = expressions(depth - 1)
    return st.one_of(
        LEAVES,
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: " and ".join(f"({x})" for x in xs)),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: " or ".join(f"({x})" for x in xs)),
        inner.map(lambda x: f"not ({x})"),
    )


STRATEGIES = st.sampled_from([
    "route A", "route A shadow B", "fallback A, B", "split { 60% a: A  40% B }",
    "split sticky by user.id { 50% A  50% B }", 'split sticky by user.id salt "s" { 30% A  70% b: B }',
    "round_robin A, B, C", "least_latency A, B", "lowest_cost B, A", "hybrid(cost 0.5, reliability 0.5) A, C",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(st.none(), expressions()), STRATEGIES, st.booleans()), min_size=1, max_size=4))
def test_generated_routelang_survives_compile_then_import(rules):
    text = "\n".join([
        "router gen", "import std.providers",
        'target A = modal("a", "https://a.modal.run") { cost 0.5 per 1k circuit_breaker { failures 2 } }',
        'target B = fal("b", "https://fal.run/b") { health_check { path "/h" interval 5s } }',
        'target C = { provider "vllm" model "c" endpoint "http://c:8000" timeout 1500ms }',
    ] + [f"rule r{i} priority {i % 2} {'disabled' if off else ''} {{ {f'when {w}' if w else ''} {s} }}"
         for i, (w, s, off) in enumerate(rules)])
    result = compile_text(text, "gen.route")
    assert result.ok, result.render()
    original, _ = lower(result.router)
    imported, notes = import_config_with_notes(original, "gen.json")
    assert notes == []
    again = compile_text(imported, "imported.route")
    assert again.ok, imported + again.render()
    assert without_target_names(lower(again.router)[0]) == without_target_names(original)


def test_preset_default_endpoints_are_left_out_and_match_the_stdlib():
    for provider, endpoint in PRESET_ENDPOINTS.items():
        result = compile_text(f'router r\nimport std.providers\nrule a {{ route {provider}("m") }}')
        assert result.router.rules[0].strategy.targets[0].endpoint == endpoint
        config = {"name": "r", "rules": [{"name": "a", "targets": [
            {"provider": provider, "model_name": "m", "endpoint": endpoint}]}]}
        assert f'route {provider}("m")' in import_config(config, "x.json")


def test_the_importers_do_not_import_the_compiler():
    """compiler.py reads JSON configs through importers/mixtrain.py, so the importers must not
    import compiler.py back: the Mixtrain importer checks the round trip of a compiled config's
    extension fields with the resolver and checker directly."""
    compiled = {"name": "r", "x-routelang": {"format": 1}, "rules": [
        {"name": "a", "priority": 1, "conditions": [], "strategy": "single",
         "targets": [{"provider": "openai", "model_name": "m", "endpoint": "https://x.example",
                      "x-routelang": {"name": "t"}}]}]}
    code = ("import json, sys\n"
            "import routelang.importers.litellm, routelang.importers.portkey, routelang.importers.hybrid\n"
            "from routelang.importers.mixtrain import import_config\n"
            f"text = import_config(json.loads({json.dumps(json.dumps(compiled))}), 'r.json')\n"
            "assert 'target t = ' in text, text\n"
            "print('routelang.compiler' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
