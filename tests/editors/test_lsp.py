"""The language server (routelang.lsp), driven over stdio by pytest-lsp."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest_lsp
from editor_support import REPO, route_files
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from routelang.compiler import compile_text
from routelang.diagnostics import has_errors
from routelang.fmt import format_text
from routelang.lint import lint
from routelang.lsp import OPERATORS

SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "routelang.lsp"])

DEMO = '''router demo "Demo"
import std.providers
import std.profiles
import "common.route"

schema {
    user.tier: enum("free", "premium")
    user.id: string
}

# The big model for paying users.
target big = modal("big-model", "https://big.modal.run") { use fast }
condition paying = user.tier == "premium"

rule premium priority 10 {
    when paying
    route big
}
rule rest priority 1 {
    fallback big, shared
}
test "premium goes big" {
    request { user: { tier: "premium", id: "u1" } }
    expect rule premium target big
}
'''

COMMON = '''# Shared fallback for every router.
import std.providers
target shared = custom("s", "https://s.example.com")
'''


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):
    lsp_client.diagnostics = History()
    lsp_client.init_result = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=client_capabilities("visual-studio-code"))
    )
    yield
    await lsp_client.shutdown_session()


def _pos(text: str, needle: str, occurrence: int = 0, offset: int = 0) -> types.Position:
    """The position of the `occurrence`-th `needle` in `text` (UTF-16 columns), plus `offset` characters."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    index += offset
    line = text.count("\n", 0, index)
    col_text = text[text.rfind("\n", 0, index) + 1:index]
    return types.Position(line=line, character=len(col_text.encode("utf-16-le")) // 2)


class History(dict):
    """client.diagnostics that also keeps every publication, in order."""

    def __init__(self):
        super().__init__()
        self.published: list[tuple[str, list]] = []

    def __setitem__(self, uri, diagnostics):
        self.published.append((uri, list(diagnostics)))
        super().__setitem__(uri, diagnostics)

    def count(self, uri: str) -> int:
        return sum(u == uri for u, _ in self.published)


def _compiles(path: Path, text: str) -> bool:
    result = compile_text(text, str(path), path)
    return result.router is not None and not has_errors(result.diagnostics)


async def _settled(client: LanguageClient, path: Path, text: str, before: int,
                   timeout: float = 60.0) -> list[types.Diagnostic]:
    """The diagnostics once the server has published everything for `text`:
    the checker's at once, then (for a file that compiles) lint findings."""
    uri = path.as_uri()
    wanted = before + (2 if _compiles(path, text) else 1)
    deadline = time.monotonic() + timeout
    while client.diagnostics.count(uri) < wanted:
        assert time.monotonic() < deadline, f"diagnostics never settled: {client.diagnostics.published[-3:]}"
        await asyncio.sleep(0.02)
    return client.diagnostics[uri]


async def _open(client: LanguageClient, path: Path, text: str) -> list[types.Diagnostic]:
    path.write_text(text, encoding="utf-8")
    before = client.diagnostics.count(path.as_uri())
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=path.as_uri(), language_id="route", version=1, text=text)
        )
    )
    return await _settled(client, path, text, before)


def _send_change(client: LanguageClient, path: Path, text: str, version: int) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def _change(client: LanguageClient, path: Path, text: str, version: int) -> list[types.Diagnostic]:
    before = client.diagnostics.count(path.as_uri())
    _send_change(client, path, text, version)
    return await _settled(client, path, text, before)


def _demo(tmp_path: Path) -> Path:
    (tmp_path / "common.route").write_text(COMMON, encoding="utf-8")
    return tmp_path / "demo.route"


# ---- diagnostics ------------------------------------------------------------------------

async def test_clean_file_has_no_errors(client: LanguageClient, tmp_path):
    diags = await _open(client, _demo(tmp_path), DEMO)
    assert not [d for d in diags if d.severity == types.DiagnosticSeverity.Error], diags


