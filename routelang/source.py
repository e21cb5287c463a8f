"""Source text and spans.

A `Span` locates a piece of syntax in a source file. Spans ride along on AST
and IR nodes so that diagnostics can point at the user's text, but they never
take part in equality: two IR values that mean the same thing are equal
wherever they were written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class Span:
    """A range in a source file: 1-based lines and columns, end exclusive."""

    __slots__ = ("column", "end_column", "end_line", "file", "line")

    def __init__(self, file: str, line: int, column: int, end_line: int, end_column: int):
        self.file = file
        self.line = line
        self.column = column
        self.end_line = end_line
        self.end_column = end_column

    # Spans are metadata: every span equals every other span, so nodes that
    # carry them compare (and hash) by meaning alone.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Span({self.file}:{self.line}:{self.column}-{self.end_line}:{self.end_column})"

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of `other`."""
        return Span(self.file, self.line, self.column, other.end_line, other.end_column)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    # pydantic: accept Span values as they are, never serialise them.
    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)


NO_SPAN = Span("<unknown>", 0, 0, 0, 0)


@dataclass
class Source:
    """A source file's text with the name to show in diagnostics."""

    name: str
    text: str
    path: Path | None = None

    def line_text(self, line: int) -> str:
        lines = self.lines
        return lines[line - 1] if 0 < line <= len(lines) else ""

    @property
    def lines(self) -> list[str]:
        cached = self.__dict__.get("_lines")
        if cached is None:
            cached = self.text.split("\n")
            self.__dict__["_lines"] = cached
        return cached


class SourceError(Exception):
    """A file could not be read (I/O). Bad encoding is a DecodeProblem."""


class DecodeProblem(SourceError):
    """The file's bytes are not UTF-8: reported as a diagnostic at the byte."""

    def __init__(self, name: str, data: bytes, exc: UnicodeDecodeError):
        before = data[: exc.start]
        self.name = name
        self.line = before.count(b"\n") + 1
        self.column = exc.start - (before.rfind(b"\n") + 1) + 1
        self.byte = data[exc.start : exc.start + 1]
        super().__init__(f"{name}: not valid UTF-8 (byte {self.byte!r} at line {self.line})")


def read_source(path: str | Path, display_name: str | None = None) -> Source:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeProblem(display_name or str(path), data, exc) from exc
    text = text.removeprefix("\ufeff")
    return Source(display_name or str(path), text.replace("\r\n", "\n"), p)


class SpanMap(dict):
    """Spans of a node's parts, keyed by field name. Like Span, it is
    metadata and never affects equality."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpanMap)

    def __hash__(self) -> int:
        return 0

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)
