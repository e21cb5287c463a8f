"""How long `lint` and `diff` take on a generated 1,000-rule router.

    .venv/bin/python benchmarks/lint_diff.py [RULES]

Prints seconds for compiling, linting and diffing (against a copy with one
threshold changed), and each as a ratio to compiling the same file measured
in this run (so figures compare across machines). Goal: under 5 s each.
"""

from __future__ import annotations

import sys
import time

from routelang.compiler import compile_text
from routelang.diff import diff
from routelang.lint import lint

REGIONS = ["us", "eu", "ap", "sa", "af"]


def generate(rules: int, bump: int | None = None) -> str:
    """Rules of the shapes real routers have: per-customer pins, tier and region
    combinations, numeric thresholds, an `or`, a regex, a catch-all."""
    lines = ['router bench "generated"', "import std.providers",
             'target a = modal("a", "https://a.modal.run")', 'target b = fal("b", "https://fal.run/b")']
    for i in range(rules - 1):
        priority = rules - i
        threshold = 100_000 - i * 10 if i != bump else 100_000 - i * 10 + 7
        region = REGIONS[i % len(REGIONS)]
        kind = i % 4
        if kind == 0:
            when = f'user.id == "customer-{i}"'
        elif kind == 1:
            when = f'user.tier == "tier-{i % 40}" and user.region == "{region}"'
        elif kind == 2:
            when = f'user.credits > {threshold} and request.type in ["chat", "image"]'
        else:
            when = f'request.model =~ r"^m{i}-\\d+" or user.tier == "t{i}"'
        lines.append(f'rule r{i} priority {priority} "rule {i}" {{ when {when} route {"a" if i % 2 else "b"} }}')
    lines.append('rule default priority 0 "catch-all" { fallback a, b }')
    return "\n".join(lines) + "\n"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    rules = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    text, changed = generate(rules), generate(rules, bump=rules // 2 + 2)
    compile_s, result = timed(lambda: compile_text(text, "bench.route"))
    assert result.ok, result.render()
    lint_s, findings = timed(lambda: lint(result))
    other = compile_text(changed, "bench2.route")
    diff_s, outcome = timed(lambda: diff(result.router, other.router))
    print(f"{rules} rules")
    print(f"compile  {compile_s:7.3f} s  (baseline)")
    print(f"lint     {lint_s:7.3f} s  ({lint_s / compile_s:5.1f}x compile)  {len(findings)} findings")
    print(f"diff     {diff_s:7.3f} s  ({diff_s / compile_s:5.1f}x compile)  {len(outcome.changes)} change(s)")


if __name__ == "__main__":
    main()
