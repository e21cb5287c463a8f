"""The strategy table (routelang/vocab/strategies.py): every entry has every facet,
and every phase handles every entry. A new strategy fails here until each phase
knows it (see docs/architecture.md, "A strategy")."""

from __future__ import annotations

import ast as pyast
import dataclasses
import random
import re
import string
import subprocess
from pathlib import Path

import pytest
from mixtrain.routing.models import RoutingConfig

import routelang
from routelang import ir
from routelang.backends.json import lower
from routelang.compiler import compile_text
from routelang.diagnostics import Severity
from routelang.explain import strategy_words
from routelang.fmt import format_text
from routelang.highlight import RoutelangLexer
from routelang.lint import lint
from routelang.parser import grammar_text
from routelang.runtime import strategies as runtime_strategies
from routelang.runtime.model import plan_from_config
from routelang.vocab import strategies
from routelang.vocab.strategies import LAYOUTS, SELECTORS, SHARES, STRATEGIES, StrategyDef

ROOT = Path(__file__).parents[1]

# One .route body per strategy kind; a new kind needs one here.
SAMPLES = {
    "single": "route a",
    "shadow": "route a shadow b",
    "split": "split { 60% x: a  40% y: b }",
    "fallback": "fallback a, b",
    "round_robin": "round_robin a, b",
    "least_latency": "least_latency a, b",
    "lowest_cost": "lowest_cost a, b",
    "hybrid": "hybrid(cost 0.5, latency 0.3, reliability 0.2) a, b",
}
HEADER = """router r
target a = { provider "modal" model "a" endpoint "https://a.example.com" cost 0.01 per 1k }
target b = { provider "fal" model "b" endpoint "https://b.example.com" cost 0.02 per 1k }
"""
# Facets that may be None / False / empty, and what that means.
OPTIONAL = {
    "max_targets": "no upper bound",
    "json_max_targets": "no upper bound",
    "score_factors": "no parameter list",
    "falls_back": "not a fallback chain",
    "lint_single_member": "no lint rule flags a lone member",
    "mirrors": "no shadow target",
    "nests": "members are targets only",
    "static": "selection changes per request",
    "mixtrain_native": "Mixtrain lacks it (then `mixtrain.note` says what it does instead)",
}


def source(kind: str) -> str:
    return HEADER + f"rule r0 priority 0 {{ {SAMPLES[kind]} }}\n"


def test_every_kind_has_a_sample():
    assert set(SAMPLES) == set(STRATEGIES)


@pytest.mark.parametrize("defn", STRATEGIES.values(), ids=lambda d: d.kind)
def test_every_entry_has_every_facet(defn: StrategyDef):
    for f in dataclasses.fields(StrategyDef):
        value = getattr(defn, f.name)
        if f.name not in OPTIONAL:
            assert value not in (None, "", ()), f"{defn.kind}: facet `{f.name}` is missing"
    assert defn.selector in SELECTORS and defn.layout in LAYOUTS and defn.shares in SHARES
    assert defn.syntax.startswith(defn.keyword) and defn.summary
    assert 1 <= defn.min_targets and (defn.max_targets is None or defn.min_targets <= defn.max_targets)
    assert len(defn.roles) == 2 and all(defn.roles)
    low = defn.mixtrain
    assert low.strategy in strategies.MIXTRAIN_KINDS and low.weights in ("written", "equal")
    # Native means exact: no note. Not native: a note that names the rule and the strategy.
    assert (low.note is None) == defn.mixtrain_native
    if low.note is not None:
        assert "{rule}" in low.note and low.note.format(rule="r", keyword=defn.keyword)
    # A strategy that nests says what Mixtrain gets instead.
    assert (low.nested is not None) == defn.nests == (low.nested_weights is not None)
    if defn.nests:
        assert low.nested_weights in ("first_choice", "written") and "{count}" in low.nested
    # The explain phrase uses only the placeholders explain fills in.
    fields = {name for _, name, _, _ in string.Formatter().parse(defn.explain) if name}
    assert fields <= {"first", "second", "names", "numbered", "shares", "each", "weights"}, fields
    if defn.lint_single_member is not None:
        assert defn.lint_single_member in {r.name for r in routelang.lint.LINT_RULES.values()}


