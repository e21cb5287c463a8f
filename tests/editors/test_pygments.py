"""The Pygments lexer (routelang.highlight), used by Sphinx/MkDocs and pygmentize."""

from __future__ import annotations

from importlib.metadata import entry_points

from editor_support import TARGETED_SNIPPET
from pygments import highlight, lex
from pygments.formatters import HtmlFormatter
from pygments.lexers import find_lexer_class_by_name, get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String

from routelang.highlight import RoutelangLexer


def _char_types(text: str):
    """[line][char] -> token type, from lexing the whole text."""
    rows: list[list] = [[]]
    for ttype, value in lex(text, RoutelangLexer()):
        for ch in value:
            if ch == "\n":
                rows.append([])
            else:
                rows[-1].append(ttype)
    return rows


WANTED = {
    "comment": Comment,
    "string": String,
    "interpolation": String.Interpol,
    "escape": String.Escape,
    "percentage": Number,
    "duration": Number,
    "number": Number,
    "operator": Operator,
    "field": Name,
    "rule-name": [Name.Function, String],
    "target-name": Name.Class,
    "condition-name": Name.Class,
    "provider-name": Name.Class,
    "profile-name": Name.Class,
    "module": Name.Namespace,
}


def _classify(rows):
    def classify(expect, col):
        ttype = rows[expect.line - 1][col]
        if expect.category == "keyword":
            ok = ttype in Keyword or ttype in Operator.Word
        elif expect.category == "name":
            ok = ttype in Name
        elif expect.category == "interpolation":
            ok = ttype in String.Interpol
        else:
            wanted = WANTED[expect.category]
            wanted = wanted if isinstance(wanted, list) else [wanted]
            ok = any(ttype in w for w in wanted)
        return True if ok else f"got {ttype}"

    return classify


def test_no_error_tokens_and_round_trip(route_file):
    text = route_file.read_text(encoding="utf-8")
    tokens = list(lex(text, RoutelangLexer()))
    errors = [(t, v) for t, v in tokens if t in Error]
    assert not errors, errors[:10]
    joined = "".join(v for _, v in tokens)
    # Pygments adds a final newline when the text lacks one.
    assert joined == text or joined == text + "\n"


def test_every_file_matches_the_parser(route_file, expectations, check):
    text = route_file.read_text(encoding="utf-8")
    check(expectations(text), _classify(_char_types(text)), str(route_file))


def test_targeted_snippet(expectations, check):
    text = TARGETED_SNIPPET
    rows = _char_types(text)
    check(expectations(text), _classify(rows), "snippet")
    tokens = [(t, v) for t, v in lex(text, RoutelangLexer()) if v.strip()]
    assert (Operator, "=~") in tokens and (Operator, ">=") in tokens
    assert (String.Interpol, "${HOST}") in tokens and (String.Interpol, "${PORT:-8000}") in tokens
    line = text.split("\n")[6]
    assert rows[6][line.index("user.route") + 5] in Name  # a path segment, not the keyword


def test_lexer_metadata():
    assert RoutelangLexer.name == "routelang"
    assert set(RoutelangLexer.aliases) == {"route", "routelang"}
    assert RoutelangLexer.filenames == ["*.route"]


def test_registered_entry_point_finds_the_lexer():
    """After `pip install`, Pygments finds the lexer by name and by file name
    (entry point group `pygments.lexers` in pyproject.toml)."""
    names = {ep.name: ep.value for ep in entry_points(group="pygments.lexers")}
    assert names.get("routelang") == "routelang.highlight:RoutelangLexer", names
    assert isinstance(get_lexer_for_filename("rules.route"), RoutelangLexer)
    assert isinstance(get_lexer_by_name("route"), RoutelangLexer)
    assert find_lexer_class_by_name("routelang") is RoutelangLexer


def test_html_rendering():
    html = highlight('rule r { route t }  # hi\n', RoutelangLexer(), HtmlFormatter())
    assert '<span class="kd">rule</span>' in html
    assert '<span class="c1"># hi</span>' in html
