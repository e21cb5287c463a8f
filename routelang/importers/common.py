"""What every importer shares: its notes and problems, and the spelling of a
`.route` file from plain parts (targets, strategies, conditions, rules).

The peers' importers (litellm.py, portkey.py, hybrid.py) describe a router
with the small classes below; `write_file` spells it and puts it in
`routelang fmt` layout. (The Mixtrain importer builds syntax nodes instead:
it also serves `routelang check CONFIG.json`, which needs every node located
in the JSON.)
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..fmt import format_text
from ..parser import quote
from ..printer import PrinterBug, duration_text, field_text, is_identifier, percent_text, regex_text, value_text

Path = tuple


class ImportProblem(ValueError):
    """The input is not a config the peer loads. `problems` are (path, message) pairs."""

    def __init__(self, message: str, problems: list[tuple[Path, str]] | None = None):
        super().__init__(message)
        self.problems = problems or [((), message)]


@dataclass(frozen=True)
class ImportNote:
    """Something in the config that the `.route` file cannot say exactly."""

    where: str
    message: str
    path: Path = ()        # where in the input

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# ---- reading a config's values: a value of the wrong type is a problem, never a crash ------

def mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ImportProblem(f"{where} is a mapping, not {value!r}")
    return value


def listing(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise ImportProblem(f"{where} is a list, not {value!r}")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ImportProblem(f"{where} is a string, not {value!r}")
    return value


def number(value: Any, where: str) -> float:
    """A count, weight or duration: an int or a float at least 0 (a string of digits too, as
    YAML configs write them), never a boolean."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):   # text that is no number is refused below
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ImportProblem(f"{where} is a number at least 0, not {value!r}")
    return value


# The header a provider takes its API key in; any other takes `Authorization: Bearer KEY`.
KEY_HEADERS = {"azure": "api-key", "azure-openai": "api-key", "anthropic": "x-api-key"}


def key_header(provider: str, key: str) -> tuple[str, str]:
    header = KEY_HEADERS.get(provider, "Authorization")
    return header, key if header != "Authorization" else f"Bearer {key}"


# ---- names and literals ----------------------------------------------------------

def name_text(text: str) -> str:
    return text if is_identifier(text) else quote(text)


def unique_name(base: str, taken: set[str]) -> str:
    """An identifier made from `base`, not yet in `taken` (then added to it)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_") or "target"
    if not re.match(r"[A-Za-z_]", name):
        name = "t_" + name
    if not is_identifier(name):
        name += "_"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def literal(value: Any) -> str:
    """A JSON value as a routelang literal (as fmt spells it); ValueError for one routelang cannot spell."""
    try:
        return value_text(value)
    except PrinterBug as exc:
        raise ValueError(str(exc)) from None


def share_text(weight: float) -> str:
    """A split share: `60%` when that reads back exactly, else the fraction."""
    return percent_text(weight) or repr(weight)


# ---- conditions --------------------------------------------------------------------

class Always:
    """A condition that holds (or never holds) whatever the request: folded away."""

    def __init__(self, value: bool):
        self.value = value


TRUE, FALSE = Always(True), Always(False)


@dataclass(frozen=True)
class Cond:
    """A condition's text; `joint` is "and"/"or" for a chain, else None."""

    text: str
    joint: str | None = None

    def inside(self, joint: str) -> str:
        return self.text if self.joint in (None, joint) else f"({self.text})"


def compare(segments: list[str], op: str, value: Any = None, unary: bool = False) -> Cond:
    text = f"{field_text(segments)} {op}"
    if unary:
        return Cond(text)
    if op == "=~" and isinstance(value, str):
        return Cond(f"{text} {regex_text(value)}")
    return Cond(f"{text} {literal(value)}")


def _chain(joint: str, parts: list[Cond]) -> Cond:
    return parts[0] if len(parts) == 1 else Cond(f" {joint} ".join(c.inside(joint) for c in parts), joint)


