"""`routelang diff`: semantic changes with witnesses, none for refactors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from routelang.cli import main
from routelang.compiler import compile_text
from routelang.diff import diff, render_text

OLD = """router prod "prod"
import std.providers
target big = modal("big", "https://big.modal.run")
target small = fal("small", "https://fal.run/small")
rule premium priority 100 "premium" { when tier == "premium" and credits > 10 route big }
rule free priority 50 "free" { when tier in ["free", "trial"] route small }
rule rest priority 0 "rest" { fallback small, big }
"""

REFACTORED = """# renamed definitions and rules, reformatted, equal-priority rules reordered
router production "prod"
import std.providers
target large_model = modal("big", "https://big.modal.run")
target small_model = fal("small", "https://fal.run/small")
condition paying = tier == "premium"

rule free_tier priority 50 "free" {
    when tier == "trial" or tier == "free"
    route small_model
}
rule paying_users priority 100 "premium" {
    when paying and not credits <= 10 and credits > 10
    route large_model
}
rule everything_else priority 0 "rest" { fallback small_model, large_model }
"""


def router(text):
    result = compile_text(text)
    assert result.ok, result.render()
    return result.router


def test_refactor_has_no_behavioural_change():
    outcome = diff(router(OLD), router(REFACTORED))
    assert outcome.changes == [] and outcome.exact
    assert render_text(outcome) == "no behavioural change"


def test_threshold_change_is_reported_with_a_witness_routed_by_both():
    new = OLD.replace("credits > 10", "credits > 20")
    old_router, new_router = router(OLD), router(new)
    [change] = diff(old_router, new_router).changes
    assert (change.old_rule, change.new_rule) == ("premium", "rest")
    assert change.witness["tier"] == "premium" and 10 < float(change.witness["credits"]) <= 20
    assert _route(old_router, change.witness) == "premium" and _route(new_router, change.witness) == "rest"


def test_target_change_and_unrouted_requests():
    new = OLD.replace('rule rest priority 0 "rest" { fallback small, big }\n', "").replace(
        'route small }', 'route big }')
    changes = {(c.old_rule, c.new_rule) for c in diff(router(OLD), router(new)).changes}
    assert changes == {("free", "free"), ("rest", None)}


def test_renaming_a_sticky_split_rule_changes_its_default_salt():
    base = OLD.replace("route small }", "split sticky by user.id { 50% small  50% big } }")
    renamed = base.replace("rule free ", "rule free2 ")
    [change] = diff(router(base), router(renamed)).changes
    assert (change.old_rule, change.new_rule) == ("free", "free2")
    salted = base.replace("sticky by user.id", 'sticky by user.id salt "s"')
    assert diff(router(salted), router(salted.replace("rule free ", "rule free2 "))).changes == []


def test_weight_change_is_a_change():
    base = OLD.replace("route small }", "split { 50% small  50% big } }")
    assert len(diff(router(base), router(base.replace("50% small  50% big", "60% small  40% big"))).changes) == 1


def test_a_file_with_a_regex_diffed_with_itself_is_proven_unchanged():
    """Identical conditions are equal without solving them: no caveat."""
    rx = OLD.replace('tier == "premium"', 'model =~ r"^gpt-\\d+"')
    outcome = diff(router(rx), router(rx))
    assert outcome.changes == [] and outcome.exact and outcome.caveats == []
    assert render_text(outcome) == "no behavioural change"


def test_a_weight_outside_a_split_is_no_change():
    """Only a split reads weights; a fallback chain with a new weight routes as before."""
    base = OLD.replace('target small = fal("small", "https://fal.run/small")',
                       'target small = fal("small", "https://fal.run/small") { weight 0.5 }')
    outcome = diff(router(OLD), router(base))
    assert outcome.changes == [] and outcome.exact


def test_inexact_analysis_says_so():
    """Two regexes the analysis cannot compare: whether `r2` is reachable is not proven."""
    text = """router r
