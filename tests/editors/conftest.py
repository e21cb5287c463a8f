"""Shared fixtures for the editor-support tests.

Ground truth for every highlighter is the real parser: `lark_tokens` lexes a
file with the grammar's own LALR parser and contextual lexer (collecting every
token, comments included), so the tests know which words are keywords and
which are names in that spot (`request.model` is a path of two names).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from editor_support import GRAMMAR, HARNESS, REPO, SYNIDS_SCRIPT, TM_GRAMMAR, VIM_RUNTIME, route_files
from lark import Lark, Token
from lark.lexer import PatternRE, PatternStr

WORD = re.compile(r"[A-Za-z_]+")


def pytest_configure(config):
    # pytest-lsp's async fixtures and tests need pytest-asyncio's auto mode. It
    # is set here rather than in pyproject so it only concerns these tests'
    # needs; an explicit --asyncio-mode on the command line wins.
    if config.getoption("asyncio_mode", None) is None:
        config.option.asyncio_mode = "auto"


def pytest_generate_tests(metafunc):
    if "route_file" in metafunc.fixturenames:
        files = route_files()
        metafunc.parametrize("route_file", files, ids=[str(p.relative_to(REPO)) for p in files])


# ---- the grammar -------------------------------------------------------------------

@dataclass(frozen=True)
class GrammarVocabulary:
    keywords: frozenset[str]        # letters/underscores: router, when, string, true, ...
    operators: frozenset[str]       # ==, !=, =~, =, ...
    keyword_terminals: frozenset[str]  # terminal names whose tokens are keywords
    other_literals: frozenset[str]  # literals that are neither (1k)


def _alternatives(pattern: PatternRE) -> list[str] | None:
    """`(?:a|b|c)` -> [a, b, c] for a terminal that is a plain alternation of literals."""
    match = re.fullmatch(r"\(\?:((?:[^()|\\]+\|)*[^()|\\]+)\)", pattern.value)
    return match.group(1).split("|") if match else None


@pytest.fixture(scope="session")
def grammar_lark() -> Lark:
    return Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr")


@pytest.fixture(scope="session")
def vocabulary(grammar_lark) -> GrammarVocabulary:
    keywords, operators, terminals, other = set(), set(), set(), set()
    for terminal in grammar_lark.terminals:
        pattern = terminal.pattern
        if isinstance(pattern, PatternStr):
            literals = [pattern.value]
        elif isinstance(pattern, PatternRE):
            literals = _alternatives(pattern) or []
        else:  # pragma: no cover - lark has only these two
            literals = []
        if not literals:
            continue
        if all(WORD.fullmatch(lit) for lit in literals):
            keywords.update(literals)
            terminals.add(terminal.name)
        elif all(re.fullmatch(r"[=!<>~]+", lit) for lit in literals):
            operators.update(literals)
        elif all(re.fullmatch(r"[A-Za-z0-9_]+", lit) for lit in literals):
            other.update(literals)
    assert len(keywords) > 50, "the grammar's keywords were not found"
    return GrammarVocabulary(frozenset(keywords), frozenset(operators), frozenset(terminals), frozenset(other))


@dataclass(frozen=True)
class Tok:
    type: str
    value: str
    line: int        # 1-based
    column: int      # 1-based, in characters
    end_column: int  # exclusive

    def columns(self) -> range:
        """0-based character indexes of the token on its line."""
        return range(self.column - 1, self.end_column - 1)


@pytest.fixture(scope="session")
def lark_tokens(grammar_lark):
    """lark_tokens(text) -> every token the real parser reads, comments included, in order."""
    collected: list[Token] = []

    def keep(token: Token) -> Token:
        collected.append(token)
        return token

    callbacks = {t.name: keep for t in grammar_lark.terminals if t.name != "WS"}
    parser = Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr", lexer_callbacks=callbacks)

    def run(text: str) -> list[Tok]:
        collected.clear()
        parser.parse(text)
        out = []
        for t in collected:
            assert t.line == t.end_line, f"multi-line token {t!r}"
            out.append(Tok(t.type, str(t), t.line, t.column, t.end_column))
        return sorted(out, key=lambda t: (t.line, t.column))

    return run


# ---- TextMate (VS Code's tokenizer) --------------------------------------------------------

@pytest.fixture(scope="session")
def textmate():
    """textmate({name: text}) -> {name: [[{start, end, text, scopes}] per line]}, via vscode-textmate."""
    node = shutil.which("node")
    assert node, "node is required (apt-get install nodejs)"
    assert (HARNESS / "node_modules" / "vscode-textmate").is_dir(), (
        f"run `npm ci --prefix {HARNESS.relative_to(REPO)}` first"
    )

    def run(documents: dict[str, str]) -> dict:
        request = json.dumps({"grammar": str(TM_GRAMMAR), "documents": documents})
        proc = subprocess.run(
            [node, str(HARNESS / "tokenize.js")], input=request, capture_output=True, text=True,
            timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


@pytest.fixture(scope="session")
def textmate_files(textmate) -> dict:
    """Tokens of every example and stdlib file, tokenized in one node run."""
    return textmate({str(p): p.read_text(encoding="utf-8") for p in route_files()})


# ---- Vim ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def vim_syntax(tmp_path_factory):
    """vim_syntax(path) -> {"filetype", "syntax", "lines": [[[group, translated group] per char]]}."""
    vim = shutil.which("vim")
    assert vim, "vim is required (apt-get install vim)"
    out_dir = tmp_path_factory.mktemp("vim")
    counter = iter(range(1_000_000))

    def run(path: Path) -> dict:
        out = out_dir / f"synids-{next(counter)}.json"
        env = {"OUT": str(out), "HOME": str(out_dir), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        proc = subprocess.run(
            [vim, "-Nu", "NONE", "-i", "NONE", "-es", "--cmd", "set encoding=utf-8", "--cmd", f"set rtp^={VIM_RUNTIME}",
             "-S", str(SYNIDS_SCRIPT), str(path)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert out.exists(), f"vim wrote nothing (rc={proc.returncode}): {proc.stdout}{proc.stderr}"
        return json.loads(out.read_text(encoding="utf-8"))

    return run


# ---- what each character should look like -------------------------------------------------

ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}\"]*)?\}")
ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)")
NUMBER_TERMINALS = {"SIGNED_NUMBER_TOKEN", "SIGNED_INT_TOKEN", "INT"}


@dataclass(frozen=True)
class Expect:
    category: str   # comment string interpolation escape percentage duration number keyword
    #                 operator name field rule-name target-name condition-name provider-name
    #                 profile-name module
    line: int       # 1-based
    columns: range  # 0-based character indexes
    text: str


@pytest.fixture(scope="session")
def expectations(lark_tokens, vocabulary):
    """expectations(text) -> what the parser says each token is, for highlighters to agree with."""

    def run(text: str) -> list[Expect]:
        tokens = lark_tokens(text)
        out: list[Expect] = []

        def add(category: str, tok: Tok, start: int | None = None, end: int | None = None):
            base = tok.column - 1
            lo = base if start is None else base + start
            hi = tok.end_column - 1 if end is None else base + end
            out.append(Expect(category, tok.line, range(lo, hi), tok.value[lo - base:hi - base]))

        in_import = False
        for i, tok in enumerate(tokens):
            prev = tokens[i - 1] if i > 0 else None
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            after = tokens[i + 2] if i + 2 < len(tokens) else None
            if tok.type == "IMPORT":
                in_import = True
            elif tok.type not in ("NAME", "DOT"):
                in_import = False
            if tok.type == "COMMENT":
                add("comment", tok)
            elif tok.type == "STRING":
                add("string", tok)
                raw = tok.value.startswith("r")
                for m in ENV_REF.finditer(tok.value):
                    add("interpolation", tok, m.start(), m.end())
                if not raw:
                    for m in ESCAPE.finditer(tok.value[1:-1]):
                        add("escape", tok, m.start() + 1, m.end() + 1)
                if prev is not None and prev.type == "RULE":
                    add("rule-name", tok, 1, len(tok.value) - 1)
            elif tok.type == "PERCENT":
                add("percentage", tok)
            elif tok.type == "DURATION":
                add("duration", tok)
            elif tok.type in NUMBER_TERMINALS:
                add("number", tok)
            elif tok.type in vocabulary.keyword_terminals or tok.value in vocabulary.other_literals:
                add("keyword", tok)
            elif tok.value in vocabulary.operators:
                add("operator", tok)
            elif tok.type == "NAME":
                add("name", tok)
                if in_import:
                    add("module", tok)
                elif prev is not None and prev.type == "RULE":
                    add("rule-name", tok)
                elif prev is not None and prev.type == "TARGET" and nxt is not None and nxt.type == "EQUAL":
                    add("target-name", tok)
                elif prev is not None and prev.type == "CONDITION" and nxt is not None and nxt.type == "EQUAL":
                    add("condition-name", tok)
                elif prev is not None and prev.type == "PROVIDER":
                    add("provider-name", tok)
                elif prev is not None and prev.type == "PROFILE":
                    add("profile-name", tok)
                elif (nxt is not None and nxt.type == "DOT" and after is not None and after.type == "NAME") or (
                    prev is not None and prev.type == "DOT"
                ):
                    add("field", tok)
        return out

    return run


def check_expectations(expects: list[Expect], classify, where: str) -> None:
    """classify(expect, char_index) -> True when the highlighter agrees; collects all mismatches."""
    problems = []
    for e in expects:
        for col in e.columns:
            verdict = classify(e, col)
            if verdict is not True:
                problems.append(f"{where}:{e.line}:{col + 1}: {e.category} {e.text!r}: {verdict}")
                break
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:30])


@pytest.fixture(scope="session")
def check():
    return check_expectations
