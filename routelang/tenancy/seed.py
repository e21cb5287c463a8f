"""The model-router service's workspace and agent shapes, both ways:
`POST /api/workspaces/{id}/config` and `POST /api/agents/{agentType}/preferences`
bodies become `workspace` / `agent` blocks of `.route` text (then pushed and
checked like any version), and a policy reads back as those bodies.

Units: budgets are USD; `maxLatency` is milliseconds; `minSuccessRate` a
fraction; `maxCostPerToken` USD per token (routelang writes it per 1k tokens).
Models are named by target name or model name and written as target names.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .. import ir
from ..parser import quote

PERIODS = {"daily": "day", "weekly": "week", "monthly": "month"}


class SeedProblem(ValueError):
    """A body that names no target of the router, or a value routelang cannot state."""


def _number(value: Fraction) -> str:
    """An exact decimal spelling (`0.01`, `100`, `2000.5`); money finer than that is the checker's to refuse."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.12f}".rstrip("0").rstrip(".")
    if Fraction(text) != value:
        raise SeedProblem(f"{float(value)} cannot be written exactly")
    return text


def _exact(value: float) -> Fraction:
    return Fraction(str(value))


def target_names(router: ir.Router, models: list[str], field: str) -> list[str]:
    """The router's target names for `models` (each a target name or a model name), in order."""
    targets: dict[str, ir.Target] = {}
    for rule in router.rules:
        for t in rule.strategy.targets:
            if t.name is not None:
                targets.setdefault(t.name, t)
    out: list[str] = []
    for model in models:
        found = [name for name, t in targets.items() if model in (name, t.model_name)]
        if not found:
            known = ", ".join(sorted({t.model_name for t in targets.values()} | set(targets)))
            raise SeedProblem(f"{field}: the router has no target or model {model!r} (it has: {known})")
        out.extend(n for n in found if n not in out)
    return out


