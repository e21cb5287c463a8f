"""routelang's copy of Mixtrain's schema (routelang/mixtrain_schema.py)
against Mixtrain's own models and validator: field for field, and on
generated inputs (what loads, the errors where it does not, the canonical
dump, the validator's messages). Mixtrain is a test-only dependency."""

import ast as python_ast
import json
from pathlib import Path

import mixtrain.routing as mixtrain
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from routelang import mixtrain_schema as ours

PAIRS = [(ours.RoutingConfig, mixtrain.RoutingConfig), (ours.RoutingRule, mixtrain.RoutingRule),
         (ours.RoutingCondition, mixtrain.RoutingCondition), (ours.RoutingTarget, mixtrain.RoutingTarget)]


def _schema(model) -> dict:
    """The JSON schema without the prose (Mixtrain's field descriptions, class docstrings)."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
        if isinstance(node, list):
            return [strip(x) for x in node]
        return node
    return strip(model.model_json_schema())


@pytest.mark.parametrize("mine, theirs", PAIRS, ids=lambda m: m.__name__)
def test_models_match_field_for_field(mine, theirs):
    assert list(mine.model_fields) == list(theirs.model_fields)
    for name, field in mine.model_fields.items():
        other = theirs.model_fields[name]
        assert (field.is_required(), field.default, field.default_factory, field.metadata) == \
               (other.is_required(), other.default, other.default_factory, other.metadata), name
    assert _schema(mine) == _schema(theirs)  # types, enums, defaults, bounds, required fields
    assert {k: mine.model_config.get(k) for k in ("extra", "use_enum_values", "strict")} == \
           {k: theirs.model_config.get(k) for k in ("extra", "use_enum_values", "strict")}


def test_enums_match():
    assert [e.value for e in ours.ConditionOperator] == [e.value for e in mixtrain.ConditionOperator]
    assert [e.value for e in ours.RoutingStrategy] == [e.value for e in mixtrain.RoutingStrategy]


# ---- generated inputs: valid, nearly valid and wrong ---------------------------------

ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
              st.sampled_from(["1", "0.5", "true", "yes", "500", "", " ", "https://x", "split", "in"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=5,
)


def maybe(draw, value_strategy, junk: int):
    """A value from `value_strategy`, or (one time in `junk + 1`; never when 0) anything at all."""
    return draw(ANY) if junk and draw(st.integers(0, junk)) == 0 else draw(value_strategy)


@st.composite
def condition(draw, junk: int):
    c = {"field": maybe(draw, st.sampled_from(["user.tier", "a.", "", " ", "a..b", "x"]), junk),
         "operator": maybe(draw, st.sampled_from([e.value for e in mixtrain.ConditionOperator] + ["is_in"]), junk)}
    if draw(st.booleans()):
        c["value"] = maybe(draw, st.one_of(st.integers(-(10**400), 10**400), st.text(max_size=5),
                                           st.sampled_from(["[", "(a", "10", "ten"]), st.lists(ANY, max_size=3)), junk)
    if draw(st.booleans()):
        c["description"] = maybe(draw, st.one_of(st.text(max_size=5), st.none()), junk)
    return c


TARGET_FIELDS = {
    "weight": st.one_of(st.floats(0, 1), st.floats(-0.5, 1.5), st.sampled_from([1, "0.5", True])),
    "label": st.one_of(st.text(max_size=3), st.none()),
    "timeout_ms": st.one_of(st.integers(0, 10**6), st.sampled_from(["500", 99.0, 100.5])),
    "retry_count": st.one_of(st.integers(-1, 6), st.sampled_from(["3", 2.0])),
    "function_name": st.text(max_size=3), "request_class": st.text(max_size=3),
    "headers": st.one_of(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2), st.none()),
    "is_shadow": st.one_of(st.booleans(), st.sampled_from(["yes", 0, 2])),
}


@st.composite
def target(draw, junk: int):
    t = {"provider": maybe(draw, st.sampled_from(["modal", "", " "]), junk),
         "model_name": maybe(draw, st.sampled_from(["m", ""]), junk),
         "endpoint": maybe(draw, st.sampled_from(["https://a", "http://b", "ftp://c", ""]), junk)}
    for key, strategy in TARGET_FIELDS.items():
        if draw(st.integers(0, 3)) == 0:
            t[key] = maybe(draw, strategy, junk)
    return t


@st.composite
def rule(draw, junk: int):
    r = {"name": maybe(draw, st.sampled_from(["a", "b", "", " "]), junk),
         "targets": maybe(draw, st.lists(target(junk), min_size=1 if not junk else 0, max_size=3), junk)}
    for key, strategy in {
        "description": st.one_of(st.text(max_size=3), st.none()), "priority": st.one_of(st.integers(-2, 9), st.just("5")),
        "is_enabled": st.one_of(st.booleans(), st.just("no")), "conditions": st.lists(condition(junk), max_size=3),
        "strategy": st.sampled_from(["single", "fallback", "split", "shadow", "round_robin"]),
    }.items():
        if draw(st.booleans()):
            r[key] = maybe(draw, strategy, junk)
    return r


@st.composite
def config(draw):
    junk = draw(st.sampled_from([0, 0, 40, 10]))  # how often a value is anything at all (0: never)
    c = {"name": maybe(draw, st.sampled_from(["r", "", " "]), junk),
         "rules": maybe(draw, st.lists(rule(junk), min_size=1 if not junk else 0, max_size=3), junk)}
    if draw(st.booleans()):
        c["description"] = maybe(draw, st.one_of(st.text(max_size=3), st.none()), junk)
    if draw(st.booleans()):
        c["metadata"] = maybe(draw, st.one_of(st.dictionaries(st.text(max_size=3), ANY, max_size=2), st.none()), junk)
    return c if not junk or draw(st.integers(0, 30)) else draw(ANY)


def _theirs(data):
    try:
        return mixtrain.RoutingConfig.from_json(data), None
    except ValidationError as exc:
        return None, [(tuple(e["loc"]), e["msg"]) for e in exc.errors()]
    except TypeError as exc:  # from_json(**x) of something that is not a mapping of strings
        return None, [((), str(exc))]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config())
def test_same_inputs_load_with_the_same_dump_and_the_same_validator_messages(data):
    theirs, their_errors = _theirs(data) if isinstance(data, dict) else (None, None)
    try:
        mine = ours.load(data)
    except ours.SchemaProblem as exc:
        assert theirs is None
        if their_errors is not None:
            assert exc.problems == their_errors
        return
    assert theirs is not None
    assert json.dumps(mine.to_json(), sort_keys=True) == json.dumps(theirs.to_json(), sort_keys=True)
    try:
        expected = mixtrain.RoutingValidator.validate_config(theirs)
    except (OverflowError, ValueError):  # Mixtrain's validator itself fails: ours reports the condition instead
        assert ours.validate_config(mine)
        return
    assert ours.validate_config(mine) == expected


def test_validator_messages_locate_their_object():
    assert ours.validation_path("rule[2].targets[1]: Endpoint must be a valid HTTP/HTTPS URL") == ("rules", 2, "targets", 1)
    assert ours.validation_path("rule[0]: Rule priority cannot be negative") == ("rules", 0)
    assert ours.validation_path("Duplicate rule name 'a' found") == ()


def test_nothing_under_routelang_imports_mixtrain():
    """routelang reads Mixtrain's schema with its own models; mixtrain is only a test dependency."""
    package = Path(__file__).parent.parent / "routelang"
    offenders = []
    for path in package.rglob("*.py"):
        for node in python_ast.walk(python_ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, python_ast.Import) else \
                [node.module or ""] if isinstance(node, python_ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.relative_to(package)}: {n}" for n in names if n.split(".")[0] == "mixtrain"]
    assert offenders == []


def test_the_import_command_runs_without_mixtrain(tmp_path):
    """Regression: `routelang import` needed mixtrain at run time (ModuleNotFoundError with no extras)."""
    import subprocess
    import sys

    src = tmp_path / "routing.json"
    src.write_text(json.dumps({"name": "r", "rules": [{"name": "a", "targets": [
        {"provider": "modal", "model_name": "m", "endpoint": "https://m.modal.run"}]}]}))
    blocker = tmp_path / "block" / "mixtrain"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'mixtrain'\")\n")
    env = {"PYTHONPATH": f"{tmp_path / 'block'}:{Path(__file__).parent.parent}", "PATH": "/usr/bin:/bin"}
    for command in (["import", str(src)], ["check", str(src)], ["lint", str(src)], ["explain", str(src)]):
        done = subprocess.run([sys.executable, "-m", "routelang", *command], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        assert done.returncode == 0, (command, done.stderr)
        assert "ModuleNotFoundError" not in done.stderr and "Traceback" not in done.stderr, done.stderr