def all_of(conditions: list) -> Cond | Always:
    parts = []
    for c in conditions:
        if c is FALSE:
            return FALSE
        if c is not TRUE:
            parts.append(c)
    return _chain("and", parts) if parts else TRUE


def any_of(conditions: list) -> Cond | Always:
    parts = []
    for c in conditions:
        if c is TRUE:
            return TRUE
        if c is not FALSE:
            parts.append(c)
    return _chain("or", parts) if parts else FALSE


# ---- targets and strategies -----------------------------------------------------------

@dataclass
class Target:
    name: str
    provider: str
    model: str
    endpoint: str
    timeout_ms: int | None = None
    retries: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    breaker: dict[str, int] | None = None   # failures, cooldown_ms
    health_path: str | None = None
    health_interval_ms: int | None = None

    def text(self) -> str:
        lines = [f"provider {quote(self.provider)}", f"model {quote(self.model)}", f"endpoint {quote(self.endpoint)}"]
        if self.timeout_ms is not None:
            lines.append(f"timeout {duration_text(self.timeout_ms)}")
        if self.retries:
            lines.append(f"retries {self.retries}")
        if self.headers:
            lines.append("headers { " + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in self.headers.items()) + " }")
        if self.breaker:
            lines.append(f"circuit_breaker {{ failures {self.breaker['failures']} "
                         f"cooldown {duration_text(self.breaker['cooldown_ms'])} }}")
        if self.health_path is not None:
            lines.append(f"health_check {{ path {quote(self.health_path)} "
                         f"interval {duration_text(self.health_interval_ms)} }}")
        body = "\n".join("    " + line for line in lines)
        return f"target {self.name} = {{\n{body}\n}}"


@dataclass
class Strategy:
    """kind: single, split, fallback, round-robin, least_latency, lowest_cost.
    members: target names or nested strategies; a split's weights one per member."""

    kind: str
    members: list
    weights: list[float] | None = None
    labels: list[str | None] | None = None

    def text(self) -> str:
        def member(m) -> str:
            return m if isinstance(m, str) else f"({m.text()})"

        if self.kind == "single":
            return f"route {self.members[0]}"
        if self.kind == "split":
            labels = self.labels or [None] * len(self.members)
            arms = [f"{share_text(w)} {label + ': ' if label else ''}{member(m)}"
                    for w, label, m in zip(self.weights, labels, self.members)]
            return "split { " + "  ".join(arms) + " }"
        return f"{self.kind} " + ", ".join(member(m) for m in self.members)


def simplest(strategy: Strategy):
    """A one-member strategy is its member (a target name, or the nested strategy)."""
    if len(strategy.members) == 1 and strategy.kind != "single":
        return strategy.members[0]
    return strategy


def as_strategy(member) -> Strategy:
    return member if isinstance(member, Strategy) else Strategy("single", [member])


@dataclass
class Rule:
    name: str
    priority: int
    strategy: Strategy
    when: Cond | None = None
    description: str | None = None


def _comment(text: str) -> str:
    """One comment line, whatever the config's text holds."""
    return "# " + " ".join(text.splitlines())


def write_file(router: str, description: str | None, source_name: str, notes: list[ImportNote],
               targets: list[Target], rules: list[Rule], peer: str) -> str:
    """The `.route` text, in `routelang fmt` layout."""
    lines = [_comment(f"Imported from {source_name} ({peer}) by `routelang import`.")]
    lines += [_comment(f"NOTE: {note}") for note in notes]
    header = f"router {name_text(router)}" + (f" {quote(description)}" if description else "")
    lines += [header, ""]
    for t in targets:
        lines += [t.text(), ""]
    for r in rules:
        head = f"rule {name_text(r.name)} priority {r.priority}" + (f" {quote(r.description)}" if r.description else "")
        body = ([f"    when {r.when.text}"] if r.when else []) + [f"    {r.strategy.text()}"]
        lines += [head + " {", *body, "}", ""]
    return format_text("\n".join(lines), f"<import of {source_name}>")
