"""Mixtrain routing-config JSON -> an idiomatic `.route` file (migration).

    text = import_config(json.load(f), "routing.json")

The input is read the way Mixtrain reads it: `RoutingConfig.from_json`
first, so coercions (`"weight": 1` -> 1.0, `"timeout_ms": "500"` -> 500)
and defaults are Mixtrain's. The output, compiled back to JSON, gives the
same canonical dump (`RoutingConfig.from_json(x).to_json()`), value types
included. The few things a `.route` file cannot say (docs/import.md) are
reported as `ImportNote`s and a `# NOTE` comment in the output.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .parser import grammar_text, quote

# stdlib/providers.route presets whose call adds nothing beyond provider, model
# and endpoint (openai/anthropic only add a default endpoint, which an
# explicit endpoint argument overrides).
PRESETS = ("modal", "fal", "custom", "openai", "anthropic")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_OPERATOR_TEXT = {
    "equals": "==", "not_equals": "!=", "greater_than": ">", "less_than": "<",
    "in": "in", "not_in": "not in", "contains": "contains", "not_contains": "not contains",
    "regex": "=~",
}
LINE_WIDTH = 100


class ImportProblem(ValueError):
    """The input is not a config Mixtrain's `RoutingConfig` loads."""


@dataclass(frozen=True)
class ImportNote:
    """Something in the config that the `.route` file cannot say exactly."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@functools.cache
def keywords() -> frozenset[str]:
    """The grammar's words. Names that are keywords get quotes: a keyword
    cannot stand everywhere a name can (`50% is_shadow: t` does not parse)."""
    words = re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', grammar_text())
    return frozenset(words) | {"true", "false", "null"}


def is_identifier(text: str) -> bool:
    """Can `text` be written bare as a name (router, rule, label, target, key)?"""
    return _NAME.fullmatch(text) is not None and text not in keywords()


def name_text(name: str) -> str:
    """A router, rule or label name: bare when it is an identifier."""
    return name if is_identifier(name) else quote(name)


def field_text(field: str) -> str:
    """A dotted field path; segments that are not identifiers are quoted.
    Keywords read fine as segments (`request.model`), except that a leading
    `not` would read as negation."""
    parts = []
    for i, seg in enumerate(field.split(".")):
        bare = _NAME.fullmatch(seg) is not None and not (i == 0 and seg == "not")
        parts.append(seg if bare else quote(seg))
    return ".".join(parts)


def regex_text(pattern: str) -> str:
    """r"..." keeps backslashes as written, which is how regexes read best."""
    if "\\" in pattern and '"' not in pattern and "\n" not in pattern and "\r" not in pattern:
        return f'r"{pattern}"'
    return quote(pattern)


class _Writer:
    def __init__(self, source_name: str):
        self.source_name = source_name
        self.notes: list[ImportNote] = []

    def note(self, where: str, message: str) -> None:
        self.notes.append(ImportNote(where, message))

    # ---- values ----------------------------------------------------------------

    def value(self, v: Any, where: str) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            if not math.isfinite(v):
                self.note(where, f"{v!r} has no routelang spelling; written as null")
                return "null"
            return repr(v)  # always has "." or "e", so it reads back as a float
        if isinstance(v, str):
            return quote(v)
        if isinstance(v, list):
            return "[" + ", ".join(self.value(x, where) for x in v) + "]"
        if isinstance(v, dict):
            if not v:
                return "{}"
            pairs = ", ".join(f"{k if is_identifier(k) else quote(k)}: {self.value(x, where)}" for k, x in v.items())
            return "{ " + pairs + " }"
        raise ImportProblem(f"{where}: unexpected value {v!r}")

    # ---- conditions --------------------------------------------------------------

    def condition(self, c: dict, where: str) -> str:
        field, op, value = c["field"], c["operator"], c["value"]
        if any(not seg for seg in field.split(".")):
            self.note(where, f"field path {field!r} has an empty segment, which routelang rejects")
        lhs = field_text(field)
        if op in ("exists", "not_exists"):
            if value is not None:
                self.note(where, f"the value {value!r} of `{op}` is ignored by Mixtrain and dropped")
            text = f"{lhs} {'exists' if op == 'exists' else 'not exists'}"
        elif op == "regex" and isinstance(value, str):
            text = f"{lhs} =~ {regex_text(value)}"
        else:
            text = f"{lhs} {_OPERATOR_TEXT[op]} {self.value(value, where)}"
        if c.get("description") is not None:
            text += f" note {quote(c['description'])}"
        return text

    # ---- targets -------------------------------------------------------------------

    def settings(self, t: dict, in_split: bool, label_outside: bool, where: str) -> list[str]:
        out = []
        if not in_split and t["weight"] != 1.0:
            out.append(f"weight {self.value(t['weight'], where)}")
        if t["label"] is not None and not label_outside:
            out.append(f"label {quote(t['label'])}")
        if t["timeout_ms"] is not None:
            out.append(f"timeout {duration_text(t['timeout_ms'])}")
            if t["timeout_ms"] > 2**53:
                self.note(where, f"timeout {t['timeout_ms']}ms is too large to read back exactly")
        if t["retry_count"] is not None:
            out.append(f"retries {t['retry_count']}")
        if t["headers"] is not None:
            pairs = ", ".join(f"{quote(k)}: {quote(v)}" for k, v in t["headers"].items())
            out.append("headers { " + pairs + " }" if pairs else "headers {}")
        if t["function_name"] is not None:
            out.append(f"function_name {quote(t['function_name'])}")
        if t["request_class"] is not None:
            out.append(f"request_class {quote(t['request_class'])}")
        if t["is_shadow"]:
            out.append("is_shadow true")
        return out

    def target_expr(self, t: dict, in_split: bool, label_outside: bool, where: str, indent: str) -> str:
        settings = self.settings(t, in_split, label_outside, where)
        if t["provider"] in PRESETS:
            head = f"{t['provider']}({quote(t['model_name'])}, {quote(t['endpoint'])})"
            if not settings:
                return head
            return head + " " + _block(settings, indent, len(head) + len(indent))
        settings = [f"provider {quote(t['provider'])}", f"model {quote(t['model_name'])}",
                    f"endpoint {quote(t['endpoint'])}"] + settings
        return _block(settings, indent, len(indent))


def _block(settings: list[str], indent: str, used: int) -> str:
    """`{ a  b }` on one line when it fits, else one setting per line."""
    one_line = "{ " + "  ".join(settings) + " }"
    if used + len(one_line) <= LINE_WIDTH:
        return one_line
    inner = indent + "    "
    return "{\n" + "".join(f"{inner}{s}\n" for s in settings) + indent + "}"


def duration_text(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 and ms else f"{ms}ms"


def percent_text(weight: float) -> str | None:
    """`80%` when reading it back (float(text) / 100) gives exactly `weight`."""
    if not math.isfinite(weight) or weight < 0:
        return None
    for digits in range(18):
        text = f"{weight * 100:.{digits}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if float(text) / 100 == weight:
            return text + "%"
    return None


def _target_key(t: dict, in_split: bool, label_outside: bool) -> str:
    """Uses of a target that can share one `target NAME = ...` definition."""
    shared = dict(t)
    if in_split or t["weight"] == 1.0:
        shared["weight"] = None  # a split entry gives its own share
    if label_outside:
        shared["label"] = None  # written as `80% label: NAME`
    return json.dumps(shared, sort_keys=True)


def _target_name(t: dict, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", t["model_name"]).strip("_") or "target"
    if not re.match(r"[A-Za-z_]", base):
        base = "t_" + base
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _uses(rule: dict):
    """(target, in_split, label_outside) for each target a rule writes."""
    strategy = rule["strategy"]
    targets = rule["targets"][:1] if strategy == "single" else rule["targets"]
    for t in targets:
        in_split = strategy == "split"
        yield t, in_split, in_split and t["label"] is not None and is_identifier(t["label"])


def load_config(config: Any) -> dict:
    """Mixtrain's canonical form of `config`; ImportProblem when it does not load."""
    from mixtrain.routing import RoutingConfig
    from pydantic import ValidationError

    if not isinstance(config, dict):
        raise ImportProblem(f"a routing config is a JSON object, not {type(config).__name__}")
    try:
        return RoutingConfig.from_json(config).to_json()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ImportProblem(f"Mixtrain's RoutingConfig rejects this config: {problems}")
    except TypeError as exc:
        raise ImportProblem(f"Mixtrain's RoutingConfig rejects this config: {exc}")