def _names(names: list[str]) -> str:
    return ", ".join(n if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", n) else quote(n) for n in names)


def _strings(values: list[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def _require(quality: dict, cost_per_token: float | None = None) -> str | None:
    parts = []
    if quality.get("minSuccessRate") is not None:
        parts.append(f"success >= {_number(_exact(quality['minSuccessRate']) * 100)}%")
    if quality.get("maxLatency") is not None:
        parts.append(f"latency p95 <= {_number(_exact(quality['maxLatency']))}ms")
    if cost_per_token is not None:
        parts.append(f"cost per 1k tokens <= {_number(_exact(cost_per_token) * 1000)}")
    return "require " + ", ".join(parts) if parts else None


def workspace_block(router: ir.Router, workspace: str, config: dict, kept: list[str] = ()) -> str:
    """`kept`: lines of the block it replaces that the service's shape has no field for (limits, ...)."""
    lines = []
    budgets = config.get("budgetLimits") or {}
    written = [(PERIODS[k], _exact(v)) for k, v in budgets.items() if v is not None]
    if written:
        first, *rest = written
        lines.append(f"budget {_number(first[1])} USD per {first[0]}"
                     + "".join(f", {_number(amount)} per {period}" for period, amount in rest))
    if config.get("modelRestrictions"):
        lines.append(f"allow targets [{_names(target_names(router, config['modelRestrictions'], 'modelRestrictions'))}]")
    if config.get("complianceRequirements"):
        lines.append(f"compliance {_strings(config['complianceRequirements'])}")
    require = _require(config.get("qualityRequirements") or {})
    if require:
        lines.append(require)
    return _block("workspace", workspace, lines + list(kept))


def agent_block(router: ir.Router, agent: str, preferences: dict, kept: list[str] = ()) -> str:
    lines = []
    if preferences.get("preferredModels"):
        lines.append(f"prefer {_names(target_names(router, preferences['preferredModels'], 'preferredModels'))}")
    if preferences.get("fallbackModels"):
        lines.append(f"fallback {_names(target_names(router, preferences['fallbackModels'], 'fallbackModels'))}")
    if preferences.get("requiredCapabilities"):
        lines.append(f"capabilities {_strings(preferences['requiredCapabilities'])}")
    performance = preferences.get("performanceRequirements") or {}
    require = _require(performance, performance.get("maxCostPerToken"))
    if require:
        lines.append(require)
    return _block("agent", agent, lines + list(kept))


def _block(kind: str, name: str, lines: list[str]) -> str:
    head = f"{kind} {_names([name])}"
    if not lines:
        return head + " { }\n"
    return head + " {\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


# The items of a block the service's shapes say nothing about: a replaced block keeps them.
UNSAID = {"workspace": ("limit", "timezone", "allow_providers", "allow_tags", "capabilities"),
          "agent": ("budget", "limit", "timezone", "allow_targets", "allow_providers", "allow_tags", "compliance")}
_KEYWORDS = {"allow_providers": "allow providers", "allow_tags": "allow tags", "allow_targets": "allow targets"}


def _find(text: str, kind: str, name: str):
    from .. import ast
    from ..parser import parse
    from ..source import Source

    file, _ = parse(Source("<config>", text))
    return next((i for i in file.items if isinstance(i, ast.PolicyDef) and i.kind == kind and i.name.text == name),
                None)


def unsaid_lines(text: str, kind: str, name: str) -> list[str]:
    """The lines of the existing block that its replacement keeps (UNSAID), as written."""
    found = _find(text, kind, name)
    if found is None:
        return []
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    out = []
    for item in found.items:
        if item.key in UNSAID[kind]:
            span = item.span
            written = text[starts[span.line - 1] + span.column - 1:starts[span.end_line - 1] + span.end_column - 1]
            out.append(f"{_KEYWORDS.get(item.key, item.key)} {' '.join(written.split())}")
    return out


def replace_block(text: str, kind: str, name: str, block: str) -> str:
    """`text` with its `kind name { ... }` block replaced by `block`, or `block` appended."""
    found = _find(text, kind, name)
    if found is None:
        return text.rstrip("\n") + "\n\n" + block
    lines = text.split("\n")
    start = sum(len(line) + 1 for line in lines[:found.name.span.line - 1])
    start = text.rindex(kind, 0, start + found.name.span.column - 1)
    end = _closing_brace(text, text.index("{", start + len(kind)))
    return text[:start] + block.rstrip("\n") + text[end + 1:]


_TOKENS = re.compile(r'r"[^"\n]*"|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}]')


def _closing_brace(text: str, opening: int) -> int:
    depth = 0
    for m in _TOKENS.finditer(text, opening):
        if m.group() == "{":
            depth += 1
        elif m.group() == "}":
            depth -= 1
            if depth == 0:
                return m.start()
    raise SeedProblem("the block is never closed")


def workspace_config(policy: ir.Policy) -> dict:
    """A workspace as the service's `GET /api/workspaces/{id}/config` answers it."""
    budgets = {name: _usd(b.micros) for name, period in PERIODS.items()
               for b in policy.budgets if b.period == period}
    req = policy.requirements
    return {
        "workspaceId": policy.name,
        "modelRestrictions": list(policy.allow_targets or ()),
        "budgetLimits": budgets,
        "qualityRequirements": {} if req is None else {
            k: v for k, v in (("minSuccessRate", req.min_success), ("maxLatency", req.max_latency_ms))
            if v is not None},
        "complianceRequirements": list(policy.compliance),
    }


def agent_preferences(policy: ir.Policy) -> dict:
    req = policy.requirements
    performance = {} if req is None else {k: v for k, v in (
        ("maxLatency", req.max_latency_ms), ("minSuccessRate", req.min_success),
        ("maxCostPerToken", None if req.max_micros_per_1k is None else req.max_micros_per_1k / 1e9))
        if v is not None}
    return {"agentType": policy.name, "preferredModels": list(policy.prefer), "fallbackModels": list(policy.fallback),
            "requiredCapabilities": list(policy.capabilities), "performanceRequirements": performance}


def _usd(micros: int) -> int | float:
    whole, rest = divmod(micros, ir.MICROS_PER_USD)
    return whole if rest == 0 else micros / ir.MICROS_PER_USD
