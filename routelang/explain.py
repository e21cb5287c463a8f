"""`routelang explain`: what a router does, for people reviewing it.

Works on the IR: rules in evaluation order (disabled rules apart), each
condition in plain words, each strategy with every target's share of the
traffic, what happens when nothing matches, and the findings (checker
warnings, lint, and the notes on what Mixtrain does differently).

`explain_data(result)` builds one structure; the three formats render it:
`json` (stable, versioned: FORMAT_VERSION), `table` (plain text for a
terminal) and `markdown` (a review document: summary table, a mermaid
flowchart of the decision order, a section per rule).
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from typing import Any

from . import ir
from .backends.json import lower
from .compiler import CompileResult
from .diagnostics import Diagnostic, sort_diagnostics
from .vocab import operators, strategies

FORMAT_VERSION = 1
FORMATS = ("table", "json", "markdown")
ORDER_WORDS = "highest priority first, ties in file order, the first rule that matches routes the request"


# ---- conditions in words -----------------------------------------------------------

def literal(value: Any) -> str:
    """A value as a reader expects it: strings quoted, numbers as written."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


def compare_words(c: ir.Compare) -> str:
    op = operators.get(c.operator)
    if op.unary:
        text = f"{c.field} {op.phrase}"
    elif op.operand == "pattern":
        text = f"{c.field} {op.phrase} /{c.value}/"
    elif op.operand == "list" and isinstance(c.value, list):
        text = f"{c.field} {op.phrase} {', '.join(literal(v) for v in c.value) or '(nothing)'}"
    else:
        text = f"{c.field} {op.phrase} {literal(c.value)}"
    if c.description:
        text += f" ({c.description})"
    return text


def condition_words(cond: ir.Condition | None) -> str:
    """One line; `and` binds tighter than `or`, and every nested group is in parentheses."""
    if cond is None:
        return "every request"
    if isinstance(cond, ir.Compare):
        return compare_words(cond)
    if isinstance(cond, ir.Not):
        return f"not ({condition_words(cond.item)})"
    word = " and " if isinstance(cond, ir.AllOf) else " or "
    return word.join(
        f"({condition_words(c)})" if isinstance(c, (ir.AllOf, ir.AnyOf)) else condition_words(c)
        for c in cond.items
    )


def condition_outline(cond: ir.Condition | None, depth: int = 0) -> list[str]:
    """A bulleted outline (markdown), one comparison per line."""
    pad = "  " * depth
    if cond is None or isinstance(cond, ir.Compare):
        return [f"{pad}- {md_code(condition_words(cond))}"]
    if isinstance(cond, ir.Not):
        return [f"{pad}- none of:", *condition_outline(cond.item, depth + 1)]
    head = "all of:" if isinstance(cond, ir.AllOf) else "any of:"
    return [f"{pad}- {head}", *(line for c in cond.items for line in condition_outline(c, depth + 1))]


# ---- strategies and targets ------------------------------------------------------------

def target_name(t: ir.Target) -> str:
    return t.name or t.label or f"{t.provider}:{t.model_name}"


def percent(x: float) -> str:
    return f"{x * 100:.4g}%"


def _shares(s: ir.Strategy) -> list[tuple[str, float | None]]:
    """(role, share of traffic) per member; None where it is decided per request."""
    defn = strategies.strategy(s.kind)
    n = len(s.members)
    first, rest = defn.roles
    if defn.shares == "weighted":
        total = sum(m.weight or 0.0 for m in s.members) or 1.0
        return [(first, (m.weight or 0.0) / total) for m in s.members]
    if defn.shares == "equal":
        return [(first, 1.0 / n)] * n
    if defn.shares == "chain":
        return [(first, 1.0)] + [(f"{rest} {i}", None) for i in range(1, n)]
    if defn.shares == "per_request":
        return [(first, None)] * n
    return [(first, 1.0)] + [(rest, 1.0)] * (n - 1)  # all / mirrored