async def test_diagnostics_have_codes_ranges_and_related(client: LanguageClient, tmp_path):
    text = (
        'router x\nimport std.providers\n'
        'rule a { when user.a =~ "(" route t }\n'
        'target t = custom("a", "https://a.example.com")\n'
        'target t = custom("b", "https://b.example.com")\n'
    )
    path = tmp_path / "x.route"
    diags = await _open(client, path, text)
    by_code = {d.code: d for d in diags}
    regex = by_code["RL204"]
    assert regex.source == "routelang"
    assert regex.severity == types.DiagnosticSeverity.Error
    assert regex.range.start == _pos(text, '"("')
    assert regex.range.end == _pos(text, '"("', offset=3)
    assert "regular expression" in regex.message
    assert regex.data == {"name": "invalid-regex"}
    dup = by_code["RL103"]
    assert dup.range.start == _pos(text, "t =", occurrence=1)
    [related] = dup.related_information
    assert related.location.uri == path.as_uri()
    assert related.location.range.start == _pos(text, "t =", occurrence=0)
    assert "first defined" in related.message


async def test_an_unknown_target_hides_none_of_the_rules_other_errors(client: LanguageClient, tmp_path):
    text = ('router z\nimport std.providers\ntarget small = custom("s", "https://s.example.com")\n'
            'rule a { when credits > "lots" and prompt =~ "(" route smal }\n')
    diags = await _open(client, tmp_path / "z.route", text)
    assert sorted(d.code for d in diags if d.severity == types.DiagnosticSeverity.Error) == ["RL101", "RL201", "RL204"]


async def test_diagnostics_follow_changes(client: LanguageClient, tmp_path):
    path = tmp_path / "y.route"
    bad = 'router y\nimport std.providers\nrule a { route nowhere }\n'
    diags = await _open(client, path, bad)
    unknown = [d for d in diags if d.code == "RL101"]
    assert unknown and "nowhere" in unknown[0].message
    assert "help:" in unknown[0].message or unknown[0].message.startswith("unknown")

    good = bad.replace("route nowhere", 'route custom("m", "https://m.example.com")')
    await _change(client, path, good, version=2)
    assert not [d for d in client.diagnostics[path.as_uri()] if d.severity == types.DiagnosticSeverity.Error]

    broken = good.replace("rule a {", "rule a {{")
    await _change(client, path, broken, version=3)
    assert any(d.code == "RL001" for d in client.diagnostics[path.as_uri()])


async def test_problem_in_imported_file_shows_on_the_import(client: LanguageClient, tmp_path):
    (tmp_path / "broken.route").write_text('target shared = nosuch("s")\n', encoding="utf-8")
    text = 'router z\nimport "broken.route"\nrule a { route shared }\n'
    diags = await _open(client, tmp_path / "z.route", text)
    [imported] = [d for d in diags if d.code == "RL101"]
    assert imported.range.start.line == 1
    assert "nosuch" in imported.message
    assert imported.related_information[0].location.uri == (tmp_path / "broken.route").as_uri()
    assert imported.related_information[0].location.range.start.line == 0


async def test_positions_are_utf16(client: LanguageClient, tmp_path):
    text = 'router u\nimport std.providers\nrule a { when user.name == "🚀🚀" and user.b =~ "(" route custom("m", "https://m.example.com") }\n'
    diags = await _open(client, tmp_path / "u.route", text)
    [regex] = [d for d in diags if d.code == "RL204"]
    assert regex.range.start == _pos(text, '"("')  # the emoji count as two UTF-16 units each


async def test_every_example_matches_the_compiler(client: LanguageClient, tmp_path):
    """The editor shows exactly what the compiler and the linter report."""
    files = route_files()
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        before = client.diagnostics.count(path.as_uri())
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=path.as_uri(), language_id="route", version=1, text=text)
            )
        )
        await _settled(client, path, text, before)
        result = compile_text(text, str(path.relative_to(REPO)), path)
        expected = list(result.diagnostics)
        if result.router is not None:
            expected += lint(result)
        own = sorted(d.code.code for d in expected if d.span.file == str(path.relative_to(REPO)))
        got = sorted(d.code for d in client.diagnostics[path.as_uri()])
        assert set(own) <= set(got), (path, own, got)
        assert set(got) <= {d.code.code for d in expected}, (path, got)


