"""The operator and target-setting tables (routelang/vocab/): every entry has
every facet, the grammar and the table agree, the grep goal of issue 8 holds,
and each operator's Mixtrain lowering is what its `exact` flag says, proved
by hypothesis against the real mixtrain package (the reference)."""

import json
import math
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mixtrain.routing.conditions import ConditionEvaluator
from mixtrain.routing.exceptions import ConditionEvaluationError
from mixtrain.routing.models import RoutingCondition

from routelang import ir
from routelang.analysis.router import RouterAnalysis, Verdict
from routelang.parser import grammar_text
from routelang.vocab import operators
from routelang.vocab import settings as target_settings
from routelang.vocab.operators import HUGE_INT, Lowering

ROOT = Path(__file__).parent.parent
DOMAINS = {"equality", "membership", "order", "substring", "prefix", "suffix", "regex", "presence"}
OPERANDS = {"any", "list", "number", "text", "pattern", "none"}


# ---- facets -------------------------------------------------------------------------------

@pytest.mark.parametrize("op", operators.TABLE, ids=lambda op: op.name)
def test_every_operator_has_every_facet(op):
    for facet in fields(op):
        value = getattr(op, facet.name)
        if facet.name in ("json_aliases",):
            continue  # optional: most operators have no other name
        if facet.name in ("negation", "domain"):
            assert facet.name in op.__dataclass_fields__  # None is a stated answer (no exact negation; inexact)
            continue
        assert value is not None and value != "" and value != (), f"{op.name} lacks {facet.name}"
    assert op.operand in OPERANDS
    assert op.domain is None or op.domain in DOMAINS  # None: stated, and the analysis treats it as inexact
    assert callable(op.meaning) and callable(op.python) and callable(op.lower) and callable(op.lower_negated)
    assert op.negation is None or op.negation in operators.BY_NAME
    assert op.negation is not None or not op.negation_exact
    sample = {"list": [1, "a"], "none": None, "number": 3, "pattern": "a+"}.get(op.operand, "a")
    for lowering in (op.lower(sample), op.lower_negated(sample)):
        assert isinstance(lowering, Lowering)
        for term in lowering.terms:
            assert all(name in operators.MIXTRAIN_NAMES for name, _ in term)
        assert lowering.exact or lowering.differs


def test_exact_negations_are_the_negated_meaning():
    values = [None, 0, 1, 2.5, "a", "ab", [1], {"a": 1}, True, float("nan"), HUGE_INT]
    for op in operators.TABLE:
        if not op.negation_exact:
            continue
        other = operators.BY_NAME[op.negation]
        for actual in values:
            for expected in ([1, "a"], "a", 1, None):
                assert other.meaning(actual, expected) == (not op.meaning(actual, expected)), (op.name, actual)


def test_the_grammar_spells_every_operator_and_nothing_else():
    text = re.sub(r"//[^\n]*", "", grammar_text())
    rules = re.findall(r"^!(?:value|list|unary)_operator:(.*)$", text, re.MULTILINE)
    spelled = set()
    for rule in rules:
        for alternative in rule.split("|"):
            words = re.findall(r'"([^"]+)"|(COMPARE)', alternative)
            spelled.add(" ".join(w for w, _ in words) if words[0][0] else "COMPARE")
    compare = set(re.search(r'^COMPARE:(.*)$', text, re.MULTILINE).group(1).replace('"', "").split("|"))
    spelled = (spelled - {"COMPARE"}) | {c.strip() for c in compare}
    assert spelled == set(operators.BY_SPELLING)


@pytest.mark.parametrize("entry", target_settings.TABLE, ids=lambda s: s.surface)
def test_every_target_setting_has_every_facet(entry):
    for facet in ("surface", "ir_field", "json_field", "kind", "phrase"):
        assert getattr(entry, facet), f"{entry.surface} lacks {facet}"
    assert entry.json_place in ("mixtrain", "x-routelang")
    assert entry.ir_field in ir.Target.model_fields
    assert entry.kind in target_settings.KINDS
    if entry.minimum is not None and entry.maximum is not None:
        assert entry.minimum <= entry.maximum


