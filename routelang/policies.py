"""Workspaces and agents: `workspace NAME { ... }` and `agent NAME { ... }`
(AST) -> `ir.Policy`, with every value checked where it is written.

Money is converted to whole micro-dollars here, exactly (`0.0000005 USD` is
refused rather than rounded); the static proof that rules keep each policy's
requests inside its restrictions is analysis/restrictions.py.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import ast, ir
from .diagnostics import DUPLICATE_SETTING, INVALID_POLICY, SYNTAX_ERROR, TYPE_MISMATCH, Diagnostic, Related
from .source import Source, Span


class Module(Protocol):
    """A module being resolved (resolve.Module), as a policy refers to it: by name lookups only."""


class Resolver(Protocol):
    """What building a policy asks of the resolver (resolve.Resolver; this module is below it)."""

    def error(self, code: Any, message: str, span: Any, help: str | None = None, related: Any = None,
              rule: str | None = None) -> None: ...

    def lookup(self, module: Module, name: ast.Name, kind: str) -> Any: ...

PERCENTILES = (50, 90, 95, 99)
# Items an agent has and a workspace has not (a workspace restricts with `allow targets`).
AGENT_ONLY = ("prefer", "fallback")


def micros(amount: float | str) -> int | None:
    """USD -> whole micro-dollars, or None when the amount is finer than that or not a finite
    number (`1e999` is infinity)."""
    if isinstance(amount, (int, float)) and not abs(amount) <= sys.float_info.max:
        return None
    exact = Fraction(str(amount)) * ir.MICROS_PER_USD
    return int(exact) if exact.denominator == 1 else None


def strings(resolver: Resolver, value: ast.Value, what: str) -> tuple[str, ...] | None:
    """A list literal of strings, or None (reported)."""
    if not isinstance(value.value, list):
        resolver.error(TYPE_MISMATCH, f"{what} is a list of strings", value.span, help='e.g. ["gdpr", "hipaa"]')
        return None
    out = []
    for item in value.value:
        if not isinstance(item.value, str) or not item.value:
            resolver.error(TYPE_MISMATCH, f"{what} holds non-empty strings only", item.span,
                           help=f'write it in quotes: "{item.plain()}"')
            return None
        out.append(item.value)
    return tuple(out)


class PolicyBuilder:
    def __init__(self, resolver: Resolver, module: Module, item: ast.PolicyDef):
        self.resolver = resolver
        self.module = module
        self.item = item
        self.what = f"{item.kind} `{item.name.text}`"

    def error(self, message: str, span, help: str | None = None, related=None) -> None:
        self.resolver.error(INVALID_POLICY, message, span, help=help, related=related)

    def build(self) -> ir.Policy | None:
        fields: dict = {}
        seen: dict[str, ast.PolicyItem] = {}
        spans: dict = {}
        for entry in self.item.items:
            key = entry.key
            if key in seen:
                self.resolver.error(DUPLICATE_SETTING, f"`{_spelling(key)}` is given twice in {self.what}",
                                    entry.span, related=[Related(seen[key].span, "first given here")],
                                    help="write every value in one line, separated by commas")
                continue
            seen[key] = entry
            spans[key] = entry.span
            if key in AGENT_ONLY and self.item.kind != "agent":
                self.error(f"`{key}` belongs to an agent; a workspace restricts with `allow targets [...]`",
                           entry.span)
                continue
            getattr(self, f"_{key}")(entry, fields)
        if "allow_targets" in fields and (fields.get("prefer") or fields.get("fallback")):
            self.error(f"{self.what} names its targets twice: `allow targets` and `prefer`/`fallback`",
                       spans["allow_targets"], help="an agent may use its preferred and fallback targets: drop"
                                                    " `allow targets`")
        return ir.Policy(
            kind=self.item.kind, name=self.item.name.text,
            description=self.item.description.value if self.item.description is not None else None,
            span=self.item.name.span, spans=ir.SpanMap(spans), **fields,
        )

    # ---- items ----------------------------------------------------------------

    def _budget(self, entry: ast.PolicyItem, fields: dict) -> None:
        budgets, periods = [], {}
        for budget in entry.value:
            if budget.period in periods:
                self.error(f"{self.what} has two budgets per {budget.period}", budget.span,
                           related=[Related(periods[budget.period], "first given here")])
                continue
            periods[budget.period] = budget.span
            amount = budget.amount.value
            value = micros(amount)
            if value is None:
                self.error(f"{budget.amount.plain()} USD is not finite or is finer than a micro-dollar",
                           budget.amount.span, help="budgets are kept in whole micro-dollars (0.000001 USD)")
                continue
            if value <= 0:
                self.error(f"a budget must be more than 0 (got {amount})", budget.amount.span,
                           help="to refuse every request, send the workspace to no rule; to allow any spend,"
                                " leave the budget out")
                continue
            budgets.append(ir.Budget(period=budget.period, micros=value, span=budget.span))
        fields["budgets"] = tuple(budgets)

    def _limit(self, entry: ast.PolicyItem, fields: dict) -> None:
        limits, seen = [], {}
        for limit in entry.value:
            key = (limit.unit, limit.per)
            if key in seen:
                self.error(f"{self.what} limits {limit.unit} per {limit.per} twice", limit.span,
                           related=[Related(seen[key], "first given here")])
                continue
            seen[key] = limit.span
            if limit.amount <= 0:
                self.error(f"a limit must be at least 1 {limit.unit[:-1]} (got {limit.text})", limit.span)
                continue
            limits.append(ir.RateLimit(unit=limit.unit, amount=limit.amount, per=limit.per, span=limit.span))
        fields["limits"] = tuple(limits)

    def _names(self, entry: ast.PolicyItem) -> tuple[str, ...]:
        names = []
        for name in entry.value:
            symbol = self.resolver.lookup(self.module, name, "target")
            if symbol is not None:
                names.append(symbol.name)
        return tuple(names)

    def _allow_targets(self, entry: ast.PolicyItem, fields: dict) -> None:
        fields["allow_targets"] = self._names(entry)

    def _prefer(self, entry: ast.PolicyItem, fields: dict) -> None:
        fields["prefer"] = self._names(entry)

    def _fallback(self, entry: ast.PolicyItem, fields: dict) -> None:
        fields["fallback"] = self._names(entry)

    def _strings(self, entry: ast.PolicyItem, fields: dict, field: str, what: str) -> None:
        value = strings(self.resolver, entry.value, what)
        if value is not None:
            fields[field] = value

    def _allow_providers(self, entry: ast.PolicyItem, fields: dict) -> None:
        self._strings(entry, fields, "allow_providers", "`allow providers`")

    def _allow_tags(self, entry: ast.PolicyItem, fields: dict) -> None:
        self._strings(entry, fields, "allow_tags", "`allow tags`")

    def _compliance(self, entry: ast.PolicyItem, fields: dict) -> None:
        self._strings(entry, fields, "compliance", "`compliance`")

    def _capabilities(self, entry: ast.PolicyItem, fields: dict) -> None:
        self._strings(entry, fields, "capabilities", "`capabilities`")

    def _timezone(self, entry: ast.PolicyItem, fields: dict) -> None:
        zone = entry.value.value
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(f"unknown time zone `{zone}`", entry.span,
                       help='an IANA zone name such as "UTC" or "Europe/Berlin"')
            return
        fields["timezone"] = zone

    def _require(self, entry: ast.PolicyItem, fields: dict) -> None:
        out: dict = {}
        seen: dict[str, ast.Requirement] = {}
        for req in entry.value:
            if req.metric in seen:
                self.error(f"{self.what} requires {req.metric} twice", req.span,
                           related=[Related(seen[req.metric].span, "first given here")])
                continue
            seen[req.metric] = req
            getattr(self, f"_require_{req.metric}")(req, out)
        if entry.otherwise is not None:
            out["refuse_when_none"] = entry.otherwise.text == "refuse"
        fields["requirements"] = ir.Requirements(**out, span=entry.span)

    def _direction(self, req: ast.Requirement, op: str, example: str) -> bool:
        if req.op == op:
            return True
        self.error(f"a {req.metric} requirement is written with `{op}`", req.span, help=f"e.g. `{example}`")
        return False

    def _require_success(self, req: ast.Requirement, out: dict) -> None:
        fraction, text = req.value
        if not self._direction(req, ">=", "success >= 95%"):
            return
        if not 0 < fraction <= 1:
            self.error(f"a success rate of {text} is not within 0%..100%", req.span)
            return
        out["min_success"] = fraction

    def _require_latency(self, req: ast.Requirement, out: dict) -> None:
        if not self._direction(req, "<=", "latency p95 <= 5s"):
            return
        text = req.percentile.text
        percentile = int(text[1:]) if text[:1] == "p" and text[1:].isdigit() else None
        if percentile not in PERCENTILES:
            self.error(f"`{text}` is not a latency percentile routelang measures", req.percentile.span,
                       help="one of " + ", ".join(f"p{p}" for p in PERCENTILES))
            return
        if req.value.ms <= 0:
            self.error("a latency bound must be more than 0", req.value.span)
            return
        out["max_latency_ms"] = round(req.value.ms)
        out["latency_percentile"] = percentile

    def _require_cost(self, req: ast.Requirement, out: dict) -> None:
        if not self._direction(req, "<=", "cost per 1k tokens <= 0.01"):
            return
        amount = req.value.value
        value = micros(amount) if amount >= 0 else None
        if value is None:
            self.error(f"{req.value.plain()} USD per 1k tokens is negative, not finite or finer than a micro-dollar",
                       req.value.span)
            return
        out["max_micros_per_1k"] = value


def _usd(micros: int) -> str:
    whole, frac = divmod(micros, ir.MICROS_PER_USD)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


def _names(names) -> str:
    from .parser import quote
    from .printer import is_identifier

    return ", ".join(n if is_identifier(n) else quote(n) for n in names)


def _strings(values) -> str:
    from .parser import quote

    return "[" + ", ".join(quote(v) for v in values) + "]"


def budgets_source(budgets: tuple[ir.Budget, ...]) -> str:
    """`100 USD per day, 500 per week`: how the language writes budgets."""
    first, *rest = budgets
    return f"{_usd(first.micros)} USD per {first.period}" + "".join(f", {_usd(b.micros)} per {b.period}" for b in rest)


def limits_source(limits: tuple[ir.RateLimit, ...]) -> str:
    """`600 requests per minute, 200000 tokens per minute`: how the language writes limits."""
    return ", ".join(f"{lim.amount} {lim.unit} per {lim.per}" for lim in limits)


def policy_source(policy: ir.Policy) -> str:
    """The `.route` block of a policy (the importer writes compiled policies back with it)."""
    from .parser import quote

    lines = []
    if policy.budgets:
        lines.append("budget " + budgets_source(policy.budgets))
    if policy.limits:
        lines.append("limit " + limits_source(policy.limits))
    if policy.allow_targets is not None:
        lines.append(f"allow targets [{_names(policy.allow_targets)}]")
    for field, words in (("allow_providers", "allow providers"), ("allow_tags", "allow tags")):
        if getattr(policy, field) is not None:
            lines.append(f"{words} {_strings(getattr(policy, field))}")
    for field in ("compliance", "capabilities"):
        if getattr(policy, field):
            lines.append(f"{field} {_strings(getattr(policy, field))}")
    for field in ("prefer", "fallback"):
        if getattr(policy, field):
            lines.append(f"{field} {_names(getattr(policy, field))}")
    req = policy.requirements
    if req is not None:
        parts = []
        if req.min_success is not None:
            percent = repr(float(Fraction(str(req.min_success)) * 100)).removesuffix(".0")
            parts.append(f"success >= {percent}%")
        if req.max_latency_ms is not None:
            parts.append(f"latency p{req.latency_percentile} <= {req.max_latency_ms}ms")
        if req.max_micros_per_1k is not None:
            parts.append(f"cost per 1k tokens <= {_usd(req.max_micros_per_1k)}")
        if parts:
            lines.append("require " + ", ".join(parts) + (" otherwise refuse" if req.refuse_when_none else ""))
    if policy.timezone != "UTC":
        lines.append(f"timezone {quote(policy.timezone)}")
    head = f"{policy.kind} {_names([policy.name])}"
    if policy.description is not None:
        head += f" {quote(policy.description)}"
    return head + (" {\n" + "".join(f"    {line}\n" for line in lines) + "}\n" if lines else " { }\n")


def _spelling(key: str) -> str:
    return key.replace("_", " ")


def build_policy(resolver: Resolver, module: Module, item: ast.PolicyDef) -> ir.Policy | None:
    return PolicyBuilder(resolver, module, item).build()


def target_value(resolver: Resolver, setting, value, span) -> object:
    """A target setting of kind `money` or `strings`, as the IR keeps it (None: reported)."""
    if setting.kind == "money":
        amount = micros(value) if isinstance(value, (int, float)) and value >= 0 else None
        if amount is None:
            resolver.error(INVALID_POLICY, f"`{setting.surface}` {value} is negative, not finite or finer than a micro-dollar",
                           span, help="prices are in USD per 1k tokens, in whole micro-dollars (0.000001)")
        return amount
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        resolver.error(TYPE_MISMATCH, f"`{setting.surface}` is a list of non-empty strings", span,
                       help=f'e.g. {setting.surface} ["gdpr"]')
        return None
    return tuple(value)


# ---- items given outside a .route file --------------------------------------------------------

OUTSIDE_ITEMS = ("budget", "limit")


class _Collected:
    """A Resolver that keeps what is reported (budgets and limits look nothing up)."""

    def __init__(self):
        self.diagnostics: list[Diagnostic] = []

    def error(self, code, message, span, help=None, related=None, rule=None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, help=help, related=related or []))

    def lookup(self, module, name, kind):
        raise AssertionError("budgets and limits name nothing")


def outside_items(what: str, items: dict[str, str]) -> tuple[ir.Policy | None, list[Diagnostic]]:
    """The budgets and limits of something declared outside a `.route` file (a key's
    `--budget "10 USD per day"`, `--limit "60 requests per minute"`), read by the language's
    own grammar and checks, so they are written and refused exactly as in a workspace (the
    messages call their owner `what`: "the key"). Each value's diagnostics are located in it,
    in a file named `--budget` or `--limit`."""
    from .parser import parse

    sources, lines = {}, ["workspace outside {"]
    for item, text in items.items():
        if item not in OUTSIDE_ITEMS:
            raise ValueError(f"{item!r} is not one of {OUTSIDE_ITEMS}")
        sources[len(lines) + 1] = Source(f"--{item}", text)
        for column, char in enumerate(text, 1):
            if char in "{}\n\r":
                shown = {"\n": "a line break", "\r": "a line break"}.get(char, f"`{char}`")
                return None, [Diagnostic(SYNTAX_ERROR, f"{shown} cannot be part of a {item}",
                                         Span(f"--{item}", 1, column, 1, column + 1),
                                         help=f"give only the {item}'s values, as in a workspace:"
                                              + (' "10 USD per day, 50 per week"' if item == "budget"
                                                 else ' "60 requests per minute, 20k tokens per minute"'))]
        lines.append(f"{item} {text}")
    lines.append("}")
    tree, diagnostics = parse(Source("<outside>", "\n".join(lines)))

    def located(d: Diagnostic) -> Diagnostic:
        source = sources.get(d.span.line)
        if source is None:   # past the last value: it ended too soon
            source = sources[max(sources)]
            end = len(source.text) + 1
            return Diagnostic(d.code, f"the {source.name.removeprefix('--')} ends too soon",
                              Span(source.name, 1, end, 1, end + 1), help=d.help)
        shift = len(source.name) - 1   # the item's word and its space, before the value
        span = Span(source.name, 1, max(1, d.span.column - shift), 1, max(2, d.span.end_column - shift))
        return Diagnostic(d.code, d.message, span, help=d.help)

    if not diagnostics:
        resolver = _Collected()
        builder = PolicyBuilder(resolver, None, tree.items[0])
        builder.what = what
        policy = builder.build()
        diagnostics = resolver.diagnostics
    out = [located(d) for d in diagnostics]
    return (None if out else policy), out