# ---- hover -------------------------------------------------------------------------------

async def test_hover_on_names(client: LanguageClient, tmp_path):
    path = _demo(tmp_path)
    await _open(client, path, DEMO)
    uri = path.as_uri()

    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=_pos(DEMO, "route big", offset=7))
    )
    assert hover is not None
    # .route syntax, as `routelang fmt` prints the definition (not Python reprs)
    assert 'target big = modal("big-model", "https://big.modal.run") { use fast }' in hover.contents.value
    assert "The big model for paying users." in hover.contents.value
    assert hover.range.start == _pos(DEMO, "route big", offset=6)

    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=_pos(DEMO, "modal(", offset=1))
    )
    assert "provider modal" in hover.contents.value
    assert "Modal" in hover.contents.value  # the stdlib doc comment

    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=_pos(DEMO, "use fast", offset=5))
    )
    assert "profile fast" in hover.contents.value

    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri),
                          position=_pos(DEMO, "user.tier ==", offset=6))
    )
    assert "user.tier" in hover.contents.value and "enum" in hover.contents.value

    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=_pos(DEMO, "fallback"))
    )
    assert "try targets in order" in hover.contents.value


# ---- definitions and references ------------------------------------------------------------

async def _definition(client, uri, position) -> types.Location:
    result = await client.text_document_definition_async(
        types.DefinitionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=position)
    )
    assert result is not None
    return result[0] if isinstance(result, list) else result


async def test_go_to_definition(client: LanguageClient, tmp_path):
    path = _demo(tmp_path)
    await _open(client, path, DEMO)
    uri = path.as_uri()

    target = await _definition(client, uri, _pos(DEMO, "route big", offset=7))
    assert target.uri == uri and target.range.start == _pos(DEMO, "big =")

    condition = await _definition(client, uri, _pos(DEMO, "when paying", offset=6))
    assert condition.uri == uri and condition.range.start == _pos(DEMO, "paying =")

    provider = await _definition(client, uri, _pos(DEMO, "modal("))
    assert provider.uri == (REPO / "stdlib" / "providers.route").as_uri()
    stdlib_text = (REPO / "stdlib" / "providers.route").read_text(encoding="utf-8")
    assert provider.range.start == _pos(stdlib_text, "provider modal", offset=9)

    profile = await _definition(client, uri, _pos(DEMO, "use fast", offset=4))
    assert profile.uri == (REPO / "stdlib" / "profiles.route").as_uri()

    shared = await _definition(client, uri, _pos(DEMO, "shared"))
    assert shared.uri == (tmp_path / "common.route").as_uri()
    assert shared.range.start == _pos(COMMON, "shared =")

    imported = await _definition(client, uri, _pos(DEMO, '"common.route"', offset=2))
    assert imported.uri == (tmp_path / "common.route").as_uri()
    std = await _definition(client, uri, _pos(DEMO, "import std.profiles", offset=1))
    assert std.uri == (REPO / "stdlib" / "profiles.route").as_uri()

    field = await _definition(client, uri, _pos(DEMO, "user.tier ==", offset=6))
    assert field.range.start == _pos(DEMO, "user.tier:")


async def test_find_references(client: LanguageClient, tmp_path):
    path = _demo(tmp_path)
    await _open(client, path, DEMO)
    result = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            position=_pos(DEMO, "big ="),
            context=types.ReferenceContext(include_declaration=True),
        )
    )
    starts = {(loc.range.start.line, loc.range.start.character) for loc in result}
    assert (12 - 1, 7) in starts  # the definition
    assert _pos(DEMO, "route big", offset=6).line in {line for line, _ in starts}
    assert _pos(DEMO, "fallback big", offset=9).line in {line for line, _ in starts}


# ---- document symbols ------------------------------------------------------------------------