def validation_errors(config: dict) -> list[str]:
    """What Mixtrain's RoutingValidator says about a config that loads."""
    from mixtrain.routing import RoutingConfig, RoutingValidator

    return RoutingValidator.validate_config(RoutingConfig.from_json(config))


def import_config_with_notes(config: dict, source_name: str) -> tuple[str, list[ImportNote]]:
    """The `.route` text for a Mixtrain config, and what it could not say."""
    cfg = load_config(config)
    w = _Writer(source_name)

    # Targets written by more than one rule get a name; the rest stay inline.
    counts: dict[str, int] = {}
    for rule in cfg["rules"]:
        for t, in_split, outside in _uses(rule):
            key = _target_key(t, in_split, outside)
            counts[key] = counts.get(key, 0) + 1
    taken = set(PRESETS) | keywords()
    named: dict[str, str] = {}
    definitions: list[str] = []
    for rule in cfg["rules"]:
        for t, in_split, outside in _uses(rule):
            key = _target_key(t, in_split, outside)
            if counts[key] > 1 and key not in named:
                named[key] = name = _target_name(t, taken)
                expr = w.target_expr(t, in_split, outside, f"target {name}", "")
                definitions.append(f"target {name} = {expr}")

    lines = [f"# Imported from {source_name} by `routelang import`."]
    header = f"router {name_text(cfg['name'])}"
    if cfg["description"]:
        header += f" {quote(cfg['description'])}"
    elif cfg["description"] is None:
        w.note("router", "description is null; routelang writes it as absent (\"\")")
    lines.append(header)
    if cfg["metadata"]:
        lines.append(f"metadata {w.value(cfg['metadata'], 'metadata')}")
    elif cfg["metadata"] is None:
        w.note("router", "metadata is null; routelang writes it as absent ({})")
    uses_presets = any(t["provider"] in PRESETS for rule in cfg["rules"] for t, _, _ in _uses(rule))
    if uses_presets:
        lines.append("import std.providers")
    if definitions:
        lines.append("")
        lines.append("# Targets that several rules route to.")
        lines.extend(definitions)

    for rule in cfg["rules"]:
        lines.append("")
        lines.extend(_rule(w, rule, named))

    body = "\n".join(lines) + "\n"
    if w.notes:
        comments = "".join(f"# NOTE: {n}\n" for n in w.notes)
        first, rest = body.split("\n", 1)
        body = f"{first}\n{comments}{rest}"
    return _canonical_layout(body), w.notes