import std.providers
rule r1 priority 2 { when model =~ r"^a\\d" route modal("big", "https://big.modal.run") }
rule r2 priority 1 { when model =~ r"^a[0-9]" route modal("small", "https://small.modal.run") }
"""
    outcome = diff(router(text), router(text.replace('"small"', '"small2"')))
    assert outcome.changes == [] and not outcome.exact
    assert render_text(outcome).startswith("no behavioural change found (not proven")
    assert [c.split(":")[0] for c in outcome.caveats] == ["`model`"]


def test_an_endpoint_change_shows_the_endpoint(snapshot):
    """Before/after lines that would read alike name the endpoints, and say what changed."""
    outcome = diff(router(OLD), router(OLD.replace("https://big.modal.run", "https://big-v2.modal.run")))
    assert {(c.old_rule, c.new_rule) for c in outcome.changes} == {("premium", "premium"), ("rest", "rest")}
    assert all(c.old != c.new for c in outcome.changes)
    assert all(c.changed == ['endpoint of modal:big: "https://big.modal.run" -> "https://big-v2.modal.run"']
               for c in outcome.changes)
    assert render_text(outcome) == snapshot


def test_every_change_between_two_rules_is_shown(snapshot):
    """A stricter threshold *and* a new exclusion move requests from `premium` to
    `rest`: two kinds of request, each with its own witness."""
    new = OLD.replace('tier == "premium" and credits > 10', 'tier == "premium" and credits > 20 and not beta == true')
    old_router, new_router = router(OLD), router(new)
    outcome = diff(old_router, new_router)
    assert [(c.old_rule, c.new_rule) for c in outcome.changes] == [("premium", "rest")] * 2
    threshold, beta = (c.witness for c in outcome.changes)
    assert 10 < float(threshold["credits"]) <= 20 and threshold.get("beta") is not True
    assert float(beta["credits"]) > 20 and beta["beta"] is True
    for c in outcome.changes:
        assert _route(old_router, c.witness) == "premium" and _route(new_router, c.witness) == "rest"
    assert render_text(outcome) == snapshot


def test_many_kinds_of_change_between_two_rules_are_capped_and_said():
    from routelang.diff import MAX_CHANGES_PER_PAIR

    values = [f"v{i}" for i in range(MAX_CHANGES_PER_PAIR + 3)]
    new = OLD.replace('tier == "premium" and credits > 10',
                      'tier == "premium" and credits > 10 and ' + " and ".join(f'k{v} != 1' for v in values))
    outcome = diff(router(OLD), router(new))
    assert [(c.old_rule, c.new_rule) for c in outcome.changes] == [("premium", "rest")] * MAX_CHANGES_PER_PAIR
    assert outcome.more == [("premium", "rest")]
    assert "~ and more kinds of request from rule `premium` to rule `rest`" in render_text(outcome)


def _route(r, request):
    from routelang.analysis import RouterAnalysis

    rule = RouterAnalysis(r).route(request)
    return rule.name if rule else None


def test_cli_exit_codes(tmp_path, snapshot):
    old, same, new, bad = (tmp_path / n for n in ("old.route", "same.route", "new.route", "bad.route"))
    old.write_text(OLD)
    same.write_text(REFACTORED)
    new.write_text(OLD.replace("credits > 10", "credits > 20"))
    bad.write_text(OLD.replace("route big", "route nowhere"))
    runner = CliRunner()
    assert runner.invoke(main, ["diff", str(old), str(same)]).exit_code == 0
    changed = runner.invoke(main, ["diff", str(old), str(new)])
    assert changed.exit_code == 1  # changes, as diff(1)
    assert changed.output == snapshot
    as_json = json.loads(runner.invoke(main, ["diff", str(old), str(new), "--format", "json"]).output)
    assert [c["old_rule"] for c in as_json["changes"]] == ["premium"] and as_json["exact"]
    assert runner.invoke(main, ["diff", str(old), str(bad)]).exit_code == 1
    assert runner.invoke(main, ["diff", str(old), str(tmp_path / "missing.route")]).exit_code == 2  # I/O


def test_diff_output_does_not_depend_on_string_hashing(tmp_path):
    """Set order follows PYTHONHASHSEED; the analysis must not."""
    import os
    import subprocess
    import sys

    rules = "\n".join(
        f'rule r{i} priority {100 - i} {{ when request.model =~ "^m{i}-\\\\d+" and user.tier == "t{i % 3}" '
        f'route {{ provider "p" model "m{i}" endpoint "https://m{i}.example.com" }} }}'
        for i in range(12)
    )
    old = tmp_path / "old.route"
    new = tmp_path / "new.route"
    old.write_text(f"router r\n{rules}\n")
    changed = rules.replace('model "m5"', 'model "m5b"')
    new.write_text(f"router r\n{changed}\n")
    outputs = set()
    for seed in ("1", "2", "3"):
        proc = subprocess.run([sys.executable, "-m", "routelang", "diff", str(old), str(new)],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.returncode == 1, proc.stderr
        outputs.add(proc.stdout)
    assert len(outputs) == 1


MUTATIONS = [("credits > 10", "credits > 20"), ("credits > 10", "credits >= 10"), ('["free", "trial"]', '["free"]'),
             ("priority 100", "priority 40"), ("route small }", "route big }"), ('tier == "premium"', 'tier != "free"'),
             ('"rest" { fallback small, big }', '"rest" { fallback big, small }'),
             ("credits > 10", "credits > 10 and not beta == true")]


def test_every_rule_pair_that_brute_force_finds_is_reported():
    """Over a grid of requests, every (old rule, new rule) pair whose behaviour
    differs for some request is among the changes, for every one or two edits."""
    import itertools

    from routelang.analysis import RouterAnalysis
    from routelang.diff import behaviour

    grid = []
    for tier, credits, beta in itertools.product([None, "premium", "free", "trial", "x"],
                                                 [None, 5, 10, 10.5, 15, 20, 25, "15"], [None, True, False]):
        grid.append({k: v for k, v in (("tier", tier), ("credits", credits), ("beta", beta)) if v is not None})
    for edits in [*itertools.combinations(MUTATIONS, 1), *itertools.combinations(MUTATIONS, 2)]:
        new = OLD
        for a, b in edits:
            new = new.replace(a, b, 1)
        old_router, new_router = router(OLD), router(new)
        outcome = diff(old_router, new_router)
        before, after = RouterAnalysis(old_router), RouterAnalysis(new_router)
        routed = [(before.route(q), after.route(q)) for q in grid]
        moved = {(a.name if a else None, b.name if b else None) for a, b in routed if behaviour(a) != behaviour(b)}
        assert outcome.exact
        assert moved <= {(c.old_rule, c.new_rule) for c in outcome.changes}, edits
