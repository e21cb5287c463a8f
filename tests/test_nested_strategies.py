"""Nested strategies (issue 8, A11) in the compiler: syntax, errors, checks, fmt,
lint, explain and diff. The runtime side is tests/runtime/test_nested_selection.py."""

from __future__ import annotations

import json
import subprocess
import sys

from routelang import ir
from routelang.compiler import compile_text
from routelang.diff import diff
from routelang.explain import explain
from routelang.fmt import format_text
from routelang.lint import lint

HEADER = """router r "nested"
import std.providers
target claude = anthropic("claude-3-sonnet")
target gpt4 = openai("gpt-4")
target turbo = openai("gpt-4-turbo")
target local = custom("llama", "https://llama.example.com")
"""


def compiled(body: str):
    return compile_text(HEADER + body, "n.route")


def codes(result) -> list[str]:
    return [d.code.code for d in result.diagnostics]


def test_a_split_of_fallback_chains_resolves_to_nested_ir():
    result = compiled("""
rule r priority 1 {
    split sticky by user.id {
        80% primary: (fallback claude, gpt4)
        20% canary: (fallback turbo, claude)
    }
}""")
    assert result.ok, result.render()
    split = result.router.rules[0].strategy
    assert isinstance(split, ir.Split) and split.sticky_by == "user.id"
    primary, canary = split.arms
    assert isinstance(primary, ir.NestedArm) and (primary.weight, primary.label) == (0.8, "primary")
    assert isinstance(canary, ir.NestedArm) and canary.strategy.kind == "fallback"
    assert isinstance(primary.strategy, ir.Fallback)
    assert [t.name for t in primary.strategy.candidates] == ["claude", "gpt4"]
    assert [t.name for t in split.targets] == ["claude", "gpt4", "turbo", "claude"]


def test_a_fallback_to_a_split_and_a_shadow_step():
    result = compiled("rule r priority 1 { fallback (split { 50% claude  50% gpt4 }), (route turbo shadow local), local }")
    assert result.ok, result.render()
    fallback = result.router.rules[0].strategy
    assert [m.kind if not isinstance(m, ir.Target) else "target" for m in fallback.candidates] == [
        "split", "shadow", "target"]


def test_only_split_arms_and_fallback_steps_may_be_strategies():
    result = compiled("rule r priority 1 { round_robin claude, (fallback gpt4, local) }")
    assert codes(result) == ["RL225"]
    text = result.render()
    assert "n.route:7:51: error[RL225]: `round_robin` chooses among targets, not strategies" in text
    assert "help: only `split` or `fallback` members may be strategies" in text


def test_a_plain_target_in_parentheses_is_a_syntax_error():
    result = compiled("rule r priority 1 { fallback (claude), gpt4 }")
    assert codes(result) == ["RL001"]


def test_nested_splits_are_checked_like_any_split():
    result = compiled("rule r priority 1 { fallback (split { 50% a: claude  40% b: gpt4 }), local }")
    assert codes(result) == ["RL202"]
    assert "split weights add up to 90%, not 100%" in result.render()
    result = compiled("rule r priority 1 { split { 50% a: (fallback claude)  50% a: gpt4 } }")
    # A repeated label is legal (Mixtrain accepts it) and linted (RL334), nested arms included.
    assert codes(result) == []
    assert [d.code.code for d in lint(result) if d.code.code == "RL334"] == ["RL334"]


def test_fmt_lays_out_nested_strategies_and_keeps_every_comment():
    text = HEADER + """rule r priority 1 { split sticky by user.id { 80% primary: (split { 70% p: (fallback claude, # first
    gpt4)  30% q: (fallback gpt4, claude) })   # the 80
  20% canary: (fallback turbo, claude) } }
"""
    out = format_text(text)
    assert out.endswith("""rule r priority 1 {
    split sticky by user.id {
        80% primary: (split {
            70% p: (fallback claude,  # first
                gpt4)
            30% q: (fallback gpt4, claude)
        })  # the 80
        20% canary: (fallback turbo, claude)
    }
}
""")
    assert format_text(out) == out
    assert compile_text(out).router == compile_text(text).router


def test_lint_looks_inside_nested_strategies():
    result = compiled("""
rule r priority 1 "r" { split { 50% a: (fallback claude)  50% b: (hybrid(cost 0.5, latency 0.2) gpt4, local) } }
""")
    assert result.ok, result.render()
    found = {d.code.name: d.message for d in lint(result)}
    assert found["single-target-fallback"] == "this fallback chain has only one target"
    assert found["hybrid-weight-sum"].startswith("hybrid weights add up to 0.7, not 1.0")
    # A nested fallback chain is a fallback rule for Mixtrain-parity lint (RL305).
    assert "no-fallback-rule" not in found


