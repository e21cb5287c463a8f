"""What a version holds, and how to get the language's IR back from it.

A version stores the source files (imports included; the standard library's
modules too, under their `<std.name>` names) by path relative to the
directory holding them all, and the compiled Mixtrain-schema JSON with its
`${VAR}` references kept (filled in where it is loaded, as `routelang.load`
does). To diff two versions their files are written to a temporary directory
in the same layout and compiled again.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..compiler import CompileResult, compile_path, compile_text
from ..diagnostics import Diagnostic, Severity


@dataclass
class Built:
    result: CompileResult
    entry: str | None               # the pushed file, a key of sources
    sources: dict[str, str]
    compiled: dict | None           # None: the file has errors
    problems: list[Diagnostic]      # errors, warnings and notes (the compiler's, the lint's, the lowering's)

    @property
    def ok(self) -> bool:
        return self.compiled is not None


def is_stdlib(name: str) -> bool:
    return name.startswith("<")


def _relative_sources(result: CompileResult, entry_path: Path | None) -> tuple[str | None, dict[str, str]]:
    files = {name: s for name, s in result.sources.items() if not is_stdlib(name) and s.path is not None}
    paths = {name: Path(os.path.abspath(s.path)) for name, s in files.items()}
    root = Path(os.path.commonpath([str(p.parent) for p in paths.values()])) if paths else None
    sources = {str(paths[name].relative_to(root)) if root else name: s.text for name, s in files.items()}
    sources.update({name: s.text for name, s in result.sources.items() if is_stdlib(name)})
    entry = None
    if entry_path is not None and root is not None:
        entry = str(Path(os.path.abspath(entry_path)).relative_to(root))
    return entry, dict(sorted(sources.items()))


def _finish(result: CompileResult, entry: str | None, sources: dict[str, str]) -> Built:
    from ..backends.json import lower
    from ..lint import lint

    if not result.ok:
        return Built(result, entry, sources, None, list(result.diagnostics))
    problems = [d for d in result.diagnostics if d.level is not Severity.NOTE] + \
        [d for d in lint(result) if d.level is not Severity.NOTE]
    config, notes = lower(result.router)
    problems += [n for n in notes if n.level is not Severity.NOTE]
    if any(d.level is Severity.ERROR for d in problems):
        return Built(result, entry, sources, None, problems)
    return Built(result, entry, sources, config, problems)


def build_file(path: str | Path) -> Built:
    """Compile a `.route` file for a push (raises source.SourceError when it cannot be read)."""
    result = compile_path(path)
    entry, sources = _relative_sources(result, Path(path))
    return _finish(result, entry, sources)


def build_text(text: str, entry: str) -> Built:
    """`.route` source text for a push over the admin API. It is compiled in an
    empty directory, so it may import the standard library but no other file
    (never one next to the server)."""
    with tempfile.TemporaryDirectory(prefix="routelang-push-") as tmp:
        result = compile_text(text, name=entry, path=Path(tmp) / entry)
    sources = {entry: result.sources[entry].text if entry in result.sources else text}
    sources.update({name: s.text for name, s in result.sources.items() if is_stdlib(name)})
    return _finish(result, entry, dict(sorted(sources.items())))


def build_stored(entry: str, sources: dict[str, str]) -> Built:
    """Stored (or exported) files checked again exactly like a push (`routelang import` of a registry)."""
    return _finish(compile_stored(entry, sources), entry, dict(sorted(sources.items())))


def build_config(config: dict, name: str) -> Built:
    """A version from a Mixtrain-schema config (the SDK's `update`): imported to
    `.route` text, which is then checked and compiled like a pushed file."""
    from ..importers.mixtrain import import_config

    entry = f"{name}.route"
    text = import_config(config, entry)
    result = compile_text(text, name=entry)
    return _finish(result, entry, {entry: text})


def compile_stored(entry: str, sources: dict[str, str]) -> CompileResult:
    """The stored files compiled again (in a temporary directory, same layout)."""
    with tempfile.TemporaryDirectory(prefix="routelang-version-") as tmp:
        for name, text in sources.items():
            if is_stdlib(name):
                continue  # resolved from the installed standard library
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return compile_path(Path(tmp) / entry)
