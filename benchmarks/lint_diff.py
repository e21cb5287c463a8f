"""How long `lint` and `diff` take on a generated 1,000-rule router.

    .venv/bin/python benchmarks/lint_diff.py [RULES]

Prints seconds for compiling, linting and diffing (against a copy with one
threshold changed), and each as a ratio to compiling the same file measured
in this run (so figures compare across machines). Goal: lint under 1 s at
1,000 rules. The router is `tests/lint/generated_routers.bench` (customer
pins, tier/region combinations, numeric thresholds, an `or` with a regex, a
catch-all).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "lint"))
from generated_routers import bench as generate  # the shape the recorded-output tests also cover

from routelang.compiler import compile_text
from routelang.diff import diff
from routelang.lint import lint


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
