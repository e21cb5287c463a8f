"""`test` blocks: what each `expect` checks at run time, and that a test passes
or fails the same way on every run (a flaky expectation is a check error)."""

from __future__ import annotations

import pytest

import routelang
from routelang.compiler import compile_text
from routelang.runtime.testing import run_tests

TARGETS = """router r
target a = { provider "p" model "a" endpoint "https://a.example.com" }
target b = { provider "p" model "b" endpoint "https://b.example.com" }
target c = { provider "p" model "c" endpoint "https://c.example.com" }
rule sh priority 3 { when x == 1 route a shadow c }
rule fb priority 2 { when x == 2 fallback b, a, c }
rule one priority 1 { when x == 3 route b }
"""


def outcomes(tests: str) -> dict[str, tuple[bool, str]]:
    text = TARGETS + tests
    result = compile_text(text)
    assert result.ok, result.render()
    return {o.name: (o.passed, o.detail) for o in run_tests(routelang.load(text), result.router.tests)}


def test_every_selected_target_can_be_expected():
    got = outcomes("""
test "mirror" { request { x: 1 } expect rule sh targets [a] shadow c }
test "chain" { request { x: 2 } expect targets [b, a, c] }
test "first of a set" { request { x: 2 } expect target in [c, b] }
test "by model name" { request { x: 3 } expect target "b" }
""")
    assert got == {"mirror": (True, "rule 'sh'"), "chain": (True, "rule 'fb'"),
                   "first of a set": (True, "rule 'fb'"), "by model name": (True, "rule 'one'")}


def test_wrong_order_missing_shadow_and_wrong_set_fail_with_what_was_selected():
    got = outcomes("""
test "order" { request { x: 2 } expect targets [a, b, c] }
test "too short" { request { x: 2 } expect targets [b] }
test "shadow counts apart" { request { x: 1 } expect targets [a, c] }
test "no shadow" { request { x: 3 } expect shadow c }
test "wrong shadow" { request { x: 1 } expect shadow b }
test "not in the set" { request { x: 3 } expect target in [a, c] }
test "unrouted" { request { x: 9 } expect target a }
""")
    assert got == {
        "order": (False, "expected targets [a, b, c], got [b, a, c]"),
        "too short": (False, "expected targets [b], got [b, a, c]"),
        "shadow counts apart": (False, "expected targets [a, c], got [a]"),
        "no shadow": (False, "expected shadow 'c', got no shadow"),
        "wrong shadow": (False, "expected shadow 'b', got 'c'"),
        "not in the set": (False, "expected a target in [a, c], got 'b'"),
        "unrouted": (False, "expected a target, but no rule matched"),
    }


FLAKY = """router flaky
rule ab {
    split {
        50% a: { provider "modal" model "a" endpoint "https://a.modal.run" }
        50% b: { provider "modal" model "b" endpoint "https://b.modal.run" }
    }
}
test "goes to a" {
    request { user: { id: "u1" } }
    expect rule ab target a
}
"""


def test_the_issues_flaky_test_is_an_error_with_a_hint():
    """A test of a non-sticky 50/50 split passed 5 of 6 runs; now it never runs."""
    result = compile_text(FLAKY)
    [error] = [d for d in result.diagnostics if d.code.code == "RL219"]
    assert (error.span.line, error.span.column) == (10, 27)
    assert "would pass on some runs and fail on others" in error.message
    assert "`expect target in [a, b]`" in error.help and "sticky by" in error.help


@pytest.mark.parametrize("fixed", [
    "expect rule ab target in [a, b]",
    'split sticky by user.id {',
])
def test_the_remedies_pass_on_every_run(fixed):
    text = FLAKY.replace("expect rule ab target a", fixed) if fixed.startswith("expect") else FLAKY.replace(
        "split {", fixed)
    result = compile_text(text)
    assert result.ok, result.render()
    runs = {run_tests(routelang.load(text), result.router.tests)[0].passed for _ in range(30)}
    assert runs == {True}


def test_a_ranked_rule_with_many_targets_is_judged_on_every_first_target_and_order():
    """Past 7 targets not every order is tried; every target first still is, and
    an order `expect targets [...]` accepts when there is one."""
    names = [f"t{i}" for i in range(9)]
    defs = "".join(f'target {n} = {{ provider "p" model "{n}" endpoint "https://{n}.example.com" }}\n' for n in names)
    rule = f"rule fast {{ least_latency {', '.join(names)} }}\n"

    def errors(expect: str) -> list[str]:
        result = compile_text(f"router r\n{defs}{rule}test \"t\" {{ request {{ }} expect {expect} }}\n")
        return [d.message for d in result.diagnostics if d.code.code == "RL219"]

    assert errors("target t0") and errors(f"target in [{', '.join(names[:-1])}]")
    assert errors(f"targets [{', '.join(reversed(names))}]")      # one order of many: flaky
    assert not errors(f"target in [{', '.join(names)}]")
    assert not errors(f"targets [{', '.join(names[:-1])}, t0]")   # no order has t0 twice: fails every run
