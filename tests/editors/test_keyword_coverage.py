"""Every keyword of grammar/routelang.lark must be highlighted by the TextMate grammar
and the Vim syntax file: a new keyword added to the grammar fails these tests until
the editor files learn it."""

from __future__ import annotations

import json
import re

from editor_support import TM_GRAMMAR, VIM_RUNTIME

KEYWORDISH = ("keyword.", "storage.", "support.type.", "constant.language.")
VIM_SYNTAX = VIM_RUNTIME / "syntax" / "route.vim"
VIM_KEYWORD_GROUPS = {
    "routeDeclaration", "routeConditional", "routeStrategy", "routeSetting", "routeLogical",
    "routeWordOperator", "routeTestKeyword", "routeModifier", "routeType", "routeBoolean", "routeNull",
}


def _patterns(node, out):
    """Every (regex, scope names) in a TextMate grammar tree."""
    if isinstance(node, dict):
        names = [node.get("name", "")]
        for key in ("captures", "beginCaptures"):
            names += [c.get("name", "") for c in node.get(key, {}).values()]
        for key in ("match", "begin"):
            if key in node:
                out.append((node[key], " ".join(names)))
        for value in node.values():
            _patterns(value, out)
    elif isinstance(node, list):
        for value in node:
            _patterns(value, out)
    return out


def tm_missing(grammar: dict, words, scope_prefixes) -> list[str]:
    """The words no pattern with one of the scopes matches in full."""
    compiled = []
    for regex, names in _patterns(grammar, []):
        if any(n.startswith(scope_prefixes) for n in names.split()):
            compiled.append(re.compile(regex))
    return sorted(w for w in words if not any(r.fullmatch(w) for r in compiled))


def vim_keywords(text: str) -> dict[str, str]:
    """word -> group, from the `call s:Keywords('group', [...])` lines of the syntax file."""
    text = re.sub(r"\n\s*\\", " ", text)  # join continuation lines
    out = {}
    for group, body in re.findall(r"call s:Keywords\('(\w+)',\s*\[([^\]]*)\]\)", text):
        for word in re.findall(r"'([^']*)'", body):
            out[word] = group
    return out


def test_textmate_grammar_has_every_keyword(vocabulary):
    grammar = json.loads(TM_GRAMMAR.read_text(encoding="utf-8"))
    missing = tm_missing(grammar, vocabulary.keywords, KEYWORDISH)
    assert not missing, f"keywords missing from {TM_GRAMMAR.name}: {missing}"


def test_textmate_grammar_has_every_operator_and_literal(vocabulary):
    grammar = json.loads(TM_GRAMMAR.read_text(encoding="utf-8"))
    assert vocabulary.operators >= {"==", "!=", ">=", "<=", ">", "<", "=~", "="}
    assert not tm_missing(grammar, vocabulary.operators, ("keyword.operator.",))
    assert vocabulary.other_literals == {"1k"}
    assert not tm_missing(grammar, {"per 1k"}, ("keyword.other.unit",))


def test_vim_syntax_has_every_keyword(vocabulary):
    found = vim_keywords(VIM_SYNTAX.read_text(encoding="utf-8"))
    missing = sorted(vocabulary.keywords - found.keys())
    assert not missing, f"keywords missing from {VIM_SYNTAX.name}: {missing}"
    assert set(found.values()) <= VIM_KEYWORD_GROUPS


def test_the_checks_notice_a_missing_keyword(vocabulary):
    """Drop `salt` from copies of both files: the coverage checks must report it."""
    assert "salt" in vocabulary.keywords
    tm_text = TM_GRAMMAR.read_text(encoding="utf-8").replace("|salt|", "|")
    assert tm_missing(json.loads(tm_text), vocabulary.keywords, KEYWORDISH) == ["salt"]
    vim_text = VIM_SYNTAX.read_text(encoding="utf-8").replace(" 'salt',", "")
    assert sorted(vocabulary.keywords - vim_keywords(vim_text).keys()) == ["salt"]


def test_each_keyword_alone_is_a_keyword_in_vscode(vocabulary, textmate):
    words = sorted(vocabulary.keywords)
    lines = textmate({"k": "\n".join(words)})["k"]
    wrong = []
    for word, tokens in zip(words, lines):
        if len(tokens) != 1 or not any(s.startswith(KEYWORDISH) for s in tokens[0]["scopes"]):
            wrong.append((word, [t["scopes"] for t in tokens]))
    assert not wrong, wrong


def test_each_keyword_alone_is_a_keyword_in_vim(vocabulary, vim_syntax, tmp_path):
    words = sorted(vocabulary.keywords)
    path = tmp_path / "keywords.route"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    data = vim_syntax(path)
    wrong = []
    for word, row in zip(words, data["lines"]):
        groups = {group for group, _ in row}
        if not groups <= VIM_KEYWORD_GROUPS:
            wrong.append((word, groups))
    assert not wrong, wrong
