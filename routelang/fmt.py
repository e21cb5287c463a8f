"""The canonical layout of a .route file (`routelang fmt`).

The formatter reprints the *source tokens* in the order they were written,
guided by the AST for structure: a cursor walks the text beside the AST, so
every token keeps its exact spelling (raw strings, `0.8` vs `80%`, quoted
keys, `matches` vs `=~`) and every token knows its offset in the source.
Only whitespace changes, plus dropping optional trailing commas.

Layout is a small Wadler-style document: `Group`s print on one line when
they fit in WIDTH columns and break at every `Line` otherwise (see docs/fmt.md).

Comments are placed by offset: a comment with code before it on its line
trails the token before it; any other comment leads the token after it (or
ends its block, when only a `}` follows). A group with a comment inside
always breaks, so each comment lands at a line end or on its own line.

`format_text` checks its own output before returning it: the reparsed AST
must equal the original and no comment text may be lost.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import ast
from .diagnostics import Diagnostic
from .parser import parse
from .source import Source, Span
from .vocab import strategies

WIDTH = 100
INDENT = 4

_WS_AND_COMMENTS = re.compile(r"\s*(?:#[^\n]*\s*)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_STRING = re.compile(r'r"[^"\n]*"|"(?:[^"\\\n]|\\.)*"')
_SEGMENT = re.compile(f"{_STRING.pattern}|{_NAME.pattern}")
_WEIGHT = re.compile(r"[0-9]+(?:\.[0-9]+)?%|-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_COMPARE = re.compile(r"==|!=|>=|<=|>|<")
_QUANTITY = re.compile(r"[0-9]+(?:\.[0-9]+)?[kM]?")
_PAREN_SCAN = re.compile(f"{_STRING.pattern}|#[^\\n]*|[()]")
_CLOSERS = ("}", ")", "]")
_OPENERS = ("{", "(", "[")


class FormatError(Exception):
    """The text has syntax errors; nothing was formatted."""

    def __init__(self, diagnostics: list[Diagnostic], source: Source):
        super().__init__(f"{len(diagnostics)} syntax error(s)")
        self.diagnostics = diagnostics
        self.source = source


class FormatterBug(Exception):
    """The formatter would have changed the meaning or lost a comment."""


# ---- the layout document -----------------------------------------------------

@dataclass(eq=False)
class Text:
    text: str
    start: int | None = None        # source offset; None for spaces the printer adds
    leading: list[ast.Comment] = field(default_factory=list)
    trailing: list[ast.Comment] = field(default_factory=list)
    line_start: bool = False        # a line break may come right before it
    line_end: bool = False          # a line break may come right after it


@dataclass(eq=False)
class Line:
    soft: bool = False              # flat: "" instead of " "


@dataclass(eq=False)
class HardLine:
    pass


@dataclass(eq=False)
class Blank:
    """An empty line here (once), unless one was just written."""


@dataclass(eq=False)
class EndComments:
    """Where the comments at the end of a block go: inside it, before `}`."""

    start: int
    leading: list[ast.Comment] = field(default_factory=list)


@dataclass(eq=False)
class Group:
    parts: list
    forced: bool = False


@dataclass(eq=False)
class Indent:
    parts: list


SPACE = " "


# ---- AST + tokens -> document ------------------------------------------------

class _Printer:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    # -- the token cursor --
    def offset(self, line: int, column: int) -> int:
        return self.line_starts[line - 1] + column - 1

    def _skip(self) -> int:
        self.pos = _WS_AND_COMMENTS.match(self.text, self.pos).end()
        return self.pos

    def _bug(self, what: str) -> FormatterBug:
        return FormatterBug(f"expected {what} at offset {self.pos}: {self.text[self.pos:self.pos + 20]!r}")

    def peek(self, *words: str) -> bool:
        at = self._skip()
        return any(self.text.startswith(w, at) for w in words)

    def lit(self, *words: str) -> Text:
        """The next token, which must be one of `words` (keywords, punctuation)."""
        at = self._skip()
        for word in words:
            if self.text.startswith(word, at):
                self.pos = at + len(word)
                return Text(word, at)
        raise self._bug(" or ".join(words))

    def optional(self, word: str) -> None:
        if self.peek(word):
            self.lit(word)

    def lex(self, pattern: re.Pattern) -> Text:
        at = self._skip()
        m = pattern.match(self.text, at)
        if not m:
            raise self._bug(pattern.pattern)
        self.pos = m.end()
        return Text(m.group(), at)

    def leaf(self, span: Span) -> Text:
        """A token the AST has a span for, spelt exactly as written."""
        at = self._skip()
        start, end = self.offset(span.line, span.column), self.offset(span.end_line, span.end_column)
        if start != at:
            raise self._bug(f"the token at {span.line}:{span.column}")
        self.pos = end
        return Text(self.text[start:end], start)

    # -- shapes --
    def block(self, entries: Callable[[], list], always_break: bool) -> Group:
        """`{ entry entry }`: on one line if it fits (unless always_break), else one entry per line."""
        opening = self.lit("{")
        docs = entries()
        end = EndComments(self._skip())
        closing = self.lit("}")
        if not docs:
            return Group([opening, Indent([end]), Line(soft=True), closing])
        inner: list = []
        for doc in docs:
            inner += [Line(), doc]
        return Group([opening, Indent(inner + [end]), Line(), closing], forced=always_break)

    def seq(self, opening: str, closing: str, items: list, item: Callable, spaced: bool = False) -> Group:
        """`[a, b]`, `(a, b)`, `{ k: v }`: comma-separated, one per line when broken."""
        open_text = self.lit(opening)
        inner: list = []
        for i, x in enumerate(items):
            inner += [Line(soft=not spaced) if i == 0 else Line(), item(x)]
            if i < len(items) - 1:
                inner.append(self.lit(","))
        self.optional(",")
        end = EndComments(self._skip())
        close_text = self.lit(closing)
        if not items:
            return Group([open_text, Indent([end]), Line(soft=True), close_text])
        return Group([open_text, Indent(inner + [end]), Line(soft=not spaced), close_text])

    # -- values --
    def value(self, v: ast.Value):
        if isinstance(v.value, list):
            return self.seq("[", "]", v.value, self.value)
        if isinstance(v.value, dict):
            return self.seq("{", "}", list(v.value.values()), self.pair, spaced=True)
        return self.leaf(v.span)

    def pair(self, v: ast.Value) -> list:
        return [self.lex(_SEGMENT), self.lit(":"), SPACE, self.value(v)]

    def path(self, p: ast.FieldPath) -> list:
        out: list = []
        for i in range(len(p.segments)):
            if i:
                out.append(self.lit("."))
            out.append(self.lex(_SEGMENT))
        return out

    # -- targets and settings --
    def target(self, t) -> list:
        if isinstance(t, ast.TargetRef):
            return [self.leaf(t.name.span)]
        if isinstance(t, ast.TargetLiteral):
            return [self.settings(t.settings)]
        out: list = [self.leaf(t.provider.span), self.seq("(", ")", t.args, lambda a: self.leaf(a.span))]
        if t.settings is not None:
            out += [SPACE, self.settings(t.settings)]
        return out

    def settings(self, s: ast.Settings) -> Group:
        return self.block(lambda: [self.setting(x) for x in s.items], always_break=False)

    def setting(self, s: ast.Setting) -> list:
        keyword = self.lit(s.key)
        if isinstance(s.value, list):  # circuit_breaker { ... }, health_check { ... }
            return [keyword, SPACE, self.block(lambda: [self.setting(x) for x in s.value], always_break=False)]
        if s.key == "headers" or isinstance(s.value, ast.Value) and isinstance(s.value.value, list):
            return [keyword, SPACE, self.value(s.value)]
        out = [keyword, SPACE, self.leaf(s.value.span)]
        if s.key in ("cost", "input_cost", "output_cost"):
            out += [SPACE, self.lit("per"), SPACE, self.lit("1k")]
        return out

    # -- conditions --
    # The parser keeps no node for parentheses (and flattens `(a and b) and c`),
    # so the printer finds the author's parentheses in the text: a `(` whose `)`
    # comes after the last token of a node wraps that node; one that closes
    # inside a chain wraps the chain's first items.
    def condition(self, e, in_parens: bool = False) -> list:
        """A condition; a chain of `and`/`or` breaks before each operator, its
        continuation lines indented (except directly inside parentheses)."""
        if self.peek("(") and _last_start(e, self) < self.closing_paren():
            opening = self.lit("(")
            inner = self.condition(e, in_parens=True)
            return [Group([opening, Indent([Line(soft=True), *inner]), Line(soft=True), self.lit(")")])]
        if isinstance(e, ast.Compare):
            return self.compare(e)
        if isinstance(e, (ast.AllOf, ast.AnyOf)):
            parts = self.chain(e.items, "and" if isinstance(e, ast.AllOf) else "or")
            return [Group(parts if in_parens else [Indent(parts)])]
        if isinstance(e, ast.Not):
            return [self.lit("not"), SPACE, *self.condition(e.item)]
        return [self.leaf(e.name.span)]  # CondRef

    def chain(self, items: list, word: str) -> list:
        first = 1
        if self.peek("("):
            close = self.closing_paren()
            first = sum(1 for x in items if _first_start(x, self) < close)
        if first > 1:
            opening = self.lit("(")
            inner = self.chain(items[:first], word)
            parts = [Group([opening, Indent([Line(soft=True), Group(inner)]), Line(soft=True), self.lit(")")])]
        else:
            parts = list(self.condition(items[0]))
        for item in items[first:]:
            parts += [Line(), self.lit(word), SPACE, *self.condition(item)]
        return parts

    def closing_paren(self) -> int:
        """The offset of the `)` that matches the `(` at the cursor."""
        depth = 0
        for m in _PAREN_SCAN.finditer(self.text, self._skip()):
            token = m.group()
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
                if depth == 0:
                    return m.start()
        raise self._bug("a closing parenthesis")

    def compare(self, c: ast.Compare) -> list:
        out: list = [*self.path(c.path), SPACE]
        for i, word in enumerate(c.op_text.split()):  # `not contains`: one space between the words
            out += [SPACE, self.lit(word)] if i else [self.lit(word)]
        if c.value is not None:
            out += [SPACE, self.value(c.value)]
        if c.note is not None:
            out += [SPACE, self.lit("note"), SPACE, self.leaf(c.note.span)]
        return out

    # -- strategies --
    def strategy(self, s: ast.Strategy) -> list:
        defn = strategies.strategy(s.kind)
        out = [self.lit(defn.keyword)]
        if defn.layout == "route":
            out += [SPACE, *self.member(s.targets[0])]
            if defn.mirrors:
                out += [SPACE, self.lit("shadow"), SPACE, *self.member(s.targets[1])]
            return out
        if defn.layout == "block":
            out.append(SPACE)
            if s.sticky is not None:
                out += [self.lit("sticky"), SPACE, self.lit("by"), SPACE, *self.path(s.sticky.path), SPACE]
                if s.sticky.salt is not None:
                    out += [self.lit("salt"), SPACE, self.leaf(s.sticky.salt.span), SPACE]
            if s.no_failover is not None:
                out += [self.lit("no"), SPACE, self.lit("failover"), SPACE]
            return out + [self.block(lambda: [self.split_entry(e) for e in s.entries], always_break=True)]
        if defn.layout == "call_list":
            weights = list(s.hybrid.items())
            out.append(self.seq("(", ")", weights, lambda kv: [self.lit(kv[0]), SPACE, self.leaf(kv[1].span)]))
        return out + [SPACE, self.target_list(s.targets)]

    def member(self, m) -> list:
        """A target, or a nested strategy in parentheses."""
        if isinstance(m, ast.Strategy):
            return [self.lit("("), *self.strategy(m), self.lit(")")]
        return self.target(m)

    def split_entry(self, e: ast.SplitEntry) -> list:
        out: list = [self.lex(_WEIGHT), SPACE]
        if e.label is not None:
            out += [self.leaf(e.label.span), self.lit(":"), SPACE]
        return out + self.member(e.target)

    def target_list(self, targets: list) -> Group:
        parts: list = []
        for i, t in enumerate(targets):
            if i:
                parts += [self.lit(","), Line()]
            parts += self.member(t)
        return Group([Indent(parts)])

    # -- top-level items --
    def item(self, it) -> list:
        method = getattr(self, "item_" + type(it).__name__)
        return method(it)

    def item_RouterHeader(self, it: ast.RouterHeader) -> list:
        out = [self.lit("router"), SPACE, self.leaf(it.name.span)]
        if it.description is not None:
            out += [SPACE, self.leaf(it.description.span)]
        return out

    def item_MetadataBlock(self, it: ast.MetadataBlock) -> list:
        return [self.lit("metadata"), SPACE, self.value(it.value)]

    def item_Import(self, it: ast.Import) -> list:
        keyword = self.lit("import")
        if it.path is not None:
            return [keyword, SPACE, self.leaf(it.path.span)]
        out: list = [keyword, SPACE, self.lex(_NAME)]
        for _ in range(it.module.count(".")):
            out += [self.lit("."), self.lex(_NAME)]
        return out

    def item_ProviderDef(self, it: ast.ProviderDef) -> list:
        out = [self.lit("provider"), SPACE, self.leaf(it.name.span)]
        if it.settings is not None:
            out += [SPACE, self.settings(it.settings)]
        return out

    def item_ProfileDef(self, it: ast.ProfileDef) -> list:
        return [self.lit("profile"), SPACE, self.leaf(it.name.span), SPACE, self.settings(it.settings)]

    def item_DefaultsDef(self, it: ast.DefaultsDef) -> list:
        return [self.lit("defaults"), SPACE, self.settings(it.settings)]

    def item_TargetDef(self, it: ast.TargetDef) -> list:
        head = [self.lit("target"), SPACE, self.leaf(it.name.span), SPACE, self.lit("="), SPACE]
        return head + self.target(it.target)

    def item_ConditionDef(self, it: ast.ConditionDef) -> list:
        head = [self.lit("condition"), SPACE, self.leaf(it.name.span), SPACE, self.lit("="), SPACE]
        return head + self.condition(it.expr)

    def item_SchemaDef(self, it: ast.SchemaDef) -> list:
        return [self.lit("schema"), SPACE, self.block(lambda: [self.schema_field(f) for f in it.fields], True)]

    def schema_field(self, f: ast.SchemaField) -> list:
        out: list = [*self.path(f.path), self.lit(":"), SPACE]
        if f.type == "enum":
            return out + [self.lit("enum"), self.seq("(", ")", f.enum, self.value)]
        return out + [self.lex(_NAME)]

    def item_RuleDef(self, it: ast.RuleDef) -> list:
        out: list = [self.lit("rule"), SPACE, self.leaf(it.name.span)]
        header = [x for x in (it.priority, it.description, it.enabled) if x is not None]
        for x in sorted(header, key=lambda x: (x.span.line, x.span.column)):
            if x is it.priority:
                out += [SPACE, self.lit("priority")]
            out += [SPACE, self.leaf(x.span)]
        body = [("when", w) for w in it.whens] + [("strategy", s) for s in it.strategies]
        body.sort(key=lambda kv: (kv[1].span.line, kv[1].span.column))

        def entries() -> list:
            return [
                [self.lit("when"), SPACE, *self.condition(x)] if kind == "when" else self.strategy(x)
                for kind, x in body
            ]

        return out + [SPACE, self.block(entries, always_break=True)]

    def item_TestDef(self, it: ast.TestDef) -> list:
        requests = iter(it.requests)
        expectations = iter(it.expectations)

        def entries() -> list:
            docs = []
            while self.peek("request", "expect"):
                if self.peek("request"):
                    docs.append([self.lit("request"), SPACE, self.value(next(requests))])
                else:
                    docs.append(self.expect_line(expectations))
            return docs

        return [self.lit("test"), SPACE, self.leaf(it.name.span), SPACE, self.block(entries, always_break=True)]

    def expect_line(self, expectations: Iterator[ast.Expectation]) -> list:
        out: list = [self.lit("expect")]
        while not self.peek("expect", "request", "}"):
            e = next(expectations)
            if e.kind == "no_match":
                out += [SPACE, self.lit("no"), SPACE, self.lit("match")]
            elif e.kind == "target_in":
                out += [SPACE, self.lit("target"), SPACE, self.lit("in"), SPACE, self.names(e.names)]
            elif e.kind == "targets":
                out += [SPACE, self.lit("targets"), SPACE, self.names(e.names)]
            else:  # rule, target, shadow
                out += [SPACE, self.lit(e.kind), SPACE, self.leaf(e.name.span)]
        return out

    def item_PolicyDef(self, it: ast.PolicyDef) -> list:
        out = [self.lit(it.kind), SPACE, self.leaf(it.name.span)]
        if it.description is not None:
            out += [SPACE, self.leaf(it.description.span)]
        return out + [SPACE, self.block(lambda: [self.policy_item(x) for x in it.items], always_break=True)]

    def policy_item(self, item: ast.PolicyItem) -> list:
        key = item.key
        if key.startswith("allow_"):
            out = [self.lit("allow"), SPACE, self.lit(key[len("allow_"):]), SPACE]
            return out + [self.names(item.value) if key == "allow_targets" else self.value(item.value)]
        out = [self.lit(key), SPACE]
        if key in ("compliance", "capabilities", "timezone"):
            return out + [self.value(item.value)]
        if key in ("prefer", "fallback"):
            return out + [self.comma_list(item.value, lambda n: [self.leaf(n.span)])]
        if key == "budget":
            return out + [self.comma_list(item.value, self.budget)]
        if key == "limit":
            return out + [self.comma_list(item.value, self.rate_limit)]
        out.append(self.comma_list(item.value, self.requirement))
        if item.otherwise is not None:
            out += [SPACE, self.lit("otherwise"), SPACE, self.lit(item.otherwise.text.split()[0])]
            if item.otherwise.text != "refuse":
                out += [SPACE, self.lit("best")]
        return out

    def comma_list(self, items: list, item: Callable) -> Group:
        parts: list = []
        for i, x in enumerate(items):
            if i:
                parts += [self.lit(","), Line()]
            parts += item(x)
        return Group([Indent(parts)])

    def budget(self, b: ast.Budget) -> list:
        out = [self.leaf(b.amount.span), SPACE]
        if b.currency is not None:
            out += [self.lit(b.currency), SPACE]
        return out + [self.lit("per"), SPACE, self.lit(b.period)]

    def rate_limit(self, r: ast.RateLimit) -> list:
        return [self.lex(_QUANTITY), SPACE, self.lit(r.unit), SPACE, self.lit("per"), SPACE, self.lit(r.per)]

    def requirement(self, r: ast.Requirement) -> list:
        if r.metric == "success":
            return [self.lit("success"), SPACE, self.lex(_COMPARE), SPACE, self.lex(_WEIGHT)]
        if r.metric == "latency":
            return [self.lit("latency"), SPACE, self.leaf(r.percentile.span), SPACE, self.lex(_COMPARE), SPACE,
                    self.leaf(r.value.span)]
        return [self.lit("cost"), SPACE, self.lit("per"), SPACE, self.lit("1k"), SPACE, self.lit("tokens"), SPACE,
                self.lex(_COMPARE), SPACE, self.leaf(r.value.span)]

    def names(self, names: list[ast.Name]) -> Group:
        return self.seq("[", "]", names, lambda n: self.leaf(n.span))


def _first_start(e, printer: _Printer) -> int:
    """Source offset of the first token of a condition (without its parentheses)."""
    if isinstance(e, (ast.AllOf, ast.AnyOf)):
        return _first_start(e.items[0], printer)
    if isinstance(e, ast.Not):
        return _first_start(e.item, printer)
    span = e.path.span if isinstance(e, ast.Compare) else e.span
    return printer.offset(span.line, span.column)


def _last_start(e, printer: _Printer) -> int:
    """Source offset where the last token-bearing part of a condition starts."""
    if isinstance(e, (ast.AllOf, ast.AnyOf)):
        return _last_start(e.items[-1], printer)
    if isinstance(e, ast.Not):
        return _last_start(e.item, printer)
    if isinstance(e, ast.Compare):
        parts = [e.path.span] + [v.span for v in (e.value, e.note) if v is not None and v.span.line > 0]
        return max(printer.offset(p.line, p.column) for p in parts)
    return printer.offset(e.name.span.line, e.name.span.column)


# Top-level items fall into families; a blank line always separates families,
# and always surrounds rules, tests and the schema. Within a family of one-line
# definitions (imports, targets, ...) the author's choice is kept.
_FAMILY = {
    ast.RouterHeader: "header", ast.MetadataBlock: "header", ast.Import: "import",
    ast.ProviderDef: "definition", ast.ProfileDef: "definition", ast.DefaultsDef: "definition",
    ast.TargetDef: "definition", ast.ConditionDef: "definition",
    ast.SchemaDef: "schema", ast.RuleDef: "rule", ast.TestDef: "test", ast.PolicyDef: "policy",
}
_ALWAYS_APART = {"schema", "rule", "test", "policy"}


def _document(file: ast.File, printer: _Printer) -> list:
    doc: list = []
    previous = None
    for it in file.items:
        family = _FAMILY[type(it)]
        if previous is not None:
            doc.append(HardLine())
            if family != previous or family in _ALWAYS_APART:
                doc.append(Blank())
        doc.append(printer.item(it))
        previous = family
    doc.append(EndComments(len(printer.text)))
    return doc


# ---- comments ----------------------------------------------------------------

def _walk(doc, leaves: list, groups: list) -> None:
    """Flatten to leaves in order; record for each group the leaves it spans."""
    if isinstance(doc, list):
        for d in doc:
            _walk(d, leaves, groups)
    elif isinstance(doc, str):
        leaves.append(Text(doc))
    elif isinstance(doc, Group):
        first = len(leaves)
        _walk(doc.parts, leaves, groups)
        groups.append((doc, first, len(leaves)))
    elif isinstance(doc, Indent):
        _walk(doc.parts, leaves, groups)
    else:
        leaves.append(doc)


def _settle(doc) -> bool:
    """A group around a group that must break must break too. Returns whether `doc` breaks."""
    if isinstance(doc, list):
        return any([_settle(d) for d in doc])  # noqa: C419 -- settle every part, no short cut
    if isinstance(doc, Indent):
        return _settle(doc.parts)
    if isinstance(doc, Group):
        inner = _settle(doc.parts)
        doc.forced = doc.forced or inner
        return doc.forced
    return isinstance(doc, HardLine)


def _attach_comments(doc: list, comments: list[ast.Comment], printer: _Printer) -> None:
    leaves: list = []
    groups: list = []
    _walk(doc, leaves, groups)
    breaks = (Line, HardLine, Blank)
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, Text):
            leaf.line_start = i == 0 or isinstance(leaves[i - 1], breaks)
            leaf.line_end = i == len(leaves) - 1 or isinstance(leaves[i + 1], (*breaks, EndComments))
    anchors = [i for i, leaf in enumerate(leaves) if isinstance(leaf, EndComments)
               or isinstance(leaf, Text) and leaf.start is not None]
    starts = [leaves[i].start for i in anchors]
    for comment in comments:
        at = printer.offset(comment.span.line, comment.span.column)
        line_before = printer.text[printer.line_starts[comment.span.line - 1]:at]
        if line_before.strip():  # trails the token before it
            k = bisect.bisect_left(starts, at) - 1
            while k > 0 and isinstance(leaves[anchors[k]], EndComments):
                k -= 1
            i = anchors[k]
            while not leaves[i].line_end:
                i += 1
            leaves[i].trailing.append(comment)
        else:  # leads the token after it, or ends its block
            i = anchors[min(bisect.bisect_right(starts, at), len(anchors) - 1)]
            while isinstance(leaves[i], Text) and not leaves[i].line_start:
                i -= 1
            if i >= 2 and isinstance(leaves[i - 1], Line) and isinstance(leaves[i - 2], EndComments):
                i -= 2  # moved back onto a block's closing line: end the block instead
            leaves[i].leading.append(comment)
    for group, first, last in groups:
        if group.forced:
            continue
        for i in range(first, last):
            leaf = leaves[i]
            if isinstance(leaf, HardLine) or (
                isinstance(leaf, (Text, EndComments)) and leaf.leading and i != first
            ) or (isinstance(leaf, Text) and leaf.trailing and i != last - 1):
                group.forced = True
                break
    _settle(doc)


# ---- rendering ---------------------------------------------------------------

_FLAT, _BREAK = 0, 1


class _Renderer:
    def __init__(self, printer: _Printer):
        self.printer = printer
        self.source = printer.text
        self.opened = False             # the last line written ends with `{`, `(` or `[`
        self.lines: list[str] = []
        self.current = ""
        self.trailing: list[str] = []
        self.want_blank = False

    def at_line_start(self) -> bool:
        return not self.current.strip()

    def blank_before(self, offset: int) -> bool:
        """Did the author leave an empty line just before `offset`?"""
        newlines, i = 0, offset - 1
        while i >= 0 and self.source[i] in " \t\r\n":
            newlines += self.source[i] == "\n"
            i -= 1
        return newlines >= 2

    def write(self, text: str, offset: int | None) -> None:
        if self.at_line_start():
            if offset is not None and self.blank_before(offset):
                self.want_blank = True
            if self.want_blank and text not in _CLOSERS and self.lines and self.lines[-1] and not self.opened:
                self.lines.append("")
            self.want_blank = False
        self.current += text

    def newline(self, indent: int) -> None:
        self.opened = self.current.rstrip().endswith(_OPENERS)
        if self.trailing:
            self.current += "  " + "  ".join(self.trailing)
            self.trailing = []
        self.lines.append(self.current.rstrip())
        self.current = " " * indent

    def comment_lines(self, comments: list[ast.Comment], indent: int, before: bool) -> None:
        """Comments on lines of their own: `before` the text that follows, or else
        after what is already on the current line."""
        for c in comments:
            if not before and not self.at_line_start():
                self.newline(indent)
            self.write(c.text.rstrip(), self.printer.offset(c.span.line, c.span.column))
            if before:
                self.newline(indent)

    def render(self, doc: list) -> str:
        stack: list = [(0, _BREAK, doc)]
        while stack:
            indent, mode, d = stack.pop()
            if isinstance(d, list):
                stack.extend((indent, mode, x) for x in reversed(d))
            elif isinstance(d, str):
                self.current += d
            elif isinstance(d, Text):
                if d.leading:
                    if self.at_line_start():
                        self.comment_lines(d.leading, indent, before=True)
                    else:
                        self.trailing += [c.text.rstrip() for c in d.leading]
                self.write(d.text, d.start)
                self.trailing += [c.text.rstrip() for c in d.trailing]
            elif isinstance(d, Line):
                if mode == _FLAT:
                    self.current += "" if d.soft else " "
                else:
                    self.newline(indent)
            elif isinstance(d, HardLine):
                self.newline(indent)
            elif isinstance(d, Blank):
                self.want_blank = True
            elif isinstance(d, EndComments):
                self.comment_lines(d.leading, indent, before=False)
            elif isinstance(d, Group):
                flat = mode == _FLAT or (not d.forced and self.fits(WIDTH - len(self.current), d, stack))
                stack.append((indent, _FLAT if flat else _BREAK, d.parts))
            elif isinstance(d, Indent):
                stack.append((indent + INDENT, mode, d.parts))
        self.newline(0)
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "\n".join(self.lines) + "\n" if self.lines else ""

    @staticmethod
    def fits(width: int, group: Group, rest: list) -> bool:
        todo: list = [(_FLAT, group.parts)]
        k = len(rest)
        while width >= 0:
            if not todo:
                if k == 0:
                    return True
                k -= 1
                _, mode, d = rest[k]
                todo.append((mode, d))
                continue
            mode, d = todo.pop()
            if isinstance(d, list):
                todo.extend((mode, x) for x in reversed(d))
            elif isinstance(d, str):
                width -= len(d)
            elif isinstance(d, Text):
                width -= len(d.text)
            elif isinstance(d, Line):
                if mode == _BREAK:
                    return True
                width -= 0 if d.soft else 1
            elif isinstance(d, (HardLine, Blank)):
                return True
            elif isinstance(d, EndComments):
                if d.leading:
                    return True
            elif isinstance(d, Group):
                todo.append((_BREAK if d.forced else mode, d.parts))
            elif isinstance(d, Indent):
                todo.append((mode, d.parts))
        return False


# ---- entry points ------------------------------------------------------------

def _comment_words(comments: list[ast.Comment]) -> list[str]:
    """Comment text as fragments, so that two comments joined on one line still count."""
    return sorted(frag.strip() for c in comments for frag in c.text.split("#") if frag.strip())


def format_file(file: ast.File, text: str) -> str:
    """Format an already-parsed file (no syntax errors) whose source is `text`."""
    printer = _Printer(text)
    doc = _document(file, printer)
    if printer._skip() != len(text):
        raise FormatterBug(f"text left over at offset {printer.pos}")
    _attach_comments(doc, file.comments, printer)
    return _Renderer(printer).render(doc)


def format_source(source: Source) -> str:
    """The canonical layout of `source`. Raises FormatError on syntax errors."""
    file, diagnostics = parse(source)
    if diagnostics:
        raise FormatError(diagnostics, source)
    out = format_file(file, source.text)
    again, problems = parse(Source(source.name, out, source.path))
    if problems or again.items != file.items:
        raise FormatterBug(f"formatting {source.name} would change its meaning")
    if _comment_words(again.comments) != _comment_words(file.comments):
        raise FormatterBug(f"formatting {source.name} would lose a comment")
    return out


def format_text(text: str, name: str = "<input>") -> str:
    """The canonical layout of `text`. Raises FormatError (with `.diagnostics`) on syntax errors."""
    return format_source(Source(name, text))