def _target_shares(s: ir.Strategy, scale: float | None = 1.0,
                   where: str = "") -> list[tuple[ir.Target, str, float | None]]:
    """(target, role, share of the rule's traffic it gets first) for every target,
    nested ones included: a nested strategy's targets share its part, and their
    role says where they are ("fallback 1 in primary/preferred")."""
    out = []
    for i, (member, (role, share)) in enumerate(zip(s.members, _shares(s)), 1):
        inner = member.strategy if isinstance(member, ir.NestedArm) else member
        total = None if share is None or scale is None else share * scale
        if isinstance(inner, ir.Target):
            out.append((inner, f"{role} in {where}" if where else role, total))
            continue
        if isinstance(member, ir.NestedArm):
            step = member.label or f"arm {i}"
        else:
            step = f"step {i}"
        out.extend(_target_shares(inner, total, f"{where}/{step}" if where else step))
    return out


def member_words(member) -> str:
    """A member in words: a target's name, or a nested strategy in parentheses."""
    if isinstance(member, ir.NestedArm):
        words = f"({strategy_words(member.strategy)})"
        return f"{member.label} {words}" if member.label else words
    return target_name(member) if isinstance(member, ir.Target) else f"({strategy_words(member)})"


def strategy_words(s: ir.Strategy) -> str:
    defn = strategies.strategy(s.kind)
    names = [member_words(m) for m in s.members]
    shares = _shares(s)
    split_shares = " / ".join(
        f"{percent(share)} {name}" for (_, share), name in zip(shares, names) if share is not None)
    text = defn.explain.format(
        first=names[0], second=names[-1], names=", ".join(names),
        numbered=" ".join(f"{i}. {name}" for i, name in enumerate(names, 1)),
        shares=split_shares, each=percent(1 / len(names)),
        weights=", ".join(f"{f} {percent(getattr(s, f'{f}_weight') or 0.0)}" for f in defn.score_factors),
    )
    if isinstance(s, ir.Split) and s.sticky_by:
        text += f", sticky by {s.sticky_by}"
        if s.salt is not None:
            text += f" (salt {literal(s.salt)})"
    if isinstance(s, ir.Split) and not s.failover:
        text += ", no failover to another arm"
    return text


def _strategy_data(s: ir.Strategy) -> dict:
    """The strategy's kind, words and parameters (None where the kind has none);
    `members` lists nested strategies' data, for a strategy with any."""
    out: dict[str, Any] = {
        "kind": s.kind,
        "words": strategy_words(s),
        "sticky_by": getattr(s, "sticky_by", None),
        "salt": getattr(s, "salt", None),
        "failover": getattr(s, "failover", None),
    }
    for factor in strategies.SCORE_FACTORS:
        out[f"{factor}_weight"] = getattr(s, f"{factor}_weight", None)
    if s.nested():
        out["members"] = [
            {"target": target_name(m)} if isinstance(m, ir.Target) else {
                "weight": m.weight if isinstance(m, ir.NestedArm) else None,
                "label": m.label if isinstance(m, ir.NestedArm) else None,
                **_strategy_data(m.strategy if isinstance(m, ir.NestedArm) else m)}
            for m in s.members
        ]
    return out


def _duration(ms: int | None) -> str | None:
    if ms is None:
        return None
    return f"{ms // 1000}s" if ms % 1000 == 0 and ms else f"{ms}ms"


def _target_data(t: ir.Target, role: str, share: float | None) -> dict:
    cb, hc = t.circuit_breaker, t.health_check
    return {
        "name": target_name(t),
        "role": role,
        "share": share,
        "provider": t.provider,
        "model": t.model_name,
        "endpoint": t.endpoint,
        "label": t.label,
        "timeout_ms": t.timeout_ms,
        "retries": t.retry_count,
        "cost_per_1k_tokens": t.cost_per_1k_tokens,
        "header_names": sorted(t.headers) if t.headers else [],
        "circuit_breaker": None if cb is None else {
            "failure_threshold": cb.failure_threshold,
            "cooldown_ms": cb.cooldown_ms,
            "success_threshold": cb.success_threshold,
        },
        "health_check": None if hc is None else {
            "path": hc.path, "interval_ms": hc.interval_ms, "timeout_ms": hc.timeout_ms,
        },
    }


def breaker_words(cb: dict | None) -> str:
    if cb is None:
        return "-"
    return (f"open after {_count(cb['failure_threshold'], 'failure')}, retry after {_duration(cb['cooldown_ms'])}, "
            f"close after {_count(cb['success_threshold'], 'success')}")


