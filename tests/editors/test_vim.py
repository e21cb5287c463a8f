"""The Vim runtime files (editors/vim), checked with headless Vim's synID()."""

from __future__ import annotations

import shutil
import subprocess

from editor_support import TARGETED_SNIPPET, VIM_RUNTIME

STRINGY = {"routeString", "routeRawString", "routeRuleNameString", "routeEscape", "routeInterpolation"}
KEYWORD_GROUPS = {
    "routeDeclaration", "routeConditional", "routeStrategy", "routeSetting", "routeLogical",
    "routeWordOperator", "routeTestKeyword", "routeModifier", "routeType", "routeBoolean", "routeNull",
    "routeUnit",
}
WANTED = {
    "comment": {"routeComment", "routeTodo"},
    "string": STRINGY,
    "interpolation": {"routeInterpolation"},
    "escape": {"routeEscape"},
    "percentage": {"routePercent"},
    "duration": {"routeDuration"},
    "number": {"routeNumber"},
    "keyword": KEYWORD_GROUPS,
    "operator": {"routeOperator"},
    "field": {"routeField"},
    "rule-name": {"routeRuleName", "routeRuleNameString", "routeEscape", "routeInterpolation"},
    "target-name": {"routeTargetName"},
    "condition-name": {"routeConditionName"},
    "provider-name": {"routeProviderName"},
    "profile-name": {"routeProfileName"},
    "module": {"routeModuleName"},
}
# Highlight groups every group must end up linked to (standard Vim groups).
STANDARD = {"Comment", "Todo", "String", "SpecialChar", "PreProc", "Number", "Special", "Keyword",
            "Conditional", "Statement", "Label", "Operator", "StorageClass", "Type", "Boolean", "Constant",
            "Delimiter", "Identifier", "Function", "Include"}


def _classify(data):
    def classify(expect, col):
        group, linked = data["lines"][expect.line - 1][col]
        if expect.category == "name":
            ok = group not in KEYWORD_GROUPS and group != ""
        else:
            ok = group in WANTED[expect.category]
        return True if ok else f"got {group} ({linked})"

    return classify


def test_filetype_and_buffer_settings(vim_syntax, route_file):
    data = vim_syntax(route_file)
    assert data["filetype"] == "route"
    assert data["syntax"] == "route"
    assert data["commentstring"] == "# %s"
    assert data["indentexpr"].startswith("GetRouteIndent")


def test_every_file_matches_the_parser(vim_syntax, route_file, expectations, check):
    text = route_file.read_text(encoding="utf-8")
    data = vim_syntax(route_file)
    check(expectations(text), _classify(data), str(route_file))


def test_nothing_is_left_unhighlighted(vim_syntax, route_file):
    text = route_file.read_text(encoding="utf-8")
    data = vim_syntax(route_file)
    bare, unlinked = [], set()
    for n, (line, row) in enumerate(zip(text.split("\n"), data["lines"]), 1):
        for c, ch in enumerate(line):
            group, linked = row[c]
            if ch.isspace():
                continue
            if not group:
                bare.append(f"{n}:{c + 1} {ch!r}")
            elif group != "routeName" and linked not in STANDARD:
                unlinked.add((group, linked))
    assert not bare, "characters with no syntax group: " + ", ".join(bare[:20])
    assert not unlinked, unlinked


def test_targeted_snippet(vim_syntax, tmp_path, expectations, check):
    text = TARGETED_SNIPPET
    path = tmp_path / "snippet.route"
    path.write_text(text, encoding="utf-8")
    data = vim_syntax(path)
    check(expectations(text), _classify(data), "snippet")
    row = data["lines"][6]
    line = text.split("\n")[6]
    assert row[line.index("user.route") + 5][0] == "routeField"  # `route` as a path segment
    assert row[line.index("=~")][0] == row[line.index("=~") + 1][0] == "routeOperator"
    assert row[line.index(">=")][0] == "routeOperator"
    key_row, key_line = data["lines"][9], text.split("\n")[9]
    assert key_row[key_line.index("request: {")][0] == "routeKey"
    assert key_row[key_line.index("request {")][0] == "routeTestKeyword"
    assert data["lines"][2][text.split("\n")[2].index("PORT")][0] == "routeInterpolation"


def _reindent(tmp_path, text: str) -> str:
    path = tmp_path / "indent.route"
    path.write_text(text, encoding="utf-8")
    vim = shutil.which("vim")
    assert vim, "vim is required (apt-get install vim)"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    subprocess.run(
        [vim, "-Nu", "NONE", "-i", "NONE", "-es", "--cmd", f"set rtp^={VIM_RUNTIME}",
         "-c", "filetype plugin indent on", "-c", "edit", "-c", "normal! gg=G", "-c", "wq", str(path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    return path.read_text(encoding="utf-8")


def test_indent(tmp_path):
    messy = (
        'rule a priority 1 {\n'
        'when x.y == "{"  # {\n'
        'split {\n'
        '50% a: t\n'
        '50% b: t\n'
        '}\n'
        '}\n'
        'test "t" {\n'
        'request { user: {\n'
        'tier: "p" } }\n'
        'expect no match\n'
        '}\n'
    )
    expected = (
        'rule a priority 1 {\n'
        '    when x.y == "{"  # {\n'
        '    split {\n'
        '        50% a: t\n'
        '        50% b: t\n'
        '    }\n'
        '}\n'
        'test "t" {\n'
        '    request { user: {\n'
        '            tier: "p" } }\n'
        '    expect no match\n'
        '}\n'
    )
    assert _reindent(tmp_path, messy) == expected


def test_route_format_command(tmp_path):
    """:RouteFormat runs `routelang fmt -` over the buffer."""
    import sys
    from pathlib import Path

    from routelang.fmt import format_text

    messy = 'router x\nrule a {   route   custom("m","https://m.example.com") }\n'
    path = tmp_path / "fmt.route"
    path.write_text(messy, encoding="utf-8")
    vim = shutil.which("vim")
    assert vim, "vim is required (apt-get install vim)"
    bin_dir = str(Path(sys.executable).parent)  # where the `routelang` script is installed
    env = {"HOME": str(tmp_path), "PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [vim, "-Nu", "NONE", "-i", "NONE", "-es", "--cmd", f"set rtp^={VIM_RUNTIME}",
         "-c", "filetype plugin indent on", "-c", "edit", "-c", "RouteFormat", "-c", "wq", str(path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    formatted = path.read_text(encoding="utf-8")
    assert formatted == format_text(messy, str(path)), proc.stdout + proc.stderr
    assert formatted != messy
