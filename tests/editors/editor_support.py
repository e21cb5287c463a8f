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
