"""The TextMate grammar, run through vscode-textmate + vscode-oniguruma (VS Code's own
tokenizer) by editors/test-harness/tokenize.js."""

from __future__ import annotations

import json
import re

import pytest
from editor_support import TM_GRAMMAR, route_files, scopes_per_char

KEYWORDISH = ("keyword.", "storage.", "support.type.", "constant.language.")


def _has(scopes, prefix):
    return any(s == prefix or s.startswith(prefix + ".") or s.startswith(prefix) and prefix.endswith(".")
               for s in scopes)


def _scope_check(category: str, scopes: list[str]):
    wanted = {
        "comment": "comment.line.number-sign.route",
        "string": "string.quoted.",
        "interpolation": "meta.interpolation.route",
        "escape": "constant.character.escape.route",
        "percentage": "constant.numeric.percentage.route",
        "duration": "constant.numeric.duration.route",
        "number": "constant.numeric.route",
        "operator": "keyword.operator.",
        "field": "variable.other.field.route",
        "rule-name": "entity.name.function.rule.route",
        "target-name": "entity.name.type.target.route",
        "condition-name": "entity.name.function.condition.route",
        "provider-name": "entity.name.type.provider.route",
        "profile-name": "entity.name.type.profile.route",
        "module": "entity.name.namespace.module.route",
    }
    if category == "keyword":
        ok = any(s.startswith(KEYWORDISH) for s in scopes)
    elif category == "name":
        ok = bool(scopes) and not any(s.startswith(KEYWORDISH) for s in scopes)
    else:
        prefix = wanted[category]
        ok = any(s.startswith(prefix) for s in scopes)
    return True if ok else f"got {scopes}"


