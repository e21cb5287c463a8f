"""AST -> IR: imports, the stdlib, names, profiles and defaults.

Scoping: every file sees its own definitions and those *defined in* the files
it imports directly (not what those import in turn). Targets, conditions,
providers and profiles share one namespace per file, so a name means one
thing. Each definition is resolved in the scope of the file that defines it.

Target settings stack up, later overriding earlier:
    router `defaults`  <  provider preset  <  the target's own block
with `use PROFILE` inside any block standing for the profile's settings at
that point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ast, ir, policies
from .diagnostics import (
    BAD_CALL,
    BAD_TEST,
    DOT_IN_SEGMENT,
    DUPLICATE_DEFINITION,
    DUPLICATE_ROUTER,
    DUPLICATE_RULE,
    DUPLICATE_SETTING,
    IMPORT_CYCLE,
    INCOMPLETE_TARGET,
    INPUT_ERROR,
    MISSING_ROUTER,
    MISSING_STRATEGY,
    MULTIPLE_STRATEGIES,
    MULTIPLE_WHEN,
    NESTED_STRATEGY,
    NO_RULES,
    ROUTER_IN_MODULE,
    TYPE_MISMATCH,
    UNKNOWN_IMPORT,
    UNKNOWN_NAME,
    WRONG_KIND,
    Diagnostic,
    Related,
)
from .parser import parse, quote
from .source import Source, SourceError, Span, SpanMap, read_source
from .vocab import settings as target_settings
from .vocab import strategies


def stdlib_dir() -> Path:
    packaged = Path(__file__).parent / "stdlib"  # installed wheel
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "stdlib"  # source checkout


KIND_OF_DEF = {
    ast.TargetDef: "target",
    ast.ConditionDef: "condition",
    ast.ProviderDef: "provider",
    ast.ProfileDef: "profile",
}


@dataclass(eq=False)
class Symbol:
    kind: str            # target, condition, provider, profile, rule, test, schema_field
    name: str
    span: Span
    node: Any
    module: Module | None = None
    detail: str = ""
    doc: str | None = None

    @property
    def file(self) -> str:
        return self.span.file


@dataclass(eq=False)
class Reference:
    name: str
    kind: str            # the kind expected at the use site
    span: Span
    symbol: Symbol


@dataclass(eq=False)
class Module:
    key: str                         # resolved path, or std:<name>
    source: Source
    file: ast.File
    defs: dict[str, Symbol] = field(default_factory=dict)
    imports: list[tuple[ast.Import, Module]] = field(default_factory=list)

    def lookup(self, name: str) -> Symbol | None:
        found = self.defs.get(name)
        if found is not None:
            return found
        for _, module in self.imports:
            found = module.defs.get(name)
            if found is not None:
                return found
        return None


@dataclass
class Resolution:
    router: ir.Router | None
    modules: list[Module]
    diagnostics: list[Diagnostic]
    symbols: list[Symbol]
    references: list[Reference]
    import_spans: list[tuple[Span, Path]]
    used: set[int]                    # id() of symbols referenced at least once
    unbuilt_rules: list[UnbuiltRule] = field(default_factory=list)


@dataclass
class UnbuiltRule:
    """The parts that did resolve of a rule that could not be built (an unknown
    target or condition name): the checker checks them all the same, so the
    rule's other errors are reported with the unknown name, not after it is fixed.
    `parts` are comparisons, targets, split arms and whole nested strategies."""

    name: str
    parts: list[ir.Compare | ir.Target | ir.NestedArm | ir.Strategy]


def _doc_comment(file: ast.File, span: Span) -> str | None:
    """Comment lines directly above a definition are its documentation."""
    lines = {c.span.line: c.text for c in file.comments}
    out = []
    line = span.line - 1
    while line in lines:
        out.append(lines[line].lstrip("#").strip())
        line -= 1
    return "\n".join(reversed(out)) or None


class Resolver:
    def __init__(self):
        self.diagnostics: list[Diagnostic] = []
        self.modules: dict[str, Module] = {}
        self.loading: list[str] = []
        self.references: list[Reference] = []
        self.import_spans: list[tuple[Span, Path]] = []
        self.used: set[int] = set()
        self.target_cache: dict[int, dict | None] = {}
        self.condition_cache: dict[int, Any] = {}
        self.in_progress: set[int] = set()
        self.defaults: dict = {}
        self.defaults_spans: dict = {}
        self.unbuilt_rules: list[UnbuiltRule] = []
        self.rule_parts: list | None = None  # what resolved of the rule being resolved

    def error(self, code, message, span, help=None, related=None, rule=None):
        self.diagnostics.append(Diagnostic(code, message, span, help=help, related=related or [], rule=rule))

    # ---- modules and imports ---------------------------------------------------

    def load_module(self, key: str, source: Source, file: ast.File | None = None) -> Module:
        """`file`: the syntax of `source` when it was built, not parsed (JSON input)."""
        if file is None:
            file, diags = parse(source)
            self.diagnostics.extend(diags)
        module = Module(key, source, file)
        self.modules[key] = module
        self.loading.append(key)
        for item in file.items:
            if isinstance(item, ast.Import):
                self._import(module, item)
        self.loading.pop()
        for item in file.items:
            kind = KIND_OF_DEF.get(type(item))
            if kind is not None:
                self._define(module, kind, item)
        return module

    def _define(self, module: Module, kind: str, item) -> None:
        name = item.name.text
        symbol = Symbol(kind, name, item.name.span, item, module, _detail(kind, item), _doc_comment(module.file, item.span))
        previous = module.defs.get(name)
        if previous is not None:
            self.error(
                DUPLICATE_DEFINITION, f"`{name}` is defined twice in this file", item.name.span,
                related=[Related(previous.span, f"first defined here as a {previous.kind}")],
                help="rename one of them",
            )
            return
        for imp, imported in module.imports:
            clash = imported.defs.get(name)
            if clash is not None:
                self.error(
                    DUPLICATE_DEFINITION, f"`{name}` is already defined by an import", item.name.span,
                    related=[Related(clash.span, f"imported {clash.kind} defined here")],
                    help="rename the local definition",
                )
                return
        module.defs[name] = symbol

    def _import(self, module: Module, item: ast.Import) -> None:
        if item.module is not None:
            parts = item.module.split(".")
            if parts[0] != "std" or len(parts) != 2:
                self.error(
                    UNKNOWN_IMPORT, f"unknown module `{item.module}`", item.span,
                    help='import a standard module (`import std.providers`) or a file (`import "common.route"`)',
                )
                return
            path = stdlib_dir() / f"{parts[1]}.route"
            if not path.is_file():
                available = sorted(p.stem for p in stdlib_dir().glob("*.route"))
                self.error(
                    UNKNOWN_IMPORT, f"no standard module `{item.module}`", item.span,
                    help="available: " + ", ".join(f"std.{n}" for n in available),
                )
                return
            key, display = f"std:{parts[1]}", f"<{item.module}>"
        else:
            base = module.source.path.parent if module.source.path else Path.cwd()
            try:
                path = (base / item.path.value).resolve()
                found = path.is_file()
            except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
                self.error(UNKNOWN_IMPORT, f"`{item.path.value}` is not a usable file name ({exc})", item.span,
                           help='import a file by its path relative to this file: `import "common.route"`')
                return
            key, display = str(path), item.path.value
            if module.source.path is not None:
                display = _display_path(path)
            if not found:
                self.error(UNKNOWN_IMPORT, f"cannot find imported file `{item.path.value}`", item.span,
                           help=f"looked for {_display_path(path)}")
                return
        self.import_spans.append((item.span, path))
        if key in self.loading:
            chain = self.loading[self.loading.index(key):] + [key]
            names = " -> ".join(self.modules[k].source.name for k in chain)
            self.error(IMPORT_CYCLE, f"import cycle: {names}", item.span,
                       help="move the shared definitions into a file that both import")
            return
        imported = self.modules.get(key)
        if imported is None:
            try:
                source = read_source(path, display_name=display)
            except SourceError as exc:
                self.error(INPUT_ERROR, str(exc), item.span)
                return
            imported = self.load_module(key, source)
            for sub in imported.file.items:
                if isinstance(sub, ast.RouterHeader):
                    self.error(ROUTER_IN_MODULE, f"imported file `{source.name}` declares a router", item.span,
                               related=[Related(sub.span, "router declared here")],
                               help="keep routers in their own files and import only definitions")
        module.imports.append((item, imported))

    # ---- lookups -----------------------------------------------------------------

    def lookup(self, module: Module, name: ast.Name, kind: str) -> Symbol | None:
        symbol = module.lookup(name.text)
        if symbol is None:
            help = None
            if kind == "provider":
                help = f"declare `provider {name.text}` or `import std.providers`"
            candidates = [s.name for s in _visible(module) if s.kind == kind]
            close = _closest(name.text, candidates)
            if close:
                help = f"did you mean `{close}`?"
            help = _import_hint(module, name.text, kind) or help
            self.error(UNKNOWN_NAME, f"unknown {kind} `{name.text}`", name.span, help=help)
            return None
        self.references.append(Reference(name.text, kind, name.span, symbol))
        self.used.add(id(symbol))
        if symbol.kind != kind:
            self.error(WRONG_KIND, f"`{name.text}` is a {symbol.kind}, not a {kind}", name.span,
                       related=[Related(symbol.span, f"{symbol.kind} defined here")])
            return None
        return symbol

    # ---- settings ----------------------------------------------------------------

    def apply_settings(self, module: Module, settings: ast.Settings | None, acc: dict, spans: dict,
                       profiles_seen: tuple = ()) -> None:
        if settings is None:
            return
        seen: dict[str, Span] = {}
        for setting in settings.items:
            key = setting.key
            if key == "use":
                symbol = self.lookup(module, setting.value, "profile")
                if symbol is None:
                    continue
                if id(symbol) in profiles_seen:
                    self.error(IMPORT_CYCLE, f"profile `{symbol.name}` uses itself", setting.span)
                    continue
                self.apply_settings(symbol.module, symbol.node.settings, acc, spans, profiles_seen + (id(symbol),))
                continue
            if key in seen:
                self.error(DUPLICATE_SETTING, f"`{key}` is set twice in this block", setting.span,
                           related=[Related(seen[key], "first set here")])
                continue
            seen[key] = setting.span
            if key in target_settings.BLOCKS:
                nested = dict(acc.get(key) or {})
                nested_seen: dict[str, Span] = {}
                for sub in setting.value:
                    if sub.key in nested_seen:
                        self.error(DUPLICATE_SETTING, f"`{sub.key}` is set twice in this block", sub.span,
                                   related=[Related(nested_seen[sub.key], "first set here")])
                        continue
                    nested_seen[sub.key] = sub.span
                    nested[sub.key] = _setting_value(sub)
                    spans[f"{key}.{sub.key}"] = sub.span
                acc[key] = nested
                spans[key] = setting.span
                continue
            if key == "headers":
                headers = {}
                for hname, hvalue in setting.value.value.items():
                    if not isinstance(hvalue.value, str):
                        self.error(TYPE_MISMATCH, f"header `{hname}` must be a string", hvalue.span,
                                   help=f'write it in quotes: "{hvalue.plain()}"')
                        continue
                    headers[hname] = hvalue.value
                acc[key] = headers
                spans[key] = setting.span
                continue
            acc[key] = _setting_value(setting)
            spans[key] = setting.span

    # ---- targets -----------------------------------------------------------------

    def target_fields(self, module: Module, expr) -> tuple[dict, dict] | None:
        """The settings a target expression writes (before router defaults)."""
        if isinstance(expr, ast.TargetRef):
            symbol = self.lookup(module, expr.name, "target")
            if symbol is None:
                return None
            key = id(symbol)
            if key in self.target_cache:
                return self.target_cache[key]
            if key in self.in_progress:
                self.error(IMPORT_CYCLE, f"target `{symbol.name}` is defined in terms of itself", expr.span)
                return None
            self.in_progress.add(key)
            result = self.target_fields(symbol.module, symbol.node.target)
            self.in_progress.discard(key)
            if result is not None:
                fields, spans = dict(result[0]), dict(result[1])
                fields.setdefault("name", symbol.name)
                result = (fields, spans)
            self.target_cache[key] = result
            return result
        acc: dict = {}
        spans: dict = {"target": expr.span}
        if isinstance(expr, ast.TargetCall):
            provider = self.lookup(module, expr.provider, "provider")
            if provider is None:
                return None
            acc["provider"] = provider.name
            spans["provider"] = expr.provider.span
            self.apply_settings(provider.module, provider.node.settings, acc, spans)
            args = expr.args
            if not args or len(args) > 2:
                self.error(BAD_CALL, f"`{provider.name}(...)` takes a model name and an optional endpoint",
                           expr.span, help=f'e.g. {provider.name}("model-name", "https://endpoint")')
                return None
            acc["model"] = args[0].value
            spans["model"] = args[0].span
            if len(args) == 2:
                acc["endpoint"] = args[1].value
                spans["endpoint"] = args[1].span
            elif "endpoint" not in acc:
                self.error(BAD_CALL, f"provider `{provider.name}` has no default endpoint; give one",
                           expr.span, help=f'{provider.name}("{args[0].value}", "https://...")')
                return None
            self.apply_settings(module, expr.settings, acc, spans)
        else:
            self.apply_settings(module, expr.settings, acc, spans)
        return acc, spans

    def build_target(self, module: Module, expr, label: str | None = None, weight: float | None = None,
                     extra_spans: dict | None = None) -> ir.Target | None:
        result = self.target_fields(module, expr)
        if result is None:
            return None
        written, written_spans = result
        fields = _merge(self.defaults, written)
        spans = dict(self.defaults_spans)
        spans.update(written_spans)
        spans.update(extra_spans or {})
        missing = [s.surface for s in target_settings.IDENTITY if not fields.get(s.surface)]
        if missing:
            self.error(INCOMPLETE_TARGET, f"target lacks {', '.join(missing)}", expr.span,
                       help="write e.g. `{ provider \"custom\" model \"name\" endpoint \"https://...\" }`")
            return None
        if label is not None:
            fields["label"] = label
        if weight is not None:
            fields["weight"] = weight
        values = {s.ir_field: fields.get(s.surface) for s in target_settings.TABLE}
        for setting in target_settings.TENANCY:
            if values[setting.ir_field] is not None:
                values[setting.ir_field] = policies.target_value(
                    self, setting, values[setting.ir_field], spans.get(setting.surface, expr.span))
        for block, model in ((target_settings.BY_SURFACE["circuit_breaker"], ir.CircuitBreaker),
                             (target_settings.BY_SURFACE["health_check"], ir.HealthCheck)):
            given = values[block.ir_field]
            if given is not None:
                values[block.ir_field] = model(**{sub.ir_field: given[sub.surface]
                                                  for sub in block.block if sub.surface in given})
        return ir.Target(name=fields.get("name"), **values, span=expr.span, spans=SpanMap(spans))

    # ---- conditions --------------------------------------------------------------

    def field_path(self, path: ast.FieldPath) -> str | None:
        """The IR's dotted path, or None (reported) when a quoted segment
        holds a `.`: the IR, the runtime and Mixtrain all split paths at
        dots, so such a key cannot be addressed the same way everywhere."""
        dotted = [seg for seg in path.segments if "." in seg]
        if not dotted:
            return path.dotted
        self.error(DOT_IN_SEGMENT, f"the field-path segment {quote(dotted[0])} contains `.`", path.span,
                   help="paths split at every `.`, here and in Mixtrain, so a key with a dot in its name cannot"
                        " be matched; send the value under a key without dots")
        return None

    def condition(self, module: Module, expr) -> Any:
        if isinstance(expr, ast.Compare):
            path = self.field_path(expr.path)
            if path is None:
                return None
            value = expr.value.plain() if expr.value is not None else None
            spans = SpanMap(field=expr.path.span)
            if expr.value is not None:
                spans["value"] = expr.value.span
            compare = ir.Compare(
                field=path, operator=expr.op, value=value,
                description=expr.note.value if expr.note is not None else None,
                span=expr.span, spans=spans,
            )
            if self.rule_parts is not None:
                self.rule_parts.append(compare)
            return compare
        if isinstance(expr, ast.Not):
            inner = self.condition(module, expr.item)
            return None if inner is None else ir.Not(item=inner, span=expr.span)
        if isinstance(expr, (ast.AllOf, ast.AnyOf)):
            items = [self.condition(module, x) for x in expr.items]
            if any(x is None for x in items):
                return None
            cls = ir.AllOf if isinstance(expr, ast.AllOf) else ir.AnyOf
            return cls(items=tuple(items), span=expr.span)
        if isinstance(expr, ast.CondRef):
            symbol = self.lookup(module, expr.name, "condition")
            if symbol is None:
                return None
            key = id(symbol)
            if key in self.condition_cache:
                return self.condition_cache[key]
            if key in self.in_progress:
                self.error(IMPORT_CYCLE, f"condition `{symbol.name}` refers to itself", expr.span)
                return None
            self.in_progress.add(key)
            result = self.condition(symbol.module, symbol.node.expr)
            self.in_progress.discard(key)
            self.condition_cache[key] = result
            return result
        raise AssertionError(f"unknown condition node {expr!r}")

    # ---- rules -------------------------------------------------------------------

    def strategy(self, module: Module, rule: ast.RuleDef, strat: ast.Strategy) -> ir.Strategy | None:
        defn = strategies.strategy(strat.kind)
        members: list = []
        if strat.kind == "split":
            for entry in strat.entries:
                spans = {"weight": entry.span}
                if entry.label is not None:
                    spans["label"] = entry.label.span
                label = entry.label.text if entry.label else None
                if isinstance(entry.target, ast.Strategy):
                    inner = self.nested_strategy(module, rule, entry.target, defn)
                    members.append(None if inner is None else ir.NestedArm(
                        weight=entry.weight, label=label, strategy=inner, span=entry.span, spans=SpanMap(spans)))
                else:
                    members.append(self.build_target(module, entry.target, label=label, weight=entry.weight,
                                                      extra_spans=spans))
        else:
            members = [self.nested_strategy(module, rule, t, defn) if isinstance(t, ast.Strategy)
                       else self.build_target(module, t) for t in strat.targets]
        if any(m is None for m in members):
            if self.rule_parts is not None:
                self.rule_parts.extend(m for m in members if m is not None)
            return None
        spans = SpanMap()
        fields: dict = {}
        if strat.sticky is not None:
            fields["sticky_by"] = self.field_path(strat.sticky.path)
            if fields["sticky_by"] is None:
                return None
            spans["sticky_by"] = strat.sticky.path.span
            if strat.sticky.salt is not None:
                fields["salt"] = strat.sticky.salt.value
        if strat.no_failover is not None:
            fields["failover"] = False
            spans["failover"] = strat.no_failover
        for factor, value in strat.hybrid.items():
            fields[f"{factor}_weight"] = float(value.value)
            spans[f"{factor}_weight"] = value.span
        return ir.STRATEGY_MODELS[strat.kind].of(tuple(members), span=strat.span, spans=spans, **fields)

    def nested_strategy(self, module: Module, rule: ast.RuleDef, inner: ast.Strategy,
                        outer: strategies.StrategyDef) -> ir.Strategy | None:
        """A strategy written as a member of `outer` (a split arm, a fallback step)."""
        if not outer.nests:
            nesting = " or ".join(f"`{s.keyword}`" for s in strategies.STRATEGIES.values() if s.nests)
            self.error(NESTED_STRATEGY, f"`{outer.keyword}` chooses among targets, not strategies", inner.span,
                       help=f"only {nesting} members may be strategies; name the targets here", rule=rule.name.text)
            return None
        return self.strategy(module, rule, inner)

    def rule(self, module: Module, rule: ast.RuleDef) -> ir.Rule | None:
        name = rule.name.text
        if len(rule.whens) > 1:
            self.error(MULTIPLE_WHEN, f"rule `{name}` has {len(rule.whens)} `when` clauses", rule.whens[1].span,
                       help="join the conditions with `and` in one `when`", rule=name)
        if not rule.strategies:
            self.error(MISSING_STRATEGY, f"rule `{name}` does not say where to route", rule.name.span,
                       help="add `route TARGET`, `split { ... }`, `fallback A, B`, ...", rule=name)
            return None
        if len(rule.strategies) > 1:
            self.error(MULTIPLE_STRATEGIES, f"rule `{name}` has {len(rule.strategies)} strategies",
                       rule.strategies[1].span, help="a rule routes one way; split it into two rules", rule=name)
        # Both halves are resolved whatever happens to the other, so that each reports its errors.
        self.rule_parts = []
        when = self.condition(module, rule.whens[0]) if rule.whens else None
        strategy = self.strategy(module, rule, rule.strategies[0])
        parts, self.rule_parts = self.rule_parts, None
        if (rule.whens and when is None) or strategy is None:
            self.unbuilt_rules.append(UnbuiltRule(name, parts if strategy is None else [*parts, strategy]))
            return None
        spans = SpanMap(name=rule.name.span)
        if rule.priority is not None:
            spans["priority"] = rule.priority.span
        if rule.whens:
            spans["when"] = rule.whens[0].span
        return ir.Rule(
            name=name,
            priority=rule.priority.value if rule.priority is not None else 0,
            description=rule.description.value if rule.description is not None else None,
            enabled=rule.enabled is None or rule.enabled.text == "enabled",
            when=when,
            strategy=strategy,
            span=rule.name.span,
            spans=spans,
        )

    def test(self, module: Module, test: ast.TestDef, rule_names: set[str]) -> ir.Test | None:
        name = test.name.value
        if len(test.requests) != 1:
            self.error(BAD_TEST, f"test `{name}` needs exactly one `request {{ ... }}`", test.span)
            return None
        if not test.expectations:
            self.error(BAD_TEST, f"test `{name}` has no `expect`", test.span,
                       help="add `expect rule NAME`, `expect target NAME` or `expect no match`")
            return None
        by_kind: dict[str, ast.Expectation] = {}
        for e in test.expectations:
            first = by_kind.setdefault(e.kind, e)
            if first is not e:
                self.error(BAD_TEST, f"test `{name}` expects `{_EXPECT_WORDS[e.kind]}` twice", e.span,
                           related=[Related(first.span, "first expected here")])
                return None
        clashes = [("target", "target_in")] + [("no_match", k) for k in by_kind if k != "no_match"]
        for a, b in clashes:
            if a in by_kind and b in by_kind:
                later = max(by_kind[a], by_kind[b], key=lambda e: (e.span.line, e.span.column))
                self.error(BAD_TEST, f"test `{name}` has conflicting expectations: `{_EXPECT_WORDS[a]}` "
                           f"and `{_EXPECT_WORDS[b]}`", later.span,
                           help="a test that expects no match cannot expect a target" if a == "no_match"
                           else "keep one: `expect target T` or `expect target in [A, B]`")
                return None
        rule = by_kind.get("rule")
        if rule is not None and rule.name.text not in rule_names:
            self.error(UNKNOWN_NAME, f"test expects unknown rule `{rule.name.text}`", rule.span,
                       help=_did_you_mean(rule.name.text, rule_names))
            return None

        def single(kind: str) -> str | None:
            e = by_kind.get(kind)
            return None if e is None else e.name.text

        def several(kind: str) -> tuple[str, ...] | None:
            e = by_kind.get(kind)
            return None if e is None else tuple(n.text for n in e.names)

        expect = ir.Expectation(
            rule=single("rule"), target=single("target"), target_in=several("target_in"),
            targets=several("targets"), shadow=single("shadow"), no_match="no_match" in by_kind,
            span=test.expectations[0].span,
            # A one-name expectation is located at the name (an unknown target is underlined there).
            spans=SpanMap({k: e.span if e.name is None else e.name.span for k, e in by_kind.items()}
                          | {f"{k}.{i}": n.span for k, e in by_kind.items() for i, n in enumerate(e.names)}),
        )
        return ir.Test(name=name, request=test.requests[0].plain(), expect=expect, span=test.span,
                       spans=SpanMap(request=test.requests[0].span))

    def check_module(self, root: Module) -> None:
        """Resolve each definition of a module (a file without router, rules or
        tests) once, so its errors are reported though nothing uses it yet."""
        for item in root.file.items:
            if isinstance(item, ast.TargetDef):
                self.target_fields(root, item.target)
            elif isinstance(item, ast.ConditionDef):
                self.condition(root, item.expr)
            elif isinstance(item, (ast.ProviderDef, ast.ProfileDef)):
                self.apply_settings(root, item.settings, {}, {})

    def router(self, root: Module, allow_module: bool = False) -> ir.Router | None:
        items = root.file.items
        headers = [i for i in items if isinstance(i, ast.RouterHeader)]
        if not headers:
            if allow_module and not any(isinstance(i, (ast.RuleDef, ast.TestDef)) for i in items):
                self.check_module(root)
                return None
            if not any(isinstance(d, Diagnostic) and d.code.code == "RL001" for d in self.diagnostics):
                self.error(MISSING_ROUTER, "this file has no `router` header", Span(root.source.name, 1, 1, 1, 2),
                           help='start the file with `router NAME "description"`')
            return None
        for extra in headers[1:]:
            self.error(DUPLICATE_ROUTER, "a file declares one router", extra.span,
                       related=[Related(headers[0].span, "first router here")])
        header = headers[0]
        defaults: dict = {}
        defaults_spans: dict = {}
        for item in items:
            if isinstance(item, ast.DefaultsDef):
                self.apply_settings(root, item.settings, defaults, defaults_spans)
        self.defaults, self.defaults_spans = defaults, defaults_spans
        metadata: dict = {}
        for item in items:
            if isinstance(item, ast.MetadataBlock):
                metadata.update(item.value.plain())
        rules: list[ir.Rule] = []
        seen: dict[str, Span] = {}
        rule_defs = [i for i in items if isinstance(i, ast.RuleDef)]
        for rule_def in rule_defs:
            name = rule_def.name.text
            if name in seen:
                self.error(DUPLICATE_RULE, f"rule `{name}` is defined twice", rule_def.name.span,
                           related=[Related(seen[name], "first defined here")],
                           help="rule names must be unique (Mixtrain rejects duplicates)", rule=name)
                continue
            seen[name] = rule_def.name.span
            rule = self.rule(root, rule_def)
            if rule is not None:
                rules.append(rule)
        if not rule_defs:
            self.error(NO_RULES, f"router `{header.name.text}` has no rules", header.span,
                       help="add at least one `rule NAME { route TARGET }`")
        tests = []
        test_names: dict[str, Span] = {}
        for item in items:
            if isinstance(item, ast.TestDef):
                first = test_names.setdefault(item.name.value, item.name.span)
                if first is not item.name.span:
                    self.error(BAD_TEST, f"test `{item.name.value}` is defined twice", item.name.span,
                               related=[Related(first, "first defined here")],
                               help="give each test its own name, so a failure says which one failed")
                    continue
                test = self.test(root, item, set(seen))
                if test is not None:
                    tests.append(test)
        schema_fields = []
        for item in items:
            if isinstance(item, ast.SchemaDef):
                for f in item.fields:
                    if self.field_path(f.path) is None:
                        continue
                    schema_fields.append(ir.SchemaField(
                        path=f.path.dotted, type=f.type, values=tuple(v.plain() for v in f.enum),
                        span=f.span,
                    ))
        built: list[ir.Policy] = []
        policy_names: dict[tuple[str, str], Span] = {}
        for item in items:
            if isinstance(item, ast.PolicyDef):
                key = (item.kind, item.name.text)
                if key in policy_names:
                    self.error(DUPLICATE_DEFINITION, f"{item.kind} `{item.name.text}` is defined twice",
                               item.name.span, related=[Related(policy_names[key], "first defined here")],
                               help=f"write everything about one {item.kind} in one block")
                    continue
                policy_names[key] = item.name.span
                policy = policies.build_policy(self, root, item)
                if policy is not None:
                    built.append(policy)
        return ir.Router(
            name=header.name.text,
            description=header.description.value if header.description is not None else None,
            metadata=metadata,
            rules=tuple(rules),
            tests=tuple(tests),
            schema_fields=tuple(schema_fields),
            policies=tuple(built),
            span=header.span,
        )


# How each kind of expectation is written (for messages).
_EXPECT_WORDS = {"rule": "rule", "target": "target", "target_in": "target in", "targets": "targets",
                 "shadow": "shadow", "no_match": "no match"}


def _setting_value(setting: ast.Setting) -> Any:
    value = setting.value
    if isinstance(value, ast.Duration):
        return round(value.ms)
    if isinstance(value, ast.Value):
        return value.plain()
    return value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if key in target_settings.BLOCKS and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out




def _visible(module: Module):
    yield from module.defs.values()
    for _, imported in module.imports:
        yield from imported.defs.values()


def _import_hint(module: Module, name: str, kind: str) -> str | None:
    """Imports are not transitive; when a file that an import imports in
    turn defines the name, say which file to import."""
    seen = {module.key} | {imported.key for _, imported in module.imports}
    frontier = [imported for _, imported in module.imports]
    while frontier:
        current = frontier.pop(0)
        for _, deeper in current.imports:
            if deeper.key in seen:
                continue
            seen.add(deeper.key)
            symbol = deeper.defs.get(name)
            if symbol is not None and symbol.kind == kind:
                return (f"`{name}` is defined in {deeper.source.name}, which {current.source.name} imports;"
                        f" add `{_import_statement(module, deeper)}` here")
            frontier.append(deeper)
    return None


def _import_statement(importer: Module, imported: Module) -> str:
    if imported.key.startswith("std:"):
        return f"import std.{imported.key[4:]}"
    path = Path(imported.key)
    if importer.source.path is not None:
        path = Path(os.path.relpath(path, importer.source.path.resolve().parent))
    return f"import {quote(path.as_posix())}"


def _closest(name: str, candidates) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    return match[0] if match else None


def _did_you_mean(name: str, candidates) -> str | None:
    close = _closest(name, candidates)
    return f"did you mean `{close}`?" if close else None


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _detail(kind: str, item) -> str:
    if kind == "target" and isinstance(item.target, ast.TargetCall):
        args = ", ".join(repr(a.value) for a in item.target.args)
        return f"target {item.name.text} = {item.target.provider.text}({args})"
    return f"{kind} {item.name.text}"


def resolve(source: Source, allow_module: bool = False, file: ast.File | None = None) -> Resolution:
    """With allow_module, a file without a `router` header, rules or tests is a
    module: its definitions are checked and the router is None, without RL106.
    `file`: the syntax of `source`, when it was built rather than parsed
    (a Mixtrain JSON config: compiler.compile_json)."""
    resolver = Resolver()
    key = str(source.path.resolve()) if source.path else f"<{source.name}>"
    root = resolver.load_module(key, source, file)
    for module in resolver.modules.values():
        for item in module.file.items:
            if isinstance(item, ast.DefaultsDef) and module is not root:
                resolver.error(WRONG_KIND, "`defaults` belong in the router file", item.span,
                               help="define a `profile` here and write `defaults { use NAME }` in the router")
    router = resolver.router(root, allow_module)
    symbols: list[Symbol] = []
    for module in resolver.modules.values():
        symbols.extend(module.defs.values())
    for item in root.file.items:
        if isinstance(item, ast.RuleDef):
            symbols.append(Symbol("rule", item.name.text, item.name.span, item, root,
                                  f"rule {item.name.text}", _doc_comment(root.file, item.span)))
        elif isinstance(item, ast.TestDef):
            symbols.append(Symbol("test", item.name.value, item.name.span, item, root, f"test {item.name.value!r}"))
        elif isinstance(item, ast.PolicyDef):
            symbols.append(Symbol(item.kind, item.name.text, item.name.span, item, root,
                                  f"{item.kind} {item.name.text}", _doc_comment(root.file, item.span)))
        elif isinstance(item, ast.SchemaDef):
            for f in item.fields:
                symbols.append(Symbol("schema_field", f.path.dotted, f.path.span, f, root,
                                      f"{f.path.dotted}: {f.type}"))
    return Resolution(
        router=router,
        modules=list(resolver.modules.values()),
        diagnostics=resolver.diagnostics,
        symbols=symbols,
        references=resolver.references,
        import_spans=resolver.import_spans,
        used=resolver.used,
        unbuilt_rules=resolver.unbuilt_rules,
    )