def _canonical_layout(text: str) -> str:
    """`routelang fmt`'s layout, so an imported file is already formatted."""
    from .fmt import FormatterBug, format_text

    try:
        return format_text(text)
    except FormatterBug:
        return text  # the text written above is valid as it stands, only laid out by hand


def import_config(config: dict, source_name: str) -> str:
    """The `.route` text for a Mixtrain routing config (see module docs)."""
    return import_config_with_notes(config, source_name)[0]


def _rule(w: _Writer, rule: dict, named: dict[str, str]) -> list[str]:
    where = f"rule {rule['name']!r}"
    header = f"rule {name_text(rule['name'])} priority {rule['priority']}"
    if rule["description"]:
        header += f" {quote(rule['description'])}"
    elif rule["description"] is None:
        w.note(where, "description is null; routelang writes it as absent (\"\")")
    if not rule["is_enabled"]:
        header += " disabled"
    out = [header + " {"]
    conditions = [w.condition(c, where) for c in rule["conditions"]]
    if conditions:
        one_line = "    when " + " and ".join(conditions)
        if len(conditions) == 1 or len(one_line) <= LINE_WIDTH:
            out.append(one_line)
        else:
            out.append("    when " + conditions[0])
            out.extend(f"        and {c}" for c in conditions[1:])
    out.extend(_strategy(w, rule, named, where))
    out.append("}")
    return out


def _strategy(w: _Writer, rule: dict, named: dict[str, str], where: str) -> list[str]:
    strategy, targets = rule["strategy"], rule["targets"]

    def ref(t: dict, in_split: bool, outside: bool, indent: str) -> str:
        key = _target_key(t, in_split, outside)
        return named.get(key) or w.target_expr(t, in_split, outside, where, indent)

    if strategy == "single":
        if len(targets) > 1:
            w.note(where, f"strategy single with {len(targets)} targets: Mixtrain routes to the first only; "
                          f"the other {len(targets) - 1} are dropped")
        return [f"    route {ref(targets[0], False, False, '    ')}"]
    if strategy == "shadow":
        return [f"    route {ref(targets[0], False, False, '    ')}",
                f"        shadow {ref(targets[1], False, False, '        ')}"]
    if strategy == "fallback":
        items = [ref(t, False, False, "        ") for t in targets]
        one_line = "    fallback " + ", ".join(items)
        if len(items) == 1 or len(one_line) <= LINE_WIDTH and "\n" not in one_line:
            return [one_line]
        return ["    fallback " + items[0] + ","] + [f"        {x}," for x in items[1:-1]] + [f"        {items[-1]}"]
    labels = [t["label"] for t in targets if t["label"]]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        w.note(where, f"label {label!r} names two split entries, which routelang rejects")
    out = ["    split {"]
    for t in targets:
        outside = t["label"] is not None and is_identifier(t["label"])
        share = percent_text(t["weight"]) or repr(t["weight"])
        label = f"{t['label']}: " if outside else ""
        out.append(f"        {share} {label}{ref(t, True, outside, '        ')}")
    out.append("    }")
    return out
