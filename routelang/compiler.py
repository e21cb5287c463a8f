"""The front half of the pipeline in one call: parse, resolve, check.

    result = compile_path("examples/tiering.route")
    if not result.ok: print(result.render())
    config, notes = backends.json.lower(result.router)

Every consumer (CLI, language server, runtime loader, tests) goes through
here, so they all see the same diagnostics in the same order.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import ast, envvars, ir
from .analysis import restrictions
from .check import check
from .diagnostics import (
    INEXACT_IMPORT,
    INPUT_ERROR,
    MIXTRAIN_SCHEMA,
    MIXTRAIN_VALIDATOR,
    SYNTAX_ERROR,
    UNSET_ENV_VAR,
    Diagnostic,
    Severity,
    has_errors,
    render_text,
    sort_diagnostics,
)
from .resolve import Module, Reference, Symbol, resolve
from .source import DecodeProblem, Source, Span, read_source


@dataclass
class CompileResult:
    router: ir.Router | None
    diagnostics: list[Diagnostic]
    sources: dict[str, Source]
    modules: list[Module] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    import_spans: list[tuple[Span, Path]] = field(default_factory=list)
    used: set[int] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.router is not None and not has_errors(self.diagnostics)

    @property
    def root(self) -> Module | None:
        return self.modules[0] if self.modules else None

    def render(self, diagnostics: list[Diagnostic] | None = None) -> str:
        return "\n\n".join(render_text(d, self.sources) for d in (diagnostics or self.diagnostics))


@contextmanager
def no_gc_pauses():
    """Compiling allocates millions of small objects and frees almost none
    until the end; the cyclic GC would rescan them again and again (a third
    of the compile time on a 10,000-rule file). Reference counting still
    frees everything; cycles wait for the next collection."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compile_source(source: Source, env: dict[str, str] | None = None, allow_module: bool = False) -> CompileResult:
    """allow_module: a module (no `router` header, rules or tests) is checked
    as one, and its result has no router but no RL106 either."""
    try:
        with no_gc_pauses():
            return _compile(source, env, allow_module)
    except RecursionError:
        span = Span(source.name, 1, 1, 1, 2)
        diag = Diagnostic(SYNTAX_ERROR, "the file nests too deeply to compile", span,
                          help="flatten deeply nested conditions or values")
        return CompileResult(router=None, diagnostics=[diag], sources={source.name: source})


def _compile(source: Source, env: dict[str, str] | None, allow_module: bool,
             file: ast.File | None = None) -> CompileResult:
    resolution = resolve(source, allow_module, file)
    diagnostics = list(resolution.diagnostics)
    router = resolution.router
    if router is not None:
        diagnostics.extend(check(router, resolution.unbuilt_rules))
        if not has_errors(diagnostics):  # the proof needs a router whose parts are all valid
            diagnostics.extend(restrictions.prove(router))
        if env is not None:
            router, env_diags = interpolate_router(router, env)
            diagnostics.extend(env_diags)
    return CompileResult(
        router=router,
        diagnostics=sort_diagnostics(diagnostics),
        sources={m.source.name: m.source for m in resolution.modules},
        modules=resolution.modules,
        symbols=resolution.symbols,
        references=resolution.references,
        import_spans=resolution.import_spans,
        used=resolution.used,
    )


def compile_text(text: str, name: str = "<input>", path: Path | None = None,
                 env: dict[str, str] | None = None) -> CompileResult:
    return compile_source(Source(name, text.replace("\r\n", "\n"), path), env)


def compile_path(path: str | Path, env: dict[str, str] | None = None, allow_module: bool = False) -> CompileResult:
    """A `.route` file, or a Mixtrain `.json` config (compile_json). Raises
    source.SourceError when the file cannot be read; a file that is not UTF-8
    gives an RL002 diagnostic."""
    try:
        source = read_source(path)
    except DecodeProblem as exc:
        return CompileResult(router=None, diagnostics=[not_utf8(exc)], sources={})
    if Path(path).suffix.lower() == ".json":
        return compile_json(source, env)
    return compile_source(source, env, allow_module)


# ---- Mixtrain JSON as input -------------------------------------------------------