def health_words(hc: dict | None) -> str:
    if hc is None:
        return "-"
    text = f"{hc['path']} every {_duration(hc['interval_ms'])}"
    return text + (f", timeout {_duration(hc['timeout_ms'])}" if hc["timeout_ms"] is not None else "")


def setting_lines(t: dict) -> list[str]:
    """Every setting of a target that is set, one phrase each (the table and
    markdown formats; the json format has the same facts as fields)."""
    out = []
    if t["label"] is not None and t["label"] != t["name"]:
        out.append(f"label {literal(t['label'])}")
    if t["timeout_ms"] is not None:
        out.append(f"timeout {_duration(t['timeout_ms'])}")
    if t["retries"] is not None:
        out.append(f"retries {t['retries']}")
    if t["cost_per_1k_tokens"] is not None:
        out.append(f"cost {literal(t['cost_per_1k_tokens'])} per 1k tokens")
    if t["header_names"]:
        out.append(f"headers {', '.join(t['header_names'])}")
    if t["circuit_breaker"] is not None:
        out.append(f"circuit breaker: {breaker_words(t['circuit_breaker'])}")
    if t["health_check"] is not None:
        out.append(f"health check: {health_words(t['health_check'])}")
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"


# ---- the structure every format renders ---------------------------------------------

def findings(result: CompileResult) -> list[Diagnostic]:
    """Checker warnings, lint findings (when the linter is installed) and the
    notes on what Mixtrain does differently, once each, in source order."""
    found = list(result.diagnostics)
    if importlib.util.find_spec("routelang.lint") is not None:
        from .lint import lint

        found += lint(result)
    if result.router is not None:
        found += lower(result.router)[1]
    unique: dict[tuple, Diagnostic] = {}
    for d in found:
        key = (d.code.code, d.message, d.span.file, d.span.line, d.span.column)
        unique.setdefault(key, d)
    return sort_diagnostics(list(unique.values()))


def _finding_data(d: Diagnostic) -> dict:
    return {
        "code": d.code.code,
        "name": d.code.name,
        "severity": d.level.value,
        "rule": d.rule,
        "message": d.message,
        "file": d.span.file,
        "line": d.span.line,
        "column": d.span.column,
        "help": d.help,
    }


def _rule_data(rule: ir.Rule, order: int | None) -> dict:
    s = rule.strategy
    return {
        "order": order,
        "name": rule.name,
        "priority": rule.priority,
        "description": rule.description,
        "enabled": rule.enabled,
        "when": {
            "words": condition_words(rule.when),
            "tree": ir.condition_tree(rule.when) if rule.when is not None else None,
        },
        "strategy": _strategy_data(s),
        "targets": [_target_data(t, role, share) for t, role, share in _target_shares(s)],
    }


def explain_data(result: CompileResult) -> dict:
    """The explanation as plain data (the `json` format; see docs/explain.md)."""
    router = result.router
    if router is None:
        raise ValueError("explain needs a router that compiles")
    ordered = router.evaluation_order()
    catch_all = next((r for r in ordered if r.when is None), None)
    if catch_all is not None:
        no_match = f"every request matches by rule `{catch_all.name}` at the latest (it has no `when`)"
    else:
        no_match = "a request that matches no rule gets no route: the engine reports no match"
    return {
        "format_version": FORMAT_VERSION,
        "router": {
            "name": router.name,
            "description": router.description,
            "metadata": router.metadata,
            "rules": len(router.rules),
            "enabled_rules": len(ordered),
            "no_match": no_match,
        },
        "rules": [_rule_data(r, i) for i, r in enumerate(ordered, 1)],
        "disabled_rules": [_rule_data(r, None) for r in router.rules if not r.enabled],
        "findings": [_finding_data(d) for d in findings(result)],
    } | ({"policies": [policy_data(router, p) for p in router.policies]} if router.policies else {})


def money(micros: int) -> str:
    """Micro-dollars in USD, with as many decimals as they need (never rounded)."""
    whole, frac = divmod(micros, ir.MICROS_PER_USD)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") + " USD"