def test_a_missing_facet_cannot_be_left_out():
    required = [f.name for f in dataclasses.fields(StrategyDef)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    facets = {name: getattr(strategies.FALLBACK, name) for name in required}
    for name in required:
        with pytest.raises(TypeError):
            StrategyDef(**{k: v for k, v in facets.items() if k != name})


def test_the_ir_has_one_model_per_kind_with_only_its_own_fields():
    assert set(ir.STRATEGY_MODELS) == set(STRATEGIES)
    shared = set(ir.Node.model_fields)
    for kind, model in ir.STRATEGY_MODELS.items():
        own = set(model.model_fields) - shared - {"kind"}
        assert own, kind
        defn = STRATEGIES[kind]
        assert {f"{f}_weight" for f in defn.score_factors} <= own
        if not defn.score_factors:
            assert not any(name.endswith("_weight") for name in own), (kind, own)


def test_the_grammar_has_every_keyword_and_alias():
    grammar = grammar_text()
    for defn in STRATEGIES.values():
        assert f'"{defn.keyword}"' in grammar, defn.keyword
        if defn.layout in ("list", "call_list"):
            assert f"-> {defn.kind}" in grammar, defn.kind
    for factor in strategies.SCORE_FACTORS:
        assert f"-> {factor}_weight" in grammar


@pytest.mark.parametrize("kind", SAMPLES)
def test_every_phase_handles_every_kind(kind):
    defn = STRATEGIES[kind]
    text = source(kind)
    result = compile_text(text)
    assert result.ok, result.render()
    strategy = result.router.rules[0].strategy
    assert strategy.kind == kind and isinstance(strategy, ir.STRATEGY_MODELS[kind])
    # fmt keeps it; explain words it; lint runs.
    assert format_text(text) == format_text(format_text(text))
    assert strategy_words(strategy)
    lint(result)
    # Mixtrain loads the lowering; a note exactly when Mixtrain lacks the strategy.
    config, notes = lower(result.router)
    rule = config["rules"][0]
    RoutingConfig.from_json(config)
    assert rule["strategy"] == defn.mixtrain.strategy
    assert bool(notes) == (not defn.mixtrain_native)
    # The runtime reads it back as this kind and selects with it, in both executors.
    plan = plan_from_config(config)
    assert plan.rules[0].strategy == kind
    for backend in ("json", "python"):
        random.seed(1)
        chosen = routelang.load(config, backend=backend).route({})
        assert chosen.attempts and {t.model_name for t in chosen.selected_targets} <= {"a", "b"}
        assert (chosen.shadows != ()) == defn.mirrors


def test_every_selector_has_a_runtime_implementation():
    implemented = set(runtime_strategies.RANKINGS)
    code = Path(runtime_strategies.__file__).read_text()
    implemented |= set(re.findall(r'selector == "(\w+)"', code))
    assert set(SELECTORS) == implemented
    assert {d.selector for d in STRATEGIES.values()} <= implemented


def test_highlighter_and_language_server_know_every_keyword():
    from routelang.lsp import KEYWORD_DOCS

    lexer = RoutelangLexer()
    for defn in STRATEGIES.values():
        tokens = [(str(t), v) for t, v in lexer.get_tokens(SAMPLES[defn.kind]) if v.strip()]
        assert tokens[0] == ("Token.Keyword", defn.keyword), tokens
        assert defn.summary in KEYWORD_DOCS[defn.keyword]


def test_strategy_names_are_spelled_in_at_most_three_files():
    """The table is the one definition (grep -rl round_robin routelang grammar)."""
    out = subprocess.run(["grep", "-rl", "--include=*.py", "--include=*.lark", "--include=*.j2", "round_robin",
                          "routelang", "grammar"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    files = sorted(out.split())
    assert len(files) <= 3, files


def test_vocab_imports_nothing_else_from_routelang():
    for path in (ROOT / "routelang" / "vocab").glob("*.py"):
        tree = pyast.parse(path.read_text())
        for node in pyast.walk(tree):
            if isinstance(node, pyast.ImportFrom):
                assert node.level == 0 or node.module is None or not node.module.startswith(".."), path
                assert not (node.module or "").startswith("routelang"), path
            if isinstance(node, pyast.Import):
                assert not any(a.name.startswith("routelang") for a in node.names), path


def test_hybrid_weights_that_do_not_add_up_say_which_weight_was_left_out():
    """`hybrid(cost .4, latency .4)` silently scored reliability 0."""
    result = compile_text(HEADER + "rule r0 priority 0 { hybrid(cost .4, latency .4) a, b }\n")
    found = [d for d in lint(result) if d.code.name == "hybrid-weight-sum"]
    assert len(found) == 1 and found[0].level == Severity.WARNING
    assert "`reliability`, not written, weighs 0" in found[0].message
    assert found[0].help.startswith("write `reliability 0.2`")
    # All written: the message stays as it was.
    result = compile_text(HEADER + "rule r0 priority 0 { hybrid(cost .5, latency .5, reliability .5) a, b }\n")
    assert [d.message for d in lint(result) if d.code.name == "hybrid-weight-sum"] == [
        "hybrid weights add up to 1.5, not 1.0"]