def test_ir_target_fields_all_come_from_the_settings_table():
    own = {"name", "provider", "model_name", "endpoint"} | {s.ir_field for s in target_settings.TABLE}
    assert set(ir.Target.model_fields) - {"span", "spans"} == own


def test_grep_goal_starts_with_is_named_in_at_most_three_files():
    proc = subprocess.run(["grep", "-rl", "--include=*.py", "--include=*.lark", "--include=*.j2", "starts_with",
                           "routelang", "grammar"], cwd=ROOT, capture_output=True, text=True, check=False)
    files = sorted(proc.stdout.split())
    assert len(files) <= 3, files
    assert "routelang/vocab/operators.py" in files


# ---- an operator the analysis has no domain for is inexact ----------------------------

def test_an_operator_without_a_domain_makes_the_analysis_inexact(monkeypatch):
    """Before, an unknown operator counted as exact: lint called `b` unreachable."""
    odd = operators.Operator(
        "odd", ("odd",), "text", True, lambda a, e: isinstance(a, str) and a.count(e) == 2, None, False,
        lambda e, v, value: "False", lambda value: Lowering(()), lambda value: Lowering(()),
        "holds twice", None, False)
    monkeypatch.setitem(operators.BY_NAME, "odd", odd)
    target = ir.Target(provider="p", model_name="m", endpoint="https://a.example")
    strategy = ir.Strategy(kind="single", targets=(target,))
    first = ir.Rule(name="a", priority=2, strategy=strategy,
                    when=ir.Compare.model_construct(field="x", operator="equals", value="q", kind="compare"))
    second = ir.Rule(name="b", priority=1, strategy=strategy,
                     when=ir.Compare.model_construct(field="x", operator="odd", value="z", kind="compare"))
    analysis = RouterAnalysis(ir.Router(name="r", rules=(first, second)))
    # {"x": "zz"} reaches `b`; the candidates need not contain it, but "unreachable" must not be claimed.
    assert analysis.facts[1].verdict is not Verdict.UNREACHABLE
    assert odd.meaning("zz", "z") and not operators.get("equals").meaning("zz", "q")


# ---- Mixtrain lowering against mixtrain ---------------------------------------------------

def mixtrain_holds(lowering: Lowering, actual) -> bool:
    """Whether Mixtrain's engine would match a rule made of one term of `lowering`,
    with the config read back from its JSON text (as Mixtrain loads it)."""
    request = {"x": actual}
    for term in lowering.terms:
        try:
            term = json.loads(json.dumps(term))
        except ValueError:
            pass  # a value JSON cannot hold (a huge integer): compare the value itself
        conditions = [RoutingCondition(field="x", operator=op, value=value) for op, value in term]
        if rule_matches(conditions, request):
            return True
    return False


def rule_matches(conditions, request) -> bool:
    """RoutingEngine._evaluate_rule: a rule whose evaluation raises does not match."""
    try:
        return ConditionEvaluator.evaluate_conditions(conditions, request)
    except ConditionEvaluationError:
        return False


def deep_list(depth: int) -> list:
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


DEEP = deep_list(5000)  # str() and repr() of it raise RecursionError
NUMBERISH = st.one_of(
    st.integers(), st.integers(min_value=-(10 ** 400), max_value=10 ** 400), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1e-300, max_value=1e-300),
    st.sampled_from(["1e3", " 12 ", "inf", "-inf", "nan", "abc", "1_000", "", "0x10", "\u0661\u0662", "-0",
                     "1e999", "-1e999", "Infinity"]),
)
ANY_VALUE = st.one_of(NUMBERISH, st.none(), st.text(max_size=6), st.lists(st.integers(), max_size=3),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                      st.sampled_from([HUGE_INT, [HUGE_INT]]))
OPERAND = {
    "number": NUMBERISH,
    "text": st.one_of(st.text(alphabet="ab.$^\n(", max_size=4), st.integers(), st.none()),
    "pattern": st.one_of(st.sampled_from(["a", "^a", r"a\Z", "a|b", "(a)\\1", "[", "(?i)a", "(?s)a.b", "(?m)^a$", "$", ".", "a$"]),
                         st.text(alphabet="ab.*^$()|", max_size=4)),
    "list": st.one_of(st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=3), st.text(max_size=2)),
    # An object operand never reaches the table: RoutingCondition.value cannot hold one (the backend disables the rule).
    "any": st.one_of(NUMBERISH, st.none(), st.text(max_size=6), st.lists(st.integers(), max_size=3)),
    "none": st.none(),
}