def test_grammar_file_is_valid_json_with_scope_name():
    grammar = json.loads(TM_GRAMMAR.read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.route"
    assert grammar["patterns"]
    # every include points at an existing repository entry
    text = TM_GRAMMAR.read_text(encoding="utf-8")
    for name in re.findall(r'"include":\s*"#([^"]+)"', text):
        assert name in grammar["repository"], name


def test_every_file_matches_the_parser(route_file, textmate_files, expectations, check):
    text = route_file.read_text(encoding="utf-8")
    chars = scopes_per_char(textmate_files[str(route_file)], text)
    check(expectations(text), lambda e, col: _scope_check(e.category, chars[e.line - 1][col]), str(route_file))


def test_nothing_is_left_unscoped(route_file, textmate_files):
    text = route_file.read_text(encoding="utf-8")
    chars = scopes_per_char(textmate_files[str(route_file)], text)
    bare = [
        f"{n}:{c + 1} {line[c]!r}"
        for n, (line, row) in enumerate(zip(text.split("\n"), chars), 1)
        for c in range(len(line))
        if not line[c].isspace() and not row[c]
    ]
    assert not bare, "characters with only source.route: " + ", ".join(bare[:20])


def test_examples_and_stdlib_exist():
    files = route_files()
    assert any(p.parent.name == "examples" for p in files)
    assert any(p.parent.name == "stdlib" for p in files)


def _tokens(textmate, text):
    """[(line, token text, scopes without source.route)] for non-blank tokens."""
    lines = textmate({"t": text})["t"]
    return [
        (n, t["text"], [s for s in t["scopes"] if s != "source.route"])
        for n, tokens in enumerate(lines, 1)
        for t in tokens
        if t["text"].strip()
    ]


def _scopes_of(tokens, text, line=None):
    found = [s for (n, t, s) in tokens if t == text and (line is None or n == line)]
    assert found, f"no token {text!r} in {[t for _, t, _ in tokens]}"
    return found[0]


def test_longer_operators_win(textmate):
    src = 'condition c = a.b >= 1 and a.c == "x" and a.d =~ r"y" and a.e != 2 and a.f <= 3 and a.g > 4 and a.h < 5'
    tokens = _tokens(textmate, src)
    texts = [t for _, t, _ in tokens]
    for op in (">=", "==", "=~", "!=", "<=", ">", "<", "="):
        assert op in texts, (op, texts)
    assert "keyword.operator.regex.route" in _scopes_of(tokens, "=~")
    assert "keyword.operator.assignment.route" in _scopes_of(tokens, "=")
    for op in (">=", "==", "!=", "<=", ">", "<"):
        assert "keyword.operator.comparison.route" in _scopes_of(tokens, op)


def test_interpolation_has_its_own_scope(textmate):
    tokens = _tokens(textmate, 'provider p { endpoint "http://${HOST}:${PORT:-8000}/v1" }')
    assert "variable.other.env.route" in _scopes_of(tokens, "HOST")
    assert "variable.other.env.route" in _scopes_of(tokens, "PORT")
    assert "keyword.operator.default.route" in _scopes_of(tokens, ":-")
    assert "string.unquoted.default.route" in _scopes_of(tokens, "8000")
    for _, text, scopes in tokens[:-1]:  # the last token closes the provider block
        if text in ("${", "HOST", "}", "PORT", ":-", "8000"):
            assert "meta.interpolation.route" in scopes and "string.quoted.double.route" in scopes
    plain = _scopes_of(tokens, "http://")
    assert "meta.interpolation.route" not in plain and "string.quoted.double.route" in plain


def test_escapes_and_raw_strings(textmate):
    tokens = _tokens(textmate, 'rule r { when a.b == "x\\"y\\\\" and a.c =~ r"^\\d+$" route t }')
    assert "constant.character.escape.route" in _scopes_of(tokens, '\\"')
    assert "constant.character.escape.route" in _scopes_of(tokens, "\\\\")
    raw = _scopes_of(tokens, "^\\d+$")
    assert "string.quoted.double.raw.route" in raw and "constant.character.escape.route" not in raw
    assert "storage.type.string.raw.route" in _scopes_of(tokens, "r", line=1) or any(
        "storage.type.string.raw.route" in s for _, t, s in tokens)
    # the string ended at the real quote: what follows is code again
    assert "keyword.operator.logical.route" in _scopes_of(tokens, "and")
    assert "keyword.control.strategy.route" in _scopes_of(tokens, "route")


def test_numbers_durations_percentages(textmate):
    src = ("profile p { timeout 500ms retries 2 circuit_breaker { cooldown 1.5s } }\n"
           "target t = { weight 0.25 cost -0.5 per 1k timeout 2m }\n"
           "rule r priority -3 { split { 12.5% a: t  87.5% b: t } }\n"
           "rule q { when x.y > 1e3 and x.z < 1h route t }")
    tokens = _tokens(textmate, src)
    for text in ("500ms", "1.5s", "2m", "1h"):
        number, unit = re.match(r"([0-9.]+)(\D+)", text).groups()
        assert any(t == number and "constant.numeric.duration.route" in s for _, t, s in tokens), text
        assert any(t == unit and "keyword.other.unit.time.route" in s for _, t, s in tokens), text
    for text in ("12.5", "87.5"):
        assert "constant.numeric.percentage.route" in _scopes_of(tokens, text)
    for text in ("2", "0.25", "-0.5", "-3", "1e3"):
        assert "constant.numeric.route" in _scopes_of(tokens, text), text
    assert "keyword.other.unit.route" in _scopes_of(tokens, "1k")


def test_comments(textmate):
    tokens = _tokens(textmate, '# top\nrule r { route t }  # trailing "not a string"\ntarget t = { label "#not a comment" }')
    assert "comment.line.number-sign.route" in _scopes_of(tokens, " top")
    assert "comment.line.number-sign.route" in _scopes_of(tokens, ' trailing "not a string"')
    label = _scopes_of(tokens, "#not a comment")
    assert "string.quoted.double.route" in label and not any(s.startswith("comment") for s in label)


def test_keywords_inside_paths_and_keys_are_names(textmate):
    src = ('rule r { when request.model == "m" and user.route exists route t }\n'
           'test "t" { request { request: { model: "m" } } expect rule r target t }')
    tokens = _tokens(textmate, src)
    assert "variable.other.field.route" in _scopes_of(tokens, "model", line=1)
    first_route, second_route = [s for _, t, s in tokens if t == "route"]
    assert "variable.other.field.route" in first_route
    assert "keyword.control.strategy.route" in second_route
    assert "keyword.other.test.route" in _scopes_of(tokens, "request", line=2)
    key_scopes = [s for n, t, s in tokens if t == "request" and n == 2][1]
    assert not any(s.startswith("keyword") for s in key_scopes)


def test_definition_names(textmate):
    src = ('router prod\nimport std.providers\nprovider vllm { endpoint "x" }\nprofile fast { timeout 1s }\n'
           'target big-model = vllm("m")\ncondition premium = user.tier == "p"\n'
           'rule hot priority 1 { when premium route big-model }\nrule "quoted \\"name\\"" { route big-model }')
    tokens = _tokens(textmate, src)
    assert "entity.name.namespace.router.route" in _scopes_of(tokens, "prod")
    assert "entity.name.namespace.module.route" in _scopes_of(tokens, "std.providers")
    assert "entity.name.type.provider.route" in _scopes_of(tokens, "vllm", line=3)
    assert "entity.name.function.preset.route" in _scopes_of(tokens, "vllm", line=5)
    assert "entity.name.type.profile.route" in _scopes_of(tokens, "fast")
    assert "entity.name.type.target.route" in _scopes_of(tokens, "big-model", line=5)
    assert "entity.name.function.condition.route" in _scopes_of(tokens, "premium", line=6)
    assert "entity.name.function.rule.route" in _scopes_of(tokens, "hot")
    assert "entity.name.function.rule.route" in _scopes_of(tokens, "quoted ")
    assert "constant.character.escape.route" in _scopes_of(tokens, '\\"')


def test_unterminated_string_stops_at_end_of_line(textmate):
    tokens = _tokens(textmate, 'target t = { label "oops\nrule r { route t }')
    assert "keyword.declaration.rule.route" in _scopes_of(tokens, "rule", line=2)


@pytest.mark.parametrize("snippet_file", ["snippets/route.json"])
def test_snippets_tokenize_cleanly(textmate, snippet_file):
    """Each snippet, with its placeholders filled with defaults, highlights without bare characters."""
    snippets = json.loads((TM_GRAMMAR.parent.parent / snippet_file).read_text(encoding="utf-8"))
    for required in ("rule", "split", "fallback", "test"):
        assert any(s["prefix"] == required for s in snippets.values()), required
    docs = {}
    for name, snippet in snippets.items():
        body = "\n".join(snippet["body"])
        body = re.sub(r"\$\{\d+:([^}]*)\}", r"\1", body)
        body = re.sub(r"\$\d+", "", body).replace("\t", "    ")
        docs[name] = body
    result = textmate(docs)
    for name, lines in result.items():
        for tokens, line in zip(lines, docs[name].split("\n")):
            for t in tokens:
                if t["text"].strip():
                    assert len(t["scopes"]) > 1, (name, line, t)