async def test_document_symbols(client: LanguageClient, tmp_path):
    path = _demo(tmp_path)
    await _open(client, path, DEMO)
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=path.as_uri()))
    )
    kinds = {s.name: s.kind for s in symbols}
    assert kinds["premium"] == types.SymbolKind.Function
    assert kinds["rest"] == types.SymbolKind.Function
    assert kinds["big"] == types.SymbolKind.Object
    assert kinds["paying"] == types.SymbolKind.Boolean
    assert kinds["premium goes big"] == types.SymbolKind.Method
    assert kinds["user.tier"] == types.SymbolKind.Field
    assert "shared" not in kinds and "modal" not in kinds  # only this file's definitions
    rule = next(s for s in symbols if s.name == "premium")
    assert rule.selection_range.start == _pos(DEMO, "premium priority")
    assert rule.range.start.line <= rule.selection_range.start.line
    assert rule.range.end.line >= _pos(DEMO, "route big").line  # the whole rule


# ---- completion ------------------------------------------------------------------------------

async def _complete(client, uri, position) -> dict[str, types.CompletionItem]:
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=position)
    )
    items = result.items if isinstance(result, types.CompletionList) else result
    return {item.label: item for item in items}


async def test_completion(client: LanguageClient, tmp_path):
    text = DEMO.replace("    route big\n", "    route big\n    \n")
    path = _demo(tmp_path)
    await _open(client, path, text)
    uri = path.as_uri()
    blank = _pos(text, "    \n", offset=4)
    items = await _complete(client, uri, blank)
    for keyword in ("route", "fallback", "split", "when", "lowest_cost", "contains"):
        assert items[keyword].kind == types.CompletionItemKind.Keyword
    for op in ("==", "=~", ">="):
        assert items[op].kind == types.CompletionItemKind.Operator
    assert items["big"].kind == types.CompletionItemKind.Variable
    assert items["paying"].kind == types.CompletionItemKind.Function
    assert "shared" in items and "modal" in items and "fast" in items
    assert items["user.tier"].kind == types.CompletionItemKind.Field

    # after `user.`: the schema's fields under `user`
    dotted = text.replace("    route big\n    \n", "    route big\n    when user.\n")
    await _change(client, path, dotted, version=2)
    fields = await _complete(client, uri, _pos(dotted, "when user.", offset=10))
    assert set(fields) == {"tier", "id"}
    assert all(f.kind == types.CompletionItemKind.Field for f in fields.values())

    # after a field and a space: the operators first
    operand = text.replace("    route big\n    \n", "    route big\n    when user.tier \n")
    await _change(client, path, operand, version=3)
    ranked = sorted((await _complete(client, uri, _pos(operand, "when user.tier ", offset=15))).values(),
                    key=lambda item: item.sort_text or item.label)
    assert {item.label for item in ranked[:len(OPERATORS)]} == set(OPERATORS)

    # after `use`: only profiles
    profiles_text = dotted.replace("    when user.\n", "").replace("{ use fast }", "{ use  }")
    await _change(client, path, profiles_text, version=4)
    profiles = await _complete(client, uri, _pos(profiles_text, "{ use  }", offset=6))
    assert {"fast", "resilient"} <= set(profiles)
    assert all(item.kind == types.CompletionItemKind.Struct for item in profiles.values())


# ---- formatting ------------------------------------------------------------------------------

async def test_formatting(client: LanguageClient, tmp_path):
    """Formatting goes through routelang.fmt.format_text."""
    path = _demo(tmp_path)
    messy = DEMO.replace("    route big\n", "        route    big\n")
    await _open(client, path, messy)
    assert client.init_result.capabilities.document_formatting_provider

    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            options=types.FormattingOptions(tab_size=4, insert_spaces=True),
        )
    )
    expected = format_text(messy, str(path))
    assert expected != messy  # the messy indentation gets fixed
    [edit] = edits
    assert edit.range.start == types.Position(0, 0)
    assert edit.range.end == types.Position(messy.count("\n"), 0)  # the whole document
    assert edit.new_text == expected

    # text that does not parse is left alone
    broken = messy.replace("rule rest", "rule rest {{")
    await _change(client, path, broken, version=2)
    assert await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            options=types.FormattingOptions(tab_size=4, insert_spaces=True),
        )
    ) is None