def near(operand) -> list:
    """Request values near an operand: the operand itself, the floats next to
    it, text holding it, values whose str() or float() fails."""
    out = [operand, None, "", "abc", [], {}, HUGE_INT, DEEP, [HUGE_INT], float("nan"), True, 0]
    b = operators.to_float(operand) if not isinstance(operand, (list, dict)) else None
    if b is not None and math.isfinite(b):
        out += [b, math.nextafter(b, math.inf), math.nextafter(b, -math.inf), repr(b)]
        if abs(b) < 1e300:
            out.append(int(b))
    if isinstance(operand, str):
        out += ["x" + operand, operand + "x", operand + "\n", "\n" + operand, [operand]]
    return out


@pytest.mark.parametrize("negated", [False, True], ids=["plain", "negated"])
@pytest.mark.parametrize("op", operators.TABLE, ids=lambda op: op.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mixtrain_lowering_is_exact_where_it_says_so(op, negated, data):
    operand = data.draw(OPERAND[op.operand], label="operand")
    lowering = (op.lower_negated if negated else op.lower)(operand)
    for actual in [*near(operand), data.draw(ANY_VALUE, label="actual")]:
        ours = op.meaning(actual, operand) != negated
        theirs = mixtrain_holds(lowering, actual)
        if lowering.exact:
            assert theirs == ours, (op.name, negated, operand, actual, lowering)
        else:
            assert not theirs or ours, (op.name, negated, operand, actual)  # a subset: never matches more
    if not lowering.exact and lowering.witness is not None:
        assert op.meaning(lowering.witness, operand) != negated
        assert not mixtrain_holds(lowering, lowering.witness)


def test_at_least_and_at_most_are_exact_at_the_edges():
    for bound in (0, -0.0, 5e-324, -5e-324, 1e308, -1e308, math.inf, -math.inf, 2 ** 53 + 1, "10", True, 10 ** 400):
        for actual in (bound, 0, -0.0, 5e-324, -5e-324, 1e308, math.inf, -math.inf, float("nan"), "inf", "-inf",
                       2 ** 53, 2 ** 53 + 2, "10", None, "x", 10 ** 400):
            for name in ("greater_or_equal", "less_or_equal"):
                op = operators.BY_NAME[name]
                lowering = op.lower(bound)
                assert lowering.exact
                assert mixtrain_holds(lowering, actual) == op.meaning(actual, bound), (name, bound, actual)


def test_not_contains_is_not_called_the_exact_negation_of_contains():
    """`not (x contains "a")` differs from Mixtrain's not_contains where str() fails."""
    op = operators.BY_NAME["contains"]
    assert not op.negation_exact
    lowering = op.lower_negated("a")
    assert not lowering.exact
    for value in (HUGE_INT, deep_list(5000)):
        assert not op.meaning(value, "a")          # so `not (x contains "a")` holds in routelang ...
        assert not mixtrain_holds(lowering, value)  # ... while Mixtrain's not_contains rule fails


def test_the_highlighter_and_language_server_read_the_table():
    from routelang import highlight, lsp

    assert set(operators.WORDS) <= set(highlight.WORD_OPERATORS)
    assert set(operators.SYMBOLS) <= set(lsp.OPERATORS)


def test_the_vocab_package_imports_nothing_else_from_routelang():
    code = ("import sys, routelang.vocab.operators, routelang.vocab.settings; "
            "print(sorted(m for m in sys.modules if m.startswith('routelang') and not m.startswith('routelang.vocab')"
            " and m != 'routelang'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_a_negated_regex_keeps_leading_global_flags():
    wrapped = operators.negated_regex("(?i)abc")
    assert re.search(wrapped, "xyz") and not re.search(wrapped, "xABCx")
    assert operators.negated_regex("(?x)a # comment") is None or not re.search(
        operators.negated_regex("(?x)a # comment"), "a")
