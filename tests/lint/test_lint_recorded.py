"""Lint and diff output on generated routers, compared with outputs recorded
before the analysis was made faster (the guarded first-match index, the
search skipped for rules a cheap witness already reaches): the speed-ups
must not change a single finding, message, related location or witness.

    python tests/lint/test_lint_recorded.py   # re-record (only for an intended change)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import generated_routers

from routelang.compiler import compile_text
from routelang.diff import diff
from routelang.lint import lint

RECORDED = Path(__file__).parent / "recorded"
VARIED = [(50, 1), (80, 11), (100, 2), (120, 7), (150, 3), (200, 4)]
BENCH = [50, 200]


def lint_output(text: str) -> list[dict]:
    result = compile_text(text, "generated.route")
    assert result.ok, result.render()
    return [d.to_json() for d in lint(result)]


def diff_output(old: str, new: str) -> dict:
    before, after = compile_text(old, "old.route"), compile_text(new, "new.route")
    outcome = diff(before.router, after.router)
    return {"changes": [c.to_json() for c in outcome.changes], "exact": outcome.exact, "caveats": outcome.caveats}


def cases() -> dict[str, object]:
    """name -> a thunk computing the output to compare."""
    out = {}
    for rules, seed in VARIED:
        out[f"varied-{rules}-{seed}"] = lambda r=rules, s=seed: lint_output(generated_routers.varied(r, s))
    for rules in BENCH:
        out[f"bench-{rules}"] = lambda r=rules: lint_output(generated_routers.bench(r))
        out[f"bench-diff-{rules}"] = lambda r=rules: diff_output(generated_routers.bench(r),
                                                                 generated_routers.bench(r, bump=r // 2 + 2))
    out["varied-diff-100"] = lambda: diff_output(generated_routers.varied(100, 2), generated_routers.varied(100, 21))
    return out


CASES = cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_equals_recorded(name):
    recorded = json.loads((RECORDED / f"{name}.json").read_text())
    assert CASES[name]() == recorded


if __name__ == "__main__":
    RECORDED.mkdir(exist_ok=True)
    for name, compute in CASES.items():
        (RECORDED / f"{name}.json").write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
        print("recorded", name)
