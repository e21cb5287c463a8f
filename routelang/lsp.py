"""The routelang language server (LSP over stdio), built on pygls.

    routelang lsp            # or: python -m routelang.lsp

Features:
  * diagnostics on open, change and save, with codes, help text and related
    locations, in two steps: the checker's as soon as the change is compiled,
    then the same plus lint findings, computed on a worker thread and dropped
    if a newer change arrived meanwhile (so a slow lint never delays the
    checker's errors, and stale findings are never shown);
  * hover on names: the definition's first line in `.route` syntax and its
    doc comment;
  * go to definition for targets, conditions, providers, profiles, schema
    fields and imports (jumps to the imported file);
  * find references;
  * document symbols (rules, targets, conditions, tests, providers, profiles,
    schema fields);
  * formatting through `routelang.fmt`;
  * completion of keywords, operators, defined names and schema fields.

Everything goes through `routelang.compiler.compile_text`, so the editor shows
exactly what `routelang check` prints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from . import diagnostics as rl_diagnostics
from .compiler import CompileResult, compile_text
from .explain import policy_data, policy_lines
from .fmt import FormatError, format_text
from .lint import lint
from .source import Span
from .vocab import operators, strategies
from .vocab import settings as target_settings

SERVER_NAME = "routelang"
SERVER_VERSION = "0.1.0"


# ---- the language's vocabulary -------------------------------------------------

@lru_cache(maxsize=1)
def grammar_keywords() -> tuple[str, ...]:
    """Every keyword of the grammar: its string literals made of letters and `_`."""
    from .parser import grammar_text

    text = re.sub(r"//[^\n]*", "", grammar_text())
    found = set(re.findall(r'"([A-Za-z_]+)"', text))
    return tuple(sorted(found))


OPERATORS = (*operators.SYMBOLS, "=")  # `=` as in `target NAME = ...`

KEYWORD_DOCS = {
    "router": "`router NAME [\"description\"]`: this file is a router (files without one are modules).",
    "import": "`import std.providers` loads a standard module; `import \"file.route\"` loads a file.",
    "target": "`target NAME = preset(\"model\", \"endpoint\") { settings }` names a destination.",
    "condition": "`condition NAME = expr` names a reusable condition.",
    "provider": "`provider NAME { settings }` declares a provider preset, callable as `NAME(\"model\", ...)`.",
    "profile": "`profile NAME { settings }` bundles settings; apply with `use NAME`.",
    "rule": "`rule NAME [priority N] [\"description\"] [enabled|disabled] { when expr  strategy }`.",
    "test": "`test \"name\" { request {...} expect rule R target T }` checks routing decisions.",
    "expect": "`expect rule R | no match | target T | target in [A, B] | targets [A, B] | shadow S`: "
              "what the test's request must get; it must hold on every run.",
    "when": "`when expr`: the condition under which a rule applies.",
    "schema": "`schema { field.path: type }` declares the request fields conditions may use.",
    "defaults": "`defaults { settings }`: settings every target of the router starts from.",
    "use": "`use PROFILE`: apply a profile's settings at this point.",
    "workspace": "`workspace NAME [\"description\"] { budget ... limit ... allow ... require ... }`: a tenant;"
                 " a request's key gives it `workspace.id` (docs/tenants.md).",
    "agent": "`agent NAME { prefer T, ... fallback T, ... capabilities [...] require ... }`: an agent type;"
             " its requests carry `agent.id`.",
    "budget": "`budget 100 USD per day, 500 per week, 2000 per month`: spend per calendar period in the"
              " policy's time zone.",
    "limit": "`limit 600 requests per minute, 200k tokens per minute`: rates (token bucket).",
    "allow": "`allow targets [a, b]` | `allow providers [\"openai\"]` | `allow tags [\"eu\"]`: the targets"
             " its requests may reach; the checker proves no rule sends them elsewhere (RL241).",
    "prefer": "`prefer T, ...`: an agent's preferred targets (with `fallback`, the ones it may use).",
    "require": "`require success >= 95%, latency p95 <= 5s, cost per 1k tokens <= 0.01 [otherwise refuse |"
               " otherwise serve best]`: a target breaking one leaves selection for these requests.",
    "timezone": "`timezone \"Europe/Berlin\"`: the zone of the calendar days, weeks and months of budgets"
                " (default UTC).",
}
# Each target setting documents itself from vocab/settings.py (`provider` keeps its declaration doc).
for _setting in target_settings.TABLE:
    _where = (f"`x-routelang.{_setting.json_field}`" if _setting.json_place == target_settings.EXTENSION
              else f"Mixtrain's `{_setting.json_field}`")
    KEYWORD_DOCS.setdefault(_setting.surface, f"`{_setting.surface}`: the target's {_setting.phrase} ({_where}).")
# Strategy keywords, from vocab/strategies.py (`route` covers single and shadow).
for _defn in strategies.STRATEGIES.values():
    _usage = f"`{_defn.syntax}`: {_defn.summary}."
    KEYWORD_DOCS[_defn.keyword] = f"{KEYWORD_DOCS[_defn.keyword]}  \n{_usage}" if _defn.keyword in KEYWORD_DOCS else _usage

_SEVERITY = {
    rl_diagnostics.Severity.ERROR: types.DiagnosticSeverity.Error,
    rl_diagnostics.Severity.WARNING: types.DiagnosticSeverity.Warning,
    rl_diagnostics.Severity.NOTE: types.DiagnosticSeverity.Information,
}

_SYMBOL_KIND = {
    "rule": types.SymbolKind.Function,
    "target": types.SymbolKind.Object,
    "condition": types.SymbolKind.Boolean,
    "test": types.SymbolKind.Method,
    "provider": types.SymbolKind.Class,
    "profile": types.SymbolKind.Struct,
    "schema_field": types.SymbolKind.Field,
}

_COMPLETION_KIND = {
    "rule": types.CompletionItemKind.Function,
    "target": types.CompletionItemKind.Variable,
    "condition": types.CompletionItemKind.Function,
    "test": types.CompletionItemKind.Event,
    "provider": types.CompletionItemKind.Class,
    "profile": types.CompletionItemKind.Struct,
    "schema_field": types.CompletionItemKind.Field,
}

SYNTAX_ERROR_CODE = rl_diagnostics.SYNTAX_ERROR.code

# Which names make sense after which keyword.
_NAME_CONTEXT = {
    "use": ("profile",),
    "shadow": ("target", "provider"),
    # A target name follows the keyword of a strategy written `keyword T1, T2` (not `split {`, `hybrid(`).
    **{s.keyword: ("target", "provider") for s in strategies.STRATEGIES.values() if s.layout in ("route", "list")},
    "when": ("condition", "schema_field"),
    "and": ("condition", "schema_field"),
    "or": ("condition", "schema_field"),
    "not": ("condition", "schema_field"),
    "by": ("schema_field",),
}


# ---- positions -------------------------------------------------------------------

def _units(text: str, encoding: str) -> int:
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8"))
    if encoding == types.PositionEncodingKind.Utf32:
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _chars(line: str, units: int, encoding: str) -> int:
    """The code-point index in `line` of a position given in client units."""
    count = 0
    for index, char in enumerate(line):
        if count >= units:
            return index
        count += _units(char, encoding)
    return len(line)


def _contains(span: Span, line: int, column: int) -> bool:
    """Whether the 1-based (line, column) lies in the span (end inclusive, for the cursor after a name)."""
    if span.line <= 0:
        return False
    if (line, column) < (span.line, span.column):
        return False
    return (line, column) <= (span.end_line, span.end_column)


def _span_size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_column - span.column)


# ---- per-document state ------------------------------------------------------------

@dataclass
class DocumentState:
    uri: str
    name: str
    path: Path | None
    text: str
    version: int | None
    result: CompileResult
    # The last result that had symbols, for completion and hover while the
    # text does not parse.
    good: CompileResult
    diagnostics: list[rl_diagnostics.Diagnostic] = field(default_factory=list)


class RoutelangServer(LanguageServer):
    """One method per LSP feature (registered in `__init__`), on top of the
    per-document state. Diagnostics come in two steps: the checker's, published
    as soon as a change is compiled, then the same plus lint findings, computed
    on a worker thread and published only if no newer change has arrived."""

    def __init__(self):
        super().__init__(SERVER_NAME, SERVER_VERSION)
        self.documents: dict[str, DocumentState] = {}
        # One worker: lints run in the order of the changes, so a stale one never overtakes a fresh one.
        self.lint_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routelang-lint")
        features = [
            (types.TEXT_DOCUMENT_DID_OPEN, self.did_open, None),
            (types.TEXT_DOCUMENT_DID_CHANGE, self.did_change, None),
            (types.TEXT_DOCUMENT_DID_SAVE, self.did_save, None),
            (types.TEXT_DOCUMENT_DID_CLOSE, self.did_close, None),
            (types.WORKSPACE_DID_CHANGE_WATCHED_FILES, self.watched_files_changed, None),
            (types.TEXT_DOCUMENT_HOVER, self.hover, None),
            (types.TEXT_DOCUMENT_DEFINITION, self.definition, None),
            (types.TEXT_DOCUMENT_REFERENCES, self.references, None),
            (types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, self.document_symbols, None),
            (types.TEXT_DOCUMENT_COMPLETION, self.completion, types.CompletionOptions(trigger_characters=["."])),
            (types.TEXT_DOCUMENT_FORMATTING, self.formatting, None),
        ]
        for name, handler, options in features:
            # pygls marks the function it registers; a bound method cannot take attributes, a partial can.
            self.feature(name, options)(functools.partial(handler))

    # -- encoding --------------------------------------------------------------------
    @property
    def encoding(self) -> str:
        return self.workspace.position_encoding or types.PositionEncodingKind.Utf16

    # -- compiling ---------------------------------------------------------------------
    def analyse(self, uri: str) -> DocumentState:
        """Compile the document (the checker, not the linter) and make it the current state."""
        document = self.workspace.get_text_document(uri)
        path_text = to_fs_path(uri) if uri.startswith("file:") else None
        path = Path(path_text) if path_text else None
        name = str(_display(path)) if path else uri
        text = document.source
        result = compile_text(text, name, path)
        previous = self.documents.get(uri)
        parsed = not any(d.code.code == SYNTAX_ERROR_CODE for d in result.diagnostics)
        good = result if (parsed or previous is None or not previous.good.symbols) else previous.good
        state = DocumentState(uri, name, path, text, document.version, result, good,
                              rl_diagnostics.sort_diagnostics(result.diagnostics))
        self.documents[uri] = state
        return state

    def is_current(self, state: DocumentState) -> bool:
        return self.documents.get(state.uri) is state

    def publish(self, state: DocumentState) -> None:
        items = [self.to_lsp_diagnostic(state, d) for d in state.diagnostics]
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=state.uri, version=state.version, diagnostics=[i for i in items if i is not None]))

    async def refresh(self, uri: str) -> None:
        """Publish the checker's diagnostics now, then the lint findings when
        they are ready, unless the document changed meanwhile."""
        state = self.analyse(uri)
        self.publish(state)
        if state.result.router is None or rl_diagnostics.has_errors(state.result.diagnostics):
            return  # lint reports nothing on a file that does not compile
        findings = await asyncio.get_running_loop().run_in_executor(self.lint_worker, self.lint_if_current, state)
        if findings is None or not self.is_current(state):
            return  # a newer change arrived: its own lint will publish
        state.diagnostics = rl_diagnostics.sort_diagnostics([*state.result.diagnostics, *findings])
        self.publish(state)

    def lint_if_current(self, state: DocumentState) -> list[rl_diagnostics.Diagnostic] | None:
        """On the worker thread: the lint findings, or None (not computed) when
        the document changed since `state` was compiled."""
        return lint(state.result) if self.is_current(state) else None

    def state_for(self, uri: str) -> DocumentState:
        state = self.documents.get(uri)
        if state is None or state.text != self.workspace.get_text_document(uri).source:
            state = self.analyse(uri)
        return state

    # -- document sync ---------------------------------------------------------------------
    async def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        await self.refresh(params.text_document.uri)

    async def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        await self.refresh(params.text_document.uri)

    async def did_save(self, params: types.DidSaveTextDocumentParams) -> None:
        await self.refresh(params.text_document.uri)

    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        self.documents.pop(params.text_document.uri, None)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))

    async def watched_files_changed(self, params: types.DidChangeWatchedFilesParams) -> None:
        # An imported file changed on disk: check every open document again.
        await asyncio.gather(*(self.refresh(uri) for uri in list(self.documents)))

    # -- locations -----------------------------------------------------------------------
    def lines_of(self, state: DocumentState, file: str) -> list[str]:
        if file == state.name:
            return state.text.split("\n")
        for result in (state.result, state.good):
            source = result.sources.get(file)
            if source is not None:
                return source.lines
        return []

    def path_of(self, state: DocumentState, file: str) -> Path | None:
        if file == state.name:
            return state.path
        for result in (state.result, state.good):
            source = result.sources.get(file)
            if source is not None and source.path is not None:
                return source.path
        return None

    def uri_of(self, state: DocumentState, file: str) -> str | None:
        if file == state.name:
            return state.uri
        path = self.path_of(state, file)
        return from_fs_path(str(path)) if path is not None else None

    def to_range(self, state: DocumentState, span: Span) -> types.Range:
        if span.line <= 0:
            return types.Range(types.Position(0, 0), types.Position(0, 0))
        lines = self.lines_of(state, span.file)

        def position(line: int, column: int) -> types.Position:
            text = lines[line - 1] if 0 < line <= len(lines) else ""
            return types.Position(line - 1, _units(text[: max(column - 1, 0)], self.encoding))

        return types.Range(position(span.line, span.column), position(span.end_line, span.end_column))

    def location(self, state: DocumentState, span: Span) -> types.Location | None:
        uri = self.uri_of(state, span.file)
        if uri is None:
            return None
        return types.Location(uri=uri, range=self.to_range(state, span))

    def from_position(self, state: DocumentState, position: types.Position) -> tuple[int, int]:
        lines = state.text.split("\n")
        text = lines[position.line] if position.line < len(lines) else ""
        return position.line + 1, _chars(text, position.character, self.encoding) + 1

    # -- diagnostics ---------------------------------------------------------------------
    def to_lsp_diagnostic(self, state: DocumentState, d: rl_diagnostics.Diagnostic) -> types.Diagnostic | None:
        related = []
        for rel in d.related:
            loc = self.location(state, rel.span)
            if loc is not None:
                related.append(types.DiagnosticRelatedInformation(location=loc, message=rel.message))
        message = d.message
        span = d.span
        if span.file != state.name:
            # A problem inside an imported file: show it on the import statement.
            import_span = self.import_leading_to(state, span.file)
            if import_span is None:
                return None
            loc = self.location(state, span)
            if loc is not None:
                related.insert(0, types.DiagnosticRelatedInformation(location=loc, message=d.message))
            message = f"in {span.location}: {d.message}"
            span = import_span
        if d.help:
            message += f"\nhelp: {d.help}"
        tags = [types.DiagnosticTag.Unnecessary] if "unused" in d.code.name else None
        return types.Diagnostic(
            range=self.to_range(state, span),
            message=message,
            severity=_SEVERITY.get(d.level, types.DiagnosticSeverity.Error),
            code=d.code.code,
            source=SERVER_NAME,
            related_information=related or None,
            tags=tags,
            data={"name": d.code.name},
        )

    def import_leading_to(self, state: DocumentState, file: str) -> Span | None:
        target = self.path_of(state, file)
        if target is None:
            return None
        for span, path in state.result.import_spans:
            if span.file == state.name and Path(path).resolve() == target.resolve():
                return span
        return None

    # -- lookups ---------------------------------------------------------------------------
    def symbol_at(self, state: DocumentState, position: types.Position):
        """(symbol, span under the cursor) for the name at `position`, or (None, None)."""
        line, column = self.from_position(state, position)
        result = state.result
        best = None
        for ref in result.references:
            inside = ref.span.file == state.name and _contains(ref.span, line, column)
            if inside and (best is None or _span_size(ref.span) < _span_size(best[1])):
                best = (ref.symbol, ref.span)
        if best is not None:
            return best
        for symbol in result.symbols:
            if symbol.span.file == state.name and _contains(symbol.span, line, column):
                return symbol, symbol.span
        # Text fallback: field paths in conditions, names while the file does not parse.
        word, span = _word_at(state.text, state.name, line, column)
        if not word:
            return None, None
        candidates = [s for s in self.visible_symbols(state) if s.name == word]
        if not candidates and "." in word:
            head = word
            while "." in head and not candidates:
                candidates = [s for s in self.visible_symbols(state) if s.kind == "schema_field" and s.name == head]
                if not candidates:
                    head = head.rsplit(".", 1)[0]
        if candidates:
            return candidates[0], span
        return None, None

    def import_at(self, state: DocumentState, position: types.Position) -> tuple[Span, Path] | None:
        line, column = self.from_position(state, position)
        for span, path in state.result.import_spans:
            # The span covers the module or file name; the `import` keyword before it counts too.
            whole = Span(span.file, span.line, 1, span.end_line, span.end_column)
            if span.file == state.name and _contains(whole, line, column):
                return span, Path(path)
        return None

    def visible_symbols(self, state: DocumentState):
        """Symbols of this file and of the files it imports directly."""
        result = state.good
        root = result.root
        if root is None:
            return list(result.symbols)
        visible = {id(root)} | {id(module) for _, module in root.imports}
        return [s for s in result.symbols if s.module is None or id(s.module) in visible]


    def hover_header(self, state: DocumentState, symbol) -> str:
        """The definition in `.route` syntax: a target as written, its settings
        block included (literals as written, not Python reprs); other kinds as
        their one-line summary."""
        router = state.good.router
        if symbol.kind in ("workspace", "agent") and router is not None:
            policy = next((p for p in router.policies if (p.kind, p.name) == (symbol.kind, symbol.name)), None)
            if policy is not None:
                return "\n".join(policy_lines(policy_data(router, policy)))
        if symbol.kind != "target" or symbol.module is None:
            return symbol.detail or f"{symbol.kind} {symbol.name}"
        extent = _extent(symbol.node, symbol.module.source.name)
        written = _source_text(symbol.module.source, extent) if extent is not None else ""
        return f"target {written}" if written else symbol.detail or f"target {symbol.name}"

    # -- features ------------------------------------------------------------------------
    def hover(self, params: types.HoverParams) -> types.Hover | None:
        state = self.state_for(params.text_document.uri)
        symbol, span = self.symbol_at(state, params.position)
        if symbol is not None:
            return types.Hover(
                contents=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                             value=_hover_markdown(symbol, self.hover_header(state, symbol))),
                range=self.to_range(state, span),
            )
        found = self.import_at(state, params.position)
        if found is not None:
            span, path = found
            return types.Hover(
                contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=f"imports `{path}`"),
                range=self.to_range(state, span),
            )
        line, column = self.from_position(state, params.position)
        word, span = _word_at(state.text, state.name, line, column)
        if word in KEYWORD_DOCS:
            return types.Hover(
                contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=KEYWORD_DOCS[word]),
                range=self.to_range(state, span),
            )
        return None

    def definition(self, params: types.DefinitionParams) -> types.Location | None:
        state = self.state_for(params.text_document.uri)
        symbol, _ = self.symbol_at(state, params.position)
        if symbol is not None:
            if symbol.module is not None and symbol.module.source.path is not None and symbol.file != state.name:
                return types.Location(
                    uri=from_fs_path(str(symbol.module.source.path)),
                    range=self.to_range(state, symbol.span),
                )
            return self.location(state, symbol.span)
        found = self.import_at(state, params.position)
        if found is not None:
            _, path = found
            start = types.Position(0, 0)
            return types.Location(uri=from_fs_path(str(path)), range=types.Range(start, start))
        return None

    def references(self, params: types.ReferenceParams) -> list[types.Location]:
        state = self.state_for(params.text_document.uri)
        symbol, _ = self.symbol_at(state, params.position)
        if symbol is None:
            return []
        spans = [r.span for r in state.result.references if r.symbol is symbol]
        if params.context.include_declaration:
            spans.insert(0, symbol.span)
        return [loc for loc in (self.location(state, s) for s in spans) if loc is not None]

    def document_symbols(self, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        state = self.state_for(params.text_document.uri)
        out = []
        for symbol in state.good.symbols:
            if symbol.span.file != state.name or symbol.span.line <= 0:
                continue
            selection = self.to_range(state, symbol.span)
            node_span = _extent(symbol.node, state.name)
            whole = selection
            if node_span is not None:
                candidate = self.to_range(state, node_span)
                starts_before = (candidate.start.line, candidate.start.character) <= (
                    selection.start.line, selection.start.character)
                ends_after = (candidate.end.line, candidate.end.character) >= (
                    selection.end.line, selection.end.character)
                if starts_before and ends_after:
                    whole = candidate
            out.append(types.DocumentSymbol(
                name=symbol.name,
                kind=_SYMBOL_KIND.get(symbol.kind, types.SymbolKind.Variable),
                range=whole,
                selection_range=selection,
                detail=symbol.detail or symbol.kind,
            ))
        return out

    def completion(self, params: types.CompletionParams) -> types.CompletionList:
        state = self.state_for(params.text_document.uri)
        lines = state.text.split("\n")
        line_text = lines[params.position.line] if params.position.line < len(lines) else ""
        before = line_text[: _chars(line_text, params.position.character, self.encoding)]
        symbols = self.visible_symbols(state)
        word = re.search(r"[A-Za-z0-9_.\-]*$", before).group()
        items: list[types.CompletionItem] = []
        if "." in word:
            head = word.rsplit(".", 1)[0] + "."
            seen = set()
            for s in symbols:
                if s.kind == "schema_field" and s.name.startswith(head):
                    segment = s.name[len(head):].split(".", 1)[0]
                    if segment and segment not in seen:
                        seen.add(segment)
                        is_leaf = s.name == head + segment
                        items.append(types.CompletionItem(
                            label=segment,
                            kind=types.CompletionItemKind.Field,
                            detail=s.detail if is_leaf else f"{head}{segment}",
                        ))
            return types.CompletionList(is_incomplete=False, items=items)

        previous = re.findall(r"[A-Za-z_][A-Za-z0-9_\-]*", before[: len(before) - len(word)])
        wanted = _NAME_CONTEXT.get(previous[-1]) if previous else None
        seen_names = set()
        for s in symbols:
            if wanted is not None and s.kind not in wanted:
                continue
            if s.kind == "test" or (s.kind, s.name) in seen_names:
                continue
            seen_names.add((s.kind, s.name))
            items.append(types.CompletionItem(
                label=s.name,
                kind=_COMPLETION_KIND.get(s.kind, types.CompletionItemKind.Text),
                detail=s.detail or s.kind,
                documentation=(types.MarkupContent(kind=types.MarkupKind.Markdown, value=s.doc)
                               if s.doc else None),
                sort_text=f"0{s.name}",
            ))
        if wanted is None:
            # After a field (`user.tier `) an operator comes next: rank them first there.
            field = _FIELD_BEFORE.search(before) if not word else None
            operator_rank = "!" if field and field.group(1) not in grammar_keywords() else "2"
            for keyword in grammar_keywords():
                items.append(types.CompletionItem(
                    label=keyword,
                    kind=types.CompletionItemKind.Keyword,
                    documentation=KEYWORD_DOCS.get(keyword),
                    sort_text=f"1{keyword}",
                ))
            for op in OPERATORS:
                items.append(types.CompletionItem(
                    label=op, kind=types.CompletionItemKind.Operator, sort_text=f"{operator_rank}{op}"))
        return types.CompletionList(is_incomplete=False, items=items)

    def formatting(self, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        state = self.state_for(params.text_document.uri)
        if any(d.code.code == SYNTAX_ERROR_CODE for d in state.result.diagnostics):
            return None  # nothing sensible to format until the text parses
        try:
            new_text = format_text(state.text, state.name)
        except FormatError:
            return None  # the text does not parse; diagnostics already say why
        if new_text == state.text:
            return []
        lines = state.text.split("\n")
        end = types.Position(len(lines) - 1, _units(lines[-1], self.encoding))
        return [types.TextEdit(range=types.Range(types.Position(0, 0), end), new_text=new_text)]


def _extent(node, file: str) -> Span | None:
    """The span from the first to the last position of any span inside an AST node."""
    spans: list[Span] = []

    def walk(value, depth: int) -> None:
        if depth > 50:
            return
        if isinstance(value, Span):
            if value.line > 0 and value.file == file:
                spans.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, depth + 1)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name, None), depth + 1)

    walk(node, 0)
    if not spans:
        return None
    first = min(spans, key=lambda sp: (sp.line, sp.column))
    last = max(spans, key=lambda sp: (sp.end_line, sp.end_column))
    return first.to(last)


def _source_text(source, span: Span) -> str:
    """The text under a span of `source`."""
    if span.line <= 0:
        return ""
    lines = source.lines[span.line - 1:span.end_line]
    if not lines:
        return ""
    if len(lines) == 1:
        return lines[0][span.column - 1:span.end_column - 1]
    return "\n".join([lines[0][span.column - 1:], *lines[1:-1], lines[-1][:span.end_column - 1]])


def _display(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


# A field path just written in a condition (after `when`, `and`, `or`, `not`, `(` or `=`), then a space.
_FIELD_BEFORE = re.compile(r'(?:^|\bwhen|\band|\bor|\bnot|[(=])\s*'
                           r'([A-Za-z_][A-Za-z0-9_\-]*(?:\.(?:[A-Za-z_][A-Za-z0-9_\-]*|"[^"]*"))*)\s+$')
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*")


def _word_at(text: str, name: str, line: int, column: int) -> tuple[str, Span | None]:
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return "", None
    for match in _WORD.finditer(lines[line - 1]):
        if match.start() + 1 <= column <= match.end() + 1:
            return match.group(), Span(name, line, match.start() + 1, line, match.end() + 1)
    return "", None


def _hover_markdown(symbol, header: str) -> str:
    parts = [f"```route\n{header}\n```"]
    if symbol.doc:
        parts.append(symbol.doc)
    kind = symbol.kind.replace("_", " ")
    if symbol.span.line > 0:
        parts.append(f"*{kind}* defined at `{symbol.span.file}:{symbol.span.line}`")
    return "\n\n".join(parts)


def build_server() -> RoutelangServer:
    return RoutelangServer()


def main() -> None:
    """Run the language server on stdin/stdout."""
    build_server().start_io()


if __name__ == "__main__":
    main()