# ---- diagnostics in two steps ----------------------------------------------------------------

LINTED = '''router l "linted"
import std.providers
target a = modal("a", "https://a.modal.run")
rule first priority 2 "the first" { when user.tier == "pro" route a }
rule second priority 1 "covered by the first" { when user.tier == "pro" route a }
rule rest priority 0 "catch-all" { fallback a, modal("b", "https://b.modal.run") }
'''


async def test_checker_diagnostics_first_then_lint_findings(client: LanguageClient, tmp_path):
    path = tmp_path / "l.route"
    diags = await _open(client, path, LINTED)
    published = [d for uri, d in client.diagnostics.published if uri == path.as_uri()]
    checker, linted = published[-2:]
    assert not any(d.code == "RL310" for d in checker)  # the checker's step has no lint findings
    unreachable = [d for d in linted if d.code == "RL310"]
    assert unreachable and unreachable[0].range.start == _pos(LINTED, "second")
    assert list(diags) == linted


async def test_stale_lint_findings_are_never_published(client: LanguageClient, tmp_path):
    """A lint still running (or queued) when a newer change arrives is
    dropped: only the newest text's findings are published."""
    sys.path.insert(0, str(REPO / "tests" / "lint"))
    import generated_routers

    path = tmp_path / "big.route"
    big = generated_routers.bench(1000)  # its lint takes long and finds RL310 (unreachable rules)
    path.write_text(big, encoding="utf-8")
    before = client.diagnostics.count(path.as_uri())
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=path.as_uri(), language_id="route", version=1, text=big)))
    while client.diagnostics.count(path.as_uri()) == before:  # the checker's step: the lint has started
        await asyncio.sleep(0.01)
    small = LINTED.replace('rule second priority 1 "covered by the first" { when user.tier == "pro"',
                           'rule second priority 1 { when user.tier == "team"')
    diags = await _change(client, path, small, version=2)
    codes = {d.code for d in diags}
    assert "RL304" in codes and "RL310" not in codes  # the new text's findings
    published = [d for uri, d in client.diagnostics.published[before:] if uri == path.as_uri()]
    assert not any(d.code == "RL310" for diags in published for d in diags), "a stale lint was published"


TENANTS = '''router tenants
import std.providers
target gpt4 = openai("gpt-4") { compliance ["gdpr"] }
target azure_gpt4 = { provider "azure" model "gpt-4" endpoint "https://h.openai.azure.com" compliance ["gdpr", "hipaa"] }

workspace ws-health "Clinics" {
    budget 50 USD per day
    compliance ["hipaa"]
}

rule health priority 10 { when workspace.id == "ws-health" route azure_gpt4 }
rule rest { fallback gpt4, azure_gpt4 }
'''


async def test_hover_on_a_workspace_shows_its_limits_and_reachable_targets(client: LanguageClient, tmp_path):
    path = tmp_path / "tenants.route"
    diags = await _open(client, path, TENANTS)
    assert not [d for d in diags if d.severity == types.DiagnosticSeverity.Error]
    uri = path.as_uri()
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=_pos(TENANTS, "ws-health \"Clinics\"", offset=2)))
    assert "workspace ws-health: Clinics" in hover.contents.value
    assert "budgets: 50 USD per day (calendar, UTC)" in hover.contents.value
    assert "may use: azure_gpt4" in hover.contents.value
    assert "may not use gpt4: it lacks compliance hipaa" in hover.contents.value
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=_pos(TENANTS, "budget 50", offset=2)))
    assert "per calendar period" in hover.contents.value


async def test_a_restriction_violation_is_published_at_the_target(client: LanguageClient, tmp_path):
    text = TENANTS.replace('rule health priority 10 { when workspace.id == "ws-health" route azure_gpt4 }\n', "")
    diags = await _open(client, tmp_path / "tenants.route", text)
    [error] = [d for d in diags if d.code == "RL241"]
    assert "rule `rest` can send a request of workspace `ws-health` to target `gpt4`" in error.message