def compile_json(source: Source, env: dict[str, str] | None = None) -> CompileResult:
    """A Mixtrain routing config through the same front end as a `.route`
    file: the syntax nodes `routelang import` would write (importers/mixtrain.py), each
    located at its place in the JSON, resolved and checked unchanged, so every
    diagnostic points into the JSON. Added to the checker's findings: JSON
    syntax errors (RL001), what Mixtrain's RoutingConfig refuses (RL003), what
    its RoutingValidator rejects where the checker found nothing in that
    object (RL004), and what a .route file cannot say exactly (RL005)."""
    from .importers.mixtrain import ImportProblem, syntax_for_analysis, validation_errors
    from .jsonpos import JSONProblem, read_json
    from .mixtrain_schema import validation_path

    sources = {source.name: source}
    try:
        doc = read_json(source)
    except JSONProblem as exc:
        return CompileResult(None, [Diagnostic(SYNTAX_ERROR, exc.message, exc.span, help=exc.help)], sources)
    try:
        with no_gc_pauses():
            file, notes = syntax_for_analysis(doc.value, source.name, doc.span_at)
    except ImportProblem as exc:
        diags = [Diagnostic(MIXTRAIN_SCHEMA, f"Mixtrain's RoutingConfig refuses this config: "
                            f"{_json_path(loc) or 'the config'}: {message}", doc.span_at(loc))
                 for loc, message in exc.problems]
        return CompileResult(None, sort_diagnostics(diags), sources)
    result = _compile_built(source, env, file)
    extra = [Diagnostic(INEXACT_IMPORT, note.message, doc.span_at(note.path)) for note in notes]
    errors = [d for d in result.diagnostics if d.level is Severity.ERROR]
    for message in validation_errors(doc.value):
        where = doc.span_at(validation_path(message))
        if not any(_inside(d.span, where) for d in errors):
            extra.append(Diagnostic(MIXTRAIN_VALIDATOR, f"Mixtrain's validator: {message}", where))
    result.diagnostics = sort_diagnostics(result.diagnostics + extra)
    return result


def _compile_built(source: Source, env: dict[str, str] | None, file: ast.File) -> CompileResult:
    try:
        with no_gc_pauses():
            return _compile(source, env, allow_module=False, file=file)
    except RecursionError:
        span = Span(source.name, 1, 1, 1, 2)
        return CompileResult(None, [Diagnostic(SYNTAX_ERROR, "the config nests too deeply to compile", span)],
                             {source.name: source})


def _json_path(loc: tuple) -> str:
    """("rules", 0, "targets") -> rules[0].targets"""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _inside(span: Span, outer: Span) -> bool:
    return (outer.line, outer.column) <= (span.line, span.column) <= (outer.end_line, outer.end_column)


def not_utf8(exc: DecodeProblem) -> Diagnostic:
    """RL002 at the first byte that is not UTF-8."""
    span = Span(exc.name, exc.line, exc.column, exc.line, exc.column + 1)
    return Diagnostic(INPUT_ERROR, f"the file is not valid UTF-8 (byte {exc.byte!r})", span,
                      help="save the file as UTF-8 text")


def rule_locations(router: ir.Router) -> dict[str, tuple[str, int, int]]:
    """Each rule's (.route file, line, column), for the runtime's Plan and the generated module's LINE_MAP."""
    return {r.name: (r.span.file, r.span.line, r.span.column) for r in router.rules if r.span.line}


# ---- ${VAR} interpolation --------------------------------------------------------

def interpolate_router(router: ir.Router, env: dict[str, str]) -> tuple[ir.Router, list[Diagnostic]]:
    """Fill in `${VAR}` references in every target's strings from `env`.
    Conditions are never interpolated: what a rule matches is fixed at
    compile time."""
    diags: list[Diagnostic] = []

    def fill(text: str, span: Span, rule: str) -> str:
        try:
            return envvars.interpolate(text, env)
        except envvars.UnsetVariable as exc:
            diags.append(Diagnostic(UNSET_ENV_VAR, str(exc), span, rule=rule,
                                    help=f"set {exc.name}, or give a default: ${{{exc.name}:-value}}"))
            return text

    def target(t: ir.Target, rule: str) -> ir.Target:
        update = {}
        for key in envvars.TARGET_STRING_FIELDS:
            value = getattr(t, key)
            if isinstance(value, str) and "${" in value:
                update[key] = fill(value, t.spans.get(key.replace("model_name", "model"), t.span), rule)
        if t.headers and any("${" in v for v in t.headers.values()):
            update["headers"] = {k: fill(v, t.spans.get("headers", t.span), rule) for k, v in t.headers.items()}
        return t.model_copy(update=update) if update else t

    rules = []
    for rule in router.rules:
        strategy = rule.strategy.map_targets(lambda t, name=rule.name: target(t, name))
        rules.append(rule.model_copy(update={"strategy": strategy}))
    seen = set()
    unique = []
    for d in diags:
        key = (d.span.line, d.span.column, d.message)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return router.model_copy(update={"rules": tuple(rules)}), unique
