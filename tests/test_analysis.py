"""The analysis against brute force: on generated routers and a wide pool of
request values, `unreachable` is never claimed for a rule some request
reaches, every witness routes as claimed, and rules over exactly-analysed
fields always get a definite verdict."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routelang import ir
from routelang.analysis import RouterAnalysis, Verdict, build_variables, first_match
from routelang.analysis.domain import Column, atom_of, leaf_candidates, literal_regex, regex_prefix
from routelang.analysis.router import RuleIndex
from routelang.runtime.operators import apply, lookup

TARGET = ir.Target(provider="modal", model_name="m", endpoint="https://m.modal.run")

# Values a request field may hold in the brute-force search: Python's equality
# classes (1, 1.0, True), numeric strings float() reads, nan, lists, objects.
POOL = [None, True, False, 0, 1, 1.0, 2, 2.5, -1, 10, 10.0, 3, "1", "10", " 5 ", "1e1", "1_0", "2.5", "nan",
        "inf", "-inf", "", "a", "b", "ab", "ba", "abc", "x", "1a", [], ["a"], [1], {}, {"t": "a"}]

EQ_VALUES = [0, 1, 10, 2.5, True, False, "a", "b", "1", "10", "ab"]
NUM_VALUES = [0, 1, 2, 2.5, 10, -1, "10", "1e1"]
TEXT_VALUES = ["a", "b", "ab", "1", ""]
REGEXES = ["a", "^a", "b\\Z", "^ab\\Z", "^a|b$", "a.c"]
OPS = {
    "equals": EQ_VALUES, "not_equals": EQ_VALUES,
    "greater_than": NUM_VALUES, "less_than": NUM_VALUES, "greater_or_equal": NUM_VALUES,
    "less_or_equal": NUM_VALUES,
    "contains": TEXT_VALUES + [5], "not_contains": TEXT_VALUES, "starts_with": TEXT_VALUES,
    "ends_with": TEXT_VALUES, "regex": REGEXES, "exists": [None], "not_exists": [None],
}
FIELDS = ["a", "b", "u", "u.t"]


@st.composite
def compares(draw):
    op = draw(st.sampled_from(sorted(OPS)))
    field = draw(st.sampled_from(FIELDS))
    if op in ("equals", "not_equals") and draw(st.booleans()):
        op = {"equals": "in", "not_equals": "not_in"}[op]
        value = draw(st.lists(st.sampled_from(EQ_VALUES), max_size=3))
    else:
        value = draw(st.sampled_from(OPS[op]))
    return ir.Compare(field=field, operator=op, value=value)


conditions = st.recursive(
    compares(),
    lambda inner: st.one_of(
        st.builds(lambda items: ir.AllOf(items=tuple(items)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda items: ir.AnyOf(items=tuple(items)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda item: ir.Not(item=item), inner),
    ),
    max_leaves=4,
)


@st.composite
def routers(draw):
    count = draw(st.integers(2, 5))
    rules = []
    for i in range(count):
        when = draw(st.one_of(st.none(), conditions)) if i == count - 1 else draw(conditions)
        rules.append(ir.Rule(name=f"r{i}", priority=draw(st.integers(0, 2)), when=when,
                             enabled=draw(st.sampled_from([True, True, True, False])),
                             strategy=ir.Single(target=TARGET)))
    return ir.Router(name="g", rules=tuple(rules))


def requests_for(router: ir.Router):
    """Every combination of POOL values over the fields the router mentions."""
    fields = sorted({c.field for r in router.rules for c in ir.walk_conditions(r.when)})
    roots = sorted({f.split(".")[0] for f in fields})
    per_root = []
    for root in roots:
        options = list(POOL)
        if any(f.startswith(root + ".") for f in fields):
            options += [{"t": v} for v in POOL if v is not None]
        per_root.append(options)
    for combo in itertools.product(*per_root):
        yield {root: v for root, v in zip(roots, combo) if v is not None}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(routers())
def test_unreachable_agrees_with_brute_force(router):
    analysis = RouterAnalysis(router)
    reached = {analysis.route(request).name for request in requests_for(router) if analysis.route(request)}
    exact = all(v.exact for v in analysis.space.variables)
    for facts in analysis.facts:
        if facts.verdict is Verdict.UNREACHABLE:
            assert facts.rule.name not in reached, facts.rule.name
        elif facts.verdict is Verdict.REACHABLE:
            assert analysis.route(facts.witness) is facts.rule
        else:
            assert not exact, f"{facts.rule.name}: undecided although every field is exact"
    witness, verdict = analysis.unmatched_witness(use_schema=False)
    if verdict is Verdict.REACHABLE:
        assert analysis.route(witness) is None
    if verdict is Verdict.UNREACHABLE:
        assert all(analysis.route(r) is not None for r in requests_for(router))


def router_of(*conditions, priorities=None):
    rules = tuple(
        ir.Rule(name=f"r{i}", priority=(priorities or [10 - i for i in range(len(conditions))])[i], when=c,
                strategy=ir.Single(target=TARGET))
        for i, c in enumerate(conditions)
    )
    return ir.Router(name="t", rules=rules)


def eq(field, value, op="equals"):
    return ir.Compare(field=field, operator=op, value=value)


def verdicts(router):
    return [f.verdict.value for f in RouterAnalysis(router).facts]


def test_union_of_earlier_rules_covers_an_in_list():
    router = router_of(eq("tier", "premium"), eq("tier", "standard"), eq("tier", ["premium", "standard"], "in"))
    facts = RouterAnalysis(router).facts
    assert [f.verdict for f in facts] == [Verdict.REACHABLE, Verdict.REACHABLE, Verdict.UNREACHABLE]
    assert [r.name for r in facts[2].covered_by] == ["r0", "r1"]


def test_python_equality_classes():
    assert verdicts(router_of(eq("n", 1), eq("n", True))) == ["reachable", "unreachable"]
    assert verdicts(router_of(eq("n", 10), eq("n", 10.0))) == ["reachable", "unreachable"]
    assert verdicts(router_of(eq("n", 0), eq("n", False))) == ["reachable", "unreachable"]
    assert verdicts(router_of(eq("n", 1), eq("n", "1"))) == ["reachable", "reachable"]


def test_not_equals_matches_missing_fields():
    router = router_of(eq("tier", "x", "not_equals"), ir.Compare(field="tier", operator="not_exists"))
    assert verdicts(router) == ["reachable", "unreachable"]


def test_numeric_string_reaches_a_rule_that_excludes_the_number():
    gt = ir.AllOf(items=(eq("n", 1, "greater_or_equal"), eq("n", 1, "less_or_equal"), eq("n", 1, "not_equals")))
    facts = RouterAnalysis(router_of(gt)).facts
    assert facts[0].verdict is Verdict.REACHABLE
    assert facts[0].witness["n"] != 1 and float(facts[0].witness["n"]) == 1.0


def test_nan_escapes_every_comparison():
    router = router_of(eq("s", 10, "greater_than"), eq("s", 10, "less_or_equal"), ir.Compare(field="s", operator="exists"))
    facts = RouterAnalysis(router).facts
    assert facts[2].verdict is Verdict.REACHABLE
    witness = facts[2].witness["s"]
    assert not apply("greater_than", witness, 10) and not apply("less_or_equal", witness, 10)


def test_an_undecidable_regex_never_yields_unreachable():
    assert verdicts(router_of(eq("m", "^gpt-\\d\\d$", "regex"), eq("m", "gpt-4"))) == ["reachable", "reachable"]
    # truly covered ("gpt-4" matches), but the regex is not decided: unknown, never unreachable
    assert verdicts(router_of(eq("m", "^gpt-\\d+$", "regex"), eq("m", "gpt-4"))) == ["reachable", "unknown"]
    covered = router_of(eq("m", "^x(y|z)+$", "regex"), eq("m", "^x(y|z)+$", "regex"))
    assert verdicts(covered) == ["reachable", "unknown"]


def test_literal_regexes_are_decided():
    assert literal_regex("^abc") == ("prefix", "abc")
    assert literal_regex("abc\\Z") == ("suffix", "abc")
    assert literal_regex("^a\\.b\\Z") == ("whole", "a.b")
    assert literal_regex("abc$") is None  # $ also matches before a final newline
    assert verdicts(router_of(eq("n", "^abc", "regex"), eq("n", "abcd", "starts_with"))) == ["reachable", "unreachable"]


def test_prefix_paths_interact():
    # user.tier exists implies user is an object, so `user == "anon"` cannot hold with it
    both = ir.AllOf(items=(ir.Compare(field="user.tier", operator="exists"), eq("user", "anon")))
    assert verdicts(router_of(both)) == ["unreachable"]
    reachable = ir.AllOf(items=(ir.Compare(field="user.tier", operator="not_exists"), ir.Compare(field="user", operator="exists")))
    assert verdicts(router_of(reachable)) == ["reachable"]


def test_pattern_candidates_realise_every_combination():
    atoms = [atom_of("f", "contains", "ab"), atom_of("f", "not_contains", "b"), atom_of("f", "starts_with", "a"),
             atom_of("f", "ends_with", "c")]
    leaf = leaf_candidates(atoms)
    assert leaf.exact
    outcomes = {tuple(apply(a.operator, v, a.value) for a in atoms) for v in leaf.values}
    brute = {tuple(apply(a.operator, v, a.value) for a in atoms)
             for v in ("".join(p) for n in range(5) for p in itertools.product("abcx", repeat=n))}
    assert brute <= outcomes


def test_candidates_are_deduplicated_by_outcome():
    [var] = build_variables({atom_of("tier", "equals", "a")})
    assert len(var.candidates) == 2  # equal to "a", or not
    assert {apply("equals", lookup(c, "tier"), "a") for c in var.candidates} == {True, False}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(routers())
def test_rule_index_agrees_with_the_linear_scan(router):
    """The guarded index (which skips rules whose guard fails) picks the same
    first rule as evaluating every rule in order, on every request."""
    order = router.evaluation_order()
    trees = [ir.condition_tree(r.when) if r.when is not None else None for r in order]
    index = RuleIndex(order, trees)
    for request in requests_for(router):
        assert index.first_match(request) is first_match(order, trees, request), request


REGEX_VALUES = POOL + ["ab1", "a1", "a12", "x\na", "A", "Ab", "m1-2", "m1-", "m12-3", "\U0010ffffa", "a\U0010ffff"]


def test_regex_masks_equal_the_operator():
    """Column answers a regex from the texts starting with its literal prefix:
    the same bits as calling the operator on every value."""
    column = Column(REGEX_VALUES)
    for pattern in ["^ab", "^a\\d+", "^m1-\\d+", "(?m)^a", "(?i)^a", "^a|b", "^", "a", "^(a)b", "^a?b", "[", 5,
                    "^\U0010ffff", "^a\\Z"]:
        expected = sum(1 << i for i, v in enumerate(REGEX_VALUES) if apply("regex", v, pattern))
        assert column.mask("regex", pattern) == expected, pattern


def test_regex_prefix():
    assert regex_prefix("^m1-\\d+") == "m1-"
    assert regex_prefix("^a?b") == ""
    assert regex_prefix("(?m)^ab") == "" and regex_prefix("(?i)^ab") == "" and regex_prefix("^a|^b") == ""
    assert regex_prefix("ab") == "" and regex_prefix("[") == ""
