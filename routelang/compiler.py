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

from . import envvars, ir
from .check import check
from .diagnostics import INPUT_ERROR, SYNTAX_ERROR, UNSET_ENV_VAR, Diagnostic, has_errors, render_text, sort_diagnostics
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


def _compile(source: Source, env: dict[str, str] | None, allow_module: bool) -> CompileResult:
    resolution = resolve(source, allow_module)
    diagnostics = list(resolution.diagnostics)
    router = resolution.router
    if router is not None:
        diagnostics.extend(check(router))
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
    """Raises source.SourceError when the file cannot be read; a file that
    is not UTF-8 gives an RL002 diagnostic."""
    try:
        source = read_source(path)
    except DecodeProblem as exc:
        return CompileResult(router=None, diagnostics=[not_utf8(exc)], sources={})
    return compile_source(source, env, allow_module)


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