def policy_data(router: ir.Router, policy: ir.Policy) -> dict:
    """A workspace's or agent's limits, restrictions, requirements and the
    router's targets it may and may not use (with why not)."""
    restrictions = []
    if policy.allow_targets is not None:
        restrictions.append("targets " + ", ".join(policy.allow_targets))
    if policy.prefer or policy.fallback:
        restrictions.append("prefers " + ", ".join(policy.prefer or ("-",))
                            + "; falls back to " + ", ".join(policy.fallback or ("-",)))
    if policy.allow_providers is not None:
        restrictions.append("providers " + ", ".join(policy.allow_providers))
    if policy.allow_tags is not None:
        restrictions.append("targets tagged " + " or ".join(policy.allow_tags))
    if policy.compliance:
        restrictions.append("compliance " + " and ".join(policy.compliance))
    if policy.capabilities:
        restrictions.append("capabilities " + " and ".join(policy.capabilities))
    req = policy.requirements
    requirements = []
    if req is not None:
        if req.min_success is not None:
            requirements.append(f"success >= {percent(req.min_success)}")
        if req.max_latency_ms is not None:
            requirements.append(f"latency p{req.latency_percentile} <= {_duration(req.max_latency_ms)}")
        if req.max_micros_per_1k is not None:
            requirements.append(f"cost per 1k tokens <= {money(req.max_micros_per_1k)}")
    targets: dict[str, ir.Target] = {}
    for rule in router.rules:
        for t in rule.strategy.targets:
            targets.setdefault(target_name(t), t)
    may, may_not = [], []
    for name, t in targets.items():
        why = policy.refusals(t)
        (may_not.append({"target": name, "why": "; ".join(why)}) if why else may.append(name))
    return {
        "kind": policy.kind,
        "name": policy.name,
        "description": policy.description,
        "request_field": policy.request_field,
        "budgets": [f"{money(b.micros)} per {b.period}" for b in policy.budgets],
        "limits": [f"{lim.amount} {lim.unit} per {lim.per}" for lim in policy.limits],
        "timezone": policy.timezone,
        "restrictions": restrictions,
        "requirements": requirements,
        "when_none_qualifies": ("refuse" if req is not None and req.refuse_when_none else "serve the best left"),
        "may_use": may,
        "may_not_use": may_not,
    }


def policy_lines(data: dict) -> list[str]:
    """One workspace or agent in plain text (explain's table, the language server's hover)."""
    title = f"{data['kind']} {data['name']}" + (f": {data['description']}" if data["description"] else "")
    out = [title, f"  requests with {data['request_field']} == \"{data['name']}\""]
    if data["budgets"]:
        out.append(f"  budgets: {', '.join(data['budgets'])} (calendar, {data['timezone']})")
    if data["limits"]:
        out.append(f"  limits: {', '.join(data['limits'])}")
    if data["restrictions"]:
        out.append(f"  restricted to: {'; '.join(data['restrictions'])}")
    if data["requirements"]:
        out.append(f"  requires: {', '.join(data['requirements'])}; when no target qualifies:"
                   f" {data['when_none_qualifies']}")
    out.append(f"  may use: {', '.join(data['may_use']) or '(none)'}")
    out += [f"  may not use {x['target']}: {x['why']}" for x in data["may_not_use"]]
    return out


def explain(result: CompileResult, fmt: str = "table") -> str:
    """The explanation of a compiled router in `fmt` (table, json or markdown)."""
    data = explain_data(result)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return render_markdown(data, result.router)
    if fmt == "table":
        return render_table(data)
    raise ValueError(f"unknown explain format {fmt!r}; choose one of {', '.join(FORMATS)}")


# ---- table (plain text) ---------------------------------------------------------------

def _share_words(target: dict) -> str:
    role, share = target["role"], target["share"]
    if role == "mirror":
        return f"mirror: a copy of {percent(share)}, response discarded"
    if role == "candidate":
        return "chosen per request"
    if share is None:
        return role
    return percent(share)