def test_explain_words_nested_strategies_and_each_targets_share():
    result = compiled("rule r priority 1 { split { 80% primary: (fallback claude, gpt4)  20% canary: turbo } }")
    data = json.loads(explain(result, "json"))
    rule = data["rules"][0]
    assert rule["strategy"]["words"] == "split 80% primary (fallback: 1. claude 2. gpt4) / 20% turbo"
    assert [(t["name"], t["role"], t["share"]) for t in rule["targets"]] == [
        ("claude", "primary in primary", 0.8), ("gpt4", "fallback 1 in primary", None), ("turbo", "split", 0.2)]
    assert rule["strategy"]["members"][0] == {
        "weight": 0.8, "label": "primary", "kind": "fallback", "words": "fallback: 1. claude 2. gpt4",
        "sticky_by": None, "salt": None, "failover": None, "cost_weight": None, "latency_weight": None,
        "reliability_weight": None}
    assert "**Strategy:** `split 80% primary (fallback: 1. claude 2. gpt4) / 20% turbo`" in explain(result, "markdown")
    assert "gpt4 (fallback 1 in primary)" in explain(result, "table")


def test_diff_sees_a_change_inside_a_nested_strategy():
    before = compiled("rule r priority 1 { split { 80% primary: (fallback claude, gpt4)  20% canary: turbo } }")
    reordered = compiled("rule r priority 1 { split { 80% primary: (fallback gpt4, claude)  20% canary: turbo } }")
    renamed = compiled("rule s priority 1 { split { 80% main: (fallback claude, gpt4)  20% canary: turbo } }")
    changes = diff(before.router, reordered.router).changes
    assert len(changes) == 1
    assert changes[0].old == "rule `r` (split: 80% (fallback: anthropic:claude-3-sonnet, openai:gpt-4), 20% openai:gpt-4-turbo)"
    assert diff(before.router, renamed.router).changes == []


def test_compile_warns_what_mixtrain_does_with_a_nested_strategy(tmp_path):
    path = tmp_path / "n.route"
    path.write_text(HEADER + "rule r priority 1 { fallback (split { 50% claude  50% gpt4 }), local }\n")
    run = subprocess.run([sys.executable, "-m", "routelang", "compile", str(path)], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0
    assert "Mixtrain cannot nest strategies; it gets one fallback chain of all 3 targets" in run.stderr
    config = json.loads(run.stdout)
    assert config["rules"][0]["x-routelang"]["strategy"]["members"][0]["kind"] == "split"


def test_import_writes_nested_strategies_back_and_ignores_a_broken_tree():
    from routelang.backends.json import lower
    from routelang.importers.mixtrain import import_config

    body = "rule r priority 1 { split { 80% primary: (fallback claude, gpt4)  20% canary: (fallback turbo, local) } }"
    config, _ = lower(compiled(body).router)
    text = import_config(config, "n.json")
    assert "80% primary: (fallback claude, gpt4)" in text and "20% canary: (fallback turbo, local)" in text
    assert lower(compile_text(text).router)[0]["rules"] == config["rules"]
    broken = json.loads(json.dumps(config))
    broken["rules"][0]["x-routelang"]["strategy"]["members"][0]["members"] = [0, 99]
    text = import_config(broken, "n.json")  # Mixtrain's view: a flat split of the four targets
    assert "(fallback" not in text and compile_text(text).ok


# ---- `no failover` --------------------------------------------------------------------------------

NO_FAILOVER = """router exp "experiment"
import std.providers
target a = openai("ma", "https://a.example.com/v1")
target b = openai("mb", "https://b.example.com/v1")
target c = openai("mc", "https://c.example.com/v1")
rule ab priority 10 { split   sticky by user.id   no   failover { 50% control: a  50% variant: b } }
rule nested priority 5 { fallback (split no failover { 50% a  50% b }), c }
"""


def test_no_failover_reaches_every_phase_and_comes_back_from_json():
    """Parsed, resolved (Split.failover), lowered (x-routelang `"failover": false`), loaded by the
    runtime, formatted, explained, diffed, and imported back from the JSON as `no failover`."""
    from routelang.backends.json import lower
    from routelang.importers.mixtrain import import_config
    from routelang.loader import load

    result = compile_text(NO_FAILOVER)
    assert result.ok, result.render()
    split = result.router.rules[0].strategy
    assert isinstance(split, ir.Split) and split.failover is False and split.sticky_by == "user.id"
    config, _notes = lower(result.router)
    assert config["rules"][0]["x-routelang"]["strategy"] == {
        "kind": "split", "sticky_by": "user.id", "salt": "ab", "failover": False}
    assert config["rules"][1]["x-routelang"]["strategy"]["members"][0]["failover"] is False
    router = load(config)
    assert [r.selection.failover for r in router.rules] == [False, True]
    assert router.rules[1].selection.members[0].failover is False
    formatted = format_text(NO_FAILOVER)
    assert "split sticky by user.id no failover {" in formatted and "(split no failover {" in formatted
    assert format_text(formatted) == formatted
    words = json.loads(explain(result, "json"))["rules"][0]["strategy"]
    assert words["failover"] is False and words["words"].endswith("no failover to another arm")
    imported = import_config(config, "exp.json")
    assert "split sticky by user.id no failover {" in imported and "split no failover {" in imported
    assert lower(compile_text(imported).router)[0]["rules"] == config["rules"]
    plain = compile_text(NO_FAILOVER.replace("no   failover ", "")).router
    [change] = [c for c in diff(plain, result.router).changes if c.old_rule == "ab"]
    assert "failover: true -> false" in change.changed and "no failover" in change.new
