"""Paths and plain helpers shared by the editor-support tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GRAMMAR = REPO / "grammar" / "routelang.lark"
EDITORS = REPO / "editors"
TM_GRAMMAR = EDITORS / "vscode" / "syntaxes" / "route.tmLanguage.json"
HARNESS = EDITORS / "test-harness"
VIM_RUNTIME = EDITORS / "vim"
SYNIDS_SCRIPT = Path(__file__).resolve().parent / "synids.vim"


def route_files() -> list[Path]:
    """Every example and stdlib module that exists now."""
    return sorted((REPO / "examples").glob("*.route")) + sorted((REPO / "stdlib").glob("*.route"))


def scopes_per_char(lines_tokens: list[list[dict]], text: str) -> list[list[list[str]]]:
    """[line][char] -> the TextMate scopes of that character (without source.route)."""
    out = []
    for tokens, line in zip(lines_tokens, text.split("\n")):
        row: list[list[str]] = [[] for _ in line]
        for token in tokens:
            for i in range(token["start"], min(token["end"], len(line))):
                row[i] = [s for s in token["scopes"] if s != "source.route"]
        out.append(row)
    return out


# One snippet with every token class, highlighted by each editor grammar in its own test.
TARGETED_SNIPPET = (
    'router prod "desc"  # comment\n'
    'import std.providers\n'
    'provider vllm { endpoint "http://${HOST}:${PORT:-8000}/v1" }\n'
    'target big-model = vllm("m") { timeout 500ms cost -0.5 per 1k }\n'
    'condition premium = user.tier == "p"\n'
    'rule "quoted \\"name\\"" priority 3 disabled {\n'
    '    when premium and request.model =~ r"^\\d+$" and user.n >= 1.5 and not user.route exists\n'
    '    split sticky by user.id salt "s" { 12.5% a: big-model  87.5% b: big-model }\n'
    '}\n'
    'test "t" { request { request: { model: "m" } } expect rule r target big-model }\n'
)