def text_table(headers: list[str], rows: list[list[str]], wrap: dict[int, int] | None = None) -> str:
    """An aligned plain-text table; cells may hold several lines; `wrap`
    gives a maximum width for some columns."""
    wrap = wrap or {}
    cells = []
    for row in [headers, *rows]:
        split_row = []
        for i, cell in enumerate(row):
            lines = []
            for line in str(cell).split("\n"):
                lines += textwrap.wrap(line, wrap[i], break_on_hyphens=False) if i in wrap and line else [line]
            split_row.append(lines or [""])
        cells.append(split_row)
    widths = [max(len(line) for row in cells for line in row[i]) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        for k in range(max(len(c) for c in row)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(row, widths)]
            out.append("  ".join(parts).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _rules_table(rules: list[dict], numbered: bool) -> str:
    headers = (["#"] if numbered else []) + ["RULE", "PRIORITY", "WHEN", "STRATEGY", "TARGETS"]
    rows = []
    for r in rules:
        targets = "\n".join(f"{t['name']} ({_share_words(t)})" for t in r["targets"])
        row = [r["name"], str(r["priority"]), r["when"]["words"], r["strategy"]["words"], targets]
        rows.append(([str(r["order"])] if numbered else []) + row)
    offset = 1 if numbered else 0
    return text_table(headers, rows, wrap={offset + 2: 44, offset + 3: 32})


def _targets_table(data: dict) -> str:
    """Each distinct target once (same name and settings), with the rules that use it."""
    seen: dict[str, tuple[dict, list[str]]] = {}
    for r in data["rules"] + data["disabled_rules"]:
        for t in r["targets"]:
            key = json.dumps({k: v for k, v in t.items() if k not in ("role", "share")}, sort_keys=True)
            used_by = seen.setdefault(key, (t, []))[1]
            if r["name"] not in used_by:
                used_by.append(r["name"])
    rows = [[t["name"], t["provider"], t["model"], t["endpoint"], "\n".join(setting_lines(t)) or "-",
             ", ".join(used_by)] for t, used_by in seen.values()]
    headers = ["TARGET", "PROVIDER", "MODEL", "ENDPOINT", "SETTINGS", "USED BY"]
    return text_table(headers, rows, wrap={3: 40, 4: 40})


def _finding_line(f: dict) -> str:
    where = f"{f['file']}:{f['line']}:{f['column']}"
    text = f"{where}: {f['severity']}[{f['code']} {f['name']}]: {f['message']}"
    if f["help"]:
        text += f"\n    help: {f['help']}"
    return text


def render_table(data: dict) -> str:
    router = data["router"]
    title = f"router {router['name']}"
    if router["description"]:
        title += f": {router['description']}"
    out = [title, ""]
    out += [f"Rules in evaluation order ({router['enabled_rules']} enabled; {ORDER_WORDS}):", ""]
    out += [_rules_table(data["rules"], numbered=True) if data["rules"] else "(no enabled rules)", ""]
    out += [f"When nothing matches: {router['no_match']}.", ""]
    if data["disabled_rules"]:
        out += ["Disabled rules (never evaluated):", "", _rules_table(data["disabled_rules"], numbered=False), ""]
    if data["rules"] or data["disabled_rules"]:
        out += ["Targets:", "", _targets_table(data), ""]
    if data.get("policies"):
        out += ["Workspaces and agents:", ""]
        for policy in data["policies"]:
            out += [*policy_lines(policy), ""]
    out.append(f"Findings ({len(data['findings'])}):")
    out += [""] + [_finding_line(f) for f in data["findings"]] if data["findings"] else ["(none)"]
    return "\n".join(out).rstrip() + "\n"


# ---- markdown ---------------------------------------------------------------------------

def md_code(text: str) -> str:
    """`text` as an inline code span, whatever backticks it holds."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell(text: str) -> str:
    """Text safe inside a markdown table cell (GFM reads `\\|` as a pipe even in code spans)."""
    return text.replace("|", "\\|").replace("\n", "<br>")


def md_text(text: str) -> str:
    """Plain user text in markdown, with the characters that start markup escaped."""
    out = "".join("\\" + ch if ch in "\\`*_[]<>|~" else ch for ch in text)
    return "\\" + out if out[:1] in ("#", "+", "-", "=") else out


def md_message(text: str) -> str:
    """A diagnostic message: its `code spans` kept, the text around them escaped."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an odd backtick: treat it all as text
        return md_text(text)
    return "".join(f"`{part}`" if i % 2 else md_text(part) for i, part in enumerate(parts))


def mermaid_label(text: str, limit: int = 90) -> str:
    """A mermaid node label: quoted, with the characters mermaid reads as syntax
    written as entity codes (mermaid's `#code;` form)."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    codes = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;",
             "\n": " "}
    return '"' + "".join(codes.get(ch, ch) for ch in text) + '"'


def _mermaid(data: dict) -> list[str]:
    rules = data["rules"]
    lines = ["```mermaid", "flowchart TD", '    start(["request"])']
    previous, edge = "start", ""
    for r in rules:
        node = f"r{r['order']}"
        label = f"{r['order']}. {r['name']}: {r['when']['words']}"
        lines.append(f"    {node}{{{mermaid_label(label)}}}")
        lines.append(f"    {previous} {edge}--> {node}" if previous else f"    %% {node} is never reached")
        lines.append(f"    {node}_to[{mermaid_label(r['strategy']['words'])}]")
        always = r["when"]["tree"] is None
        lines.append(f"    {node} -- {'always' if always else 'yes'} --> {node}_to")
        previous, edge = (None, "") if always else (node, "-- no ")
    lines.append('    none(["no match"])')
    lines.append(f"    {previous} {edge}--> none" if previous else "    %% no request reaches no match")
    lines.append("```")
    return lines


def _target_rows(r: dict) -> list[str]:
    rows = ["| Target | Share | Provider | Model | Endpoint | Settings |", "|---|---|---|---|---|---|"]
    for t in r["targets"]:
        settings = "\n".join(md_text(line) for line in setting_lines(t)) or "-"
        cells = [md_code(t["name"]), _share_words(t), md_code(t["provider"]), md_code(t["model"]),
                 md_code(t["endpoint"]), settings]
        rows.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return rows


def _rule_section(r: dict, rule_findings: list[dict], ir_rule: ir.Rule) -> list[str]:
    heading = f"{r['order']}. " if r["order"] is not None else ""
    out = [f"### {heading}{md_code(r['name'])} (priority {r['priority']})", ""]
    if r["description"]:
        out += [md_text(r["description"]), ""]
    if ir_rule.when is None:
        out += ["**When:** every request", ""]
    else:
        out += ["**When:**", "", *condition_outline(ir_rule.when), ""]
    out += [f"**Strategy:** {md_code(r['strategy']['words'])}", ""]
    out += _target_rows(r) + [""]
    for f in rule_findings:
        out.append(f"- {f['severity']} **{f['code']} {f['name']}**: {md_message(f['message'])}")
    if rule_findings:
        out.append("")
    return out


def render_markdown(data: dict, router_ir: ir.Router) -> str:
    router = data["router"]
    out = [f"# Router {md_code(router['name'])}", ""]
    if router["description"]:
        out += [md_text(router["description"]), ""]
    out += [f"Rules in evaluation order: {ORDER_WORDS}.", ""]
    out += ["| # | Rule | Priority | When | Strategy |", "|---|---|---|---|---|"]
    for r in data["rules"]:
        cells = [str(r["order"]), md_code(r["name"]), str(r["priority"]), md_code(r["when"]["words"]),
                 md_code(r["strategy"]["words"])]
        out.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    out += ["", f"When nothing matches: {md_message(router['no_match'])}.", ""]
    out += ["## Decision order", "", *_mermaid(data), ""]
    by_rule: dict[str | None, list[dict]] = {}
    for f in data["findings"]:
        by_rule.setdefault(f["rule"], []).append(f)
    out += ["## Rules", ""]
    for r, rule in zip(data["rules"], router_ir.evaluation_order()):
        out += _rule_section(r, by_rule.get(r["name"], []), rule)
    if data["disabled_rules"]:
        out += ["## Disabled rules", "", "These rules are never evaluated.", ""]
        for r, rule in zip(data["disabled_rules"], [x for x in router_ir.rules if not x.enabled]):
            out += _rule_section(r, by_rule.get(r["name"], []), rule)
    if data.get("policies"):
        out += ["## Workspaces and agents", ""]
        for policy in data["policies"]:
            out += ["```", *policy_lines(policy), "```", ""]
    out += ["## Findings", ""]
    if not data["findings"]:
        out += ["None.", ""]
    for f in data["findings"]:
        where = f"{f['file']}:{f['line']}:{f['column']}"
        out.append(f"- {f['severity']} **{f['code']} {f['name']}** ({md_code(where)}): {md_message(f['message'])}")
    return "\n".join(out).rstrip() + "\n"
