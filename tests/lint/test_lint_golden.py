"""Golden files: every `# expect: name[, name]` comment names exactly the lint
findings on its line, and every finding is expected somewhere.

Witnesses are real: routing one with the runtime gives what the finding says.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import routelang
from routelang.compiler import compile_path
from routelang.diagnostics import render_text
from routelang.lint import LINT_RULES, lint

GOLDEN = Path(__file__).parent / "golden"
FILES = sorted(GOLDEN.glob("*.route"))
EXPECT = re.compile(r"#\s*expect:\s*([\w\-, ]+)")


def serving(path: Path) -> bool:
    """Golden files named served*.route are routers meant for `routelang serve` (`lint --serve`)."""
    return path.stem.startswith("served")


def expectations(path: Path) -> set[tuple[int, str]]:
    out = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = EXPECT.search(line)
        if match:
            out |= {(number, name.strip()) for name in match.group(1).split(",") if name.strip()}
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_golden_findings_match_expectations(path):
    result = compile_path(path)
    assert result.ok, result.render()
    found = {(d.span.line, d.code.name) for d in lint(result, serving(path))}
    assert found == expectations(path)


def test_every_lint_rule_has_a_golden_case():
    expected = set().union(*(expectations(p) for p in FILES))
    assert {name for _, name in expected} == set(LINT_RULES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_witnesses_route_as_claimed(path):
    result = compile_path(path)
    router = routelang.load(str(path))
    for diag in lint(result, serving(path)):
        if diag.witness is None:
            continue
        matched = router.matched_rule(diag.witness)
        if diag.code.name == "missing-catch-all":
            assert matched is None
        elif diag.code.name == "overlapping-rules":
            winner = diag.related[0].message.split("`")[1]
            assert matched.name == winner
        else:
            raise AssertionError(f"unexpected witness on {diag.code.name}")


def test_rendered_findings(snapshot):
    out = []
    for path in FILES:
        result = compile_path(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
        out += [render_text(d, result.sources) for d in lint(result, serving(path))]
    assert "\n\n".join(out) == snapshot
