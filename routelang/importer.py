"""Mixtrain routing-config JSON -> an idiomatic `.route` file (migration).

    text = import_config(json.load(f), "routing.json")

The input is read the way Mixtrain reads it: `RoutingConfig.from_json`
first, so coercions (`"weight": 1` -> 1.0, `"timeout_ms": "500"` -> 500)
and defaults are Mixtrain's. The output, compiled back to JSON, gives the
same canonical dump (`RoutingConfig.from_json(x).to_json()`), value types
included. The few things a `.route` file cannot say (docs/import.md) are
reported as `ImportNote`s and a `# NOTE` comment in the output.

A config that routelang compiled carries `x-routelang` fields (see
backends/json.py); those are read back too (`or`, `not`, `>=`, sticky splits,
the strategies Mixtrain lacks (vocab/strategies.py), target names, costs,
circuit breakers, health checks), as long as the file they give compiles to
the same config for Mixtrain; otherwise the import is of Mixtrain's view.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .fmt import FormatError, FormatterBug, format_text
from .parser import grammar_text, quote
from .runtime.model import ConfigError, plan_from_config
from .vocab import operators, strategies

# stdlib/providers.route presets whose call adds nothing beyond provider, model
# and endpoint (openai/anthropic only add a default endpoint, which an
# explicit endpoint argument overrides).
PRESETS = ("modal", "fal", "custom", "openai", "anthropic")
# The presets' own endpoints (stdlib/providers.route), which a call may leave out.
PRESET_ENDPOINTS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
EXT = "x-routelang"
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
    def __init__(self):
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
        entry = operators.get(op)
        if entry.unary:
            if value is not None:
                self.note(where, f"the value {value!r} of `{op}` is ignored by Mixtrain and dropped")
            text = f"{lhs} {entry.text}"
        elif entry.operand == "pattern" and isinstance(value, str):
            text = f"{lhs} {entry.text} {regex_text(value)}"
        else:
            text = f"{lhs} {entry.text} {self.value(value, where)}"
        if c.get("description") is not None:
            text += f" note {quote(c['description'])}"
        return text

    def tree(self, tree: dict, where: str, notes: dict, parent: str | None = None) -> str:
        """An `x-routelang.when` condition tree as an expression. Groups get
        parentheses wherever the parser would otherwise regroup them, so the
        file reads back to the same tree."""
        if "any" in tree or "all" in tree:
            kind = "any" if "any" in tree else "all"
            text = f" {'or' if kind == 'any' else 'and'} ".join(
                self.tree(c, where, notes, kind) for c in tree[kind])
            bare = parent is None or (kind == "all" and parent == "any")
            return text if bare else f"({text})"
        if "not" in tree:
            return "not " + self.tree(tree["not"], where, notes, "not")
        leaf = dict(tree, value=tree.get("value"), description=notes.get(_leaf_key(tree)))
        text = self.condition(leaf, where)
        return f"({text})" if parent == "not" else text

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
        ext = t.get(EXT, {})
        if ext.get("cost_per_1k_tokens") is not None:
            out.append(f"cost {self.value(ext['cost_per_1k_tokens'], where)} per 1k")
        if ext.get("circuit_breaker"):
            cb = ext["circuit_breaker"]
            out.append(f"circuit_breaker {{ failures {cb['failure_threshold']}  "
                       f"cooldown {duration_text(cb['cooldown_ms'])}  successes {cb['success_threshold']} }}")
        if ext.get("health_check"):
            hc = ext["health_check"]
            parts = [f"path {quote(hc['path'])}", f"interval {duration_text(hc['interval_ms'])}"]
            if hc.get("timeout_ms") is not None:
                parts.append(f"timeout {duration_text(hc['timeout_ms'])}")
            out.append("health_check { " + "  ".join(parts) + " }")
        return out

    def target_expr(self, t: dict, in_split: bool, label_outside: bool, where: str, indent: str) -> str:
        settings = self.settings(t, in_split, label_outside, where)
        if t["provider"] in PRESETS:
            args = [quote(t["model_name"])]
            if PRESET_ENDPOINTS.get(t["provider"]) != t["endpoint"]:
                args.append(quote(t["endpoint"]))
            head = f"{t['provider']}({', '.join(args)})"
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


def _leaf_key(c: dict) -> str:
    return json.dumps([c["field"], c["operator"], c.get("value")], sort_keys=True)


def _target_name(t: dict, taken: set[str]) -> str:
    written = t.get(EXT, {}).get("name")
    if isinstance(written, str) and is_identifier(written) and written not in taken:
        taken.add(written)
        return written  # the name the target had in the .route file it was compiled from
    base = re.sub(r"[^A-Za-z0-9_]+", "_", t["model_name"]).strip("_") or "target"
    if not re.match(r"[A-Za-z_]", base):
        base = "t_" + base
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _kind(rule: dict) -> str:
    """The rule's strategy as routelang wrote it (Mixtrain's, for a plain config
    or an extension that names no strategy routelang knows)."""
    kind = rule.get(EXT, {}).get("strategy", {}).get("kind", rule["strategy"])
    return kind if kind in strategies.STRATEGIES else rule["strategy"]


def _uses(rule: dict):
    """(target, in_split, label_outside) for each target a rule writes."""
    if "part_of" in rule.get(EXT, {}):
        return  # an extra rule routelang expanded an `or` into; its owner says it all
    if _tree(rule) is not None:
        for index, (in_split, outside) in sorted(_tree_uses(rule).items()):
            yield rule["targets"][index], in_split, outside
        return
    kind = _kind(rule)
    targets = rule["targets"][:1] if kind == "single" else rule["targets"]
    for t in targets:
        # A split's weights are its shares; an equal-weights lowering's are the compiler's.
        lowering = strategies.strategy(kind).mixtrain
        in_split = kind == "split" or lowering.weights == "equal"
        yield t, in_split, kind == "split" and t["label"] is not None and is_identifier(t["label"])


def _tree(rule: dict) -> dict | None:
    """The rule's nested strategy tree (x-routelang.strategy with `members`), when
    routelang's runtime would read it; None otherwise (the import is of Mixtrain's view)."""
    tree = rule.get(EXT, {}).get("strategy", {})
    if not isinstance(tree, dict) or "members" not in tree:
        return None
    try:
        plan_from_config({"name": "import", "rules": [dict(rule, is_enabled=True)]})
    except ConfigError:
        return None
    return tree


def _tree_uses(rule: dict) -> dict[int, tuple[bool, bool]]:
    """A nested strategy tree's targets: index -> (in_split, label_outside). The
    JSON weights of a tree's targets are the compiler's (a split arm's share is in
    the tree) except those a fallback-lowered tree takes as written."""
    tree = rule[EXT]["strategy"]
    compilers_weights = strategies.strategy(tree["kind"]).mixtrain.nested_weights == "first_choice"
    out: dict[int, tuple[bool, bool]] = {}

    def walk(node: dict) -> None:
        split = strategies.strategy(node["kind"]).layout == "block"
        for m in node["members"]:
            if isinstance(m, dict):
                walk(m)
                continue
            t = rule["targets"][m]
            out[m] = (split or compilers_weights, split and t["label"] is not None and is_identifier(t["label"]))

    walk(tree)
    return out


def _tree_text(w: _Writer, rule: dict, node: dict, path: tuple[int, ...], ref, where: str) -> str:
    """A nested strategy tree (x-routelang.strategy with `members`) as .route text, on one line (fmt lays it out)."""
    defn = strategies.strategy(node["kind"])
    uses = _tree_uses(rule)

    def member(m, i: int) -> str:
        if isinstance(m, dict):
            return "(" + _tree_text(w, rule, m, (*path, i), ref, where) + ")"
        return ref(rule["targets"][m], *uses[m], "    ")

    members = [member(m, i) for i, m in enumerate(node["members"])]
    if defn.layout == "route":
        return f"route {members[0]}" + (f" shadow {members[1]}" if defn.mirrors else "")
    if defn.layout == "block":
        head = "split"
        if node.get("sticky_by"):
            head += f" sticky by {field_text(node['sticky_by'])}"
            default_salt = rule["name"] if not path else f"{rule['name']}/{'.'.join(map(str, path))}"
            if node.get("salt") is not None and node["salt"] != default_salt:
                head += f" salt {quote(node['salt'])}"
        entries = []
        for i, (m, text) in enumerate(zip(node["members"], members)):
            label = node.get("labels", [None] * len(members))[i]
            written = isinstance(m, dict) or uses[m][1]  # a leaf's non-identifier label is a setting
            prefix = f"{label}: " if label is not None and written and is_identifier(label) else ""
            if label is not None and isinstance(m, dict) and not is_identifier(label):
                w.note(where, f"split arm label {label!r} is not a name; it is left out")
            entries.append(f"{percent_text(node['weights'][i]) or repr(node['weights'][i])} {prefix}{text}")
        return head + " { " + "  ".join(entries) + " }"
    head = defn.keyword
    if defn.score_factors:
        head += "(" + ", ".join(f"{f} {w.value(node.get(f'{f}_weight', 0.0), where)}"
                                for f in defn.score_factors) + ")"
    return head + " " + ", ".join(members)


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


def _with_extensions(cfg: dict, raw: dict) -> dict | None:
    """Mixtrain's canonical form with the `x-routelang` fields of `raw` put
    back (Mixtrain drops them); None when `raw` has none."""
    found = False
    rules = []
    for rule, raw_rule in zip(cfg["rules"], raw["rules"]):
        ext = raw_rule.get(EXT) if isinstance(raw_rule, dict) else None
        targets = []
        for t, raw_t in zip(rule["targets"], raw_rule.get("targets") or []):
            t_ext = raw_t.get(EXT) if isinstance(raw_t, dict) else None
            found = found or isinstance(t_ext, dict)
            targets.append(dict(t, **{EXT: t_ext if isinstance(t_ext, dict) else {}}))
        found = found or isinstance(ext, dict)
        rules.append(dict(rule, targets=targets, **{EXT: ext if isinstance(ext, dict) else {}}))
    return dict(cfg, rules=rules) if found else None


def _same_for_mixtrain(text: str, cfg: dict) -> bool:
    """Does `text` compile to a config whose Mixtrain canonical form is `cfg`?"""
    from .backends.json import lower
    from .compiler import compile_text

    result = compile_text(text, "<import>")
    if not result.ok:
        return False
    compiled, _ = lower(result.router)
    try:
        return json.dumps(load_config(compiled), sort_keys=True) == json.dumps(cfg, sort_keys=True)
    except ImportProblem:
        return False


def import_config_with_notes(config: dict, source_name: str) -> tuple[str, list[ImportNote]]:
    """The `.route` text for a Mixtrain config, and what it could not say."""
    cfg = load_config(config)
    extended = _with_extensions(cfg, config)
    if extended is None:
        return _render(cfg, source_name)
    try:
        text, notes = _render(extended, source_name)
        usable = _same_for_mixtrain(text, cfg)
    except (KeyError, TypeError, AttributeError, ValueError, FormatError):
        usable = False  # malformed extension fields: they are a hint, Mixtrain's fields are the config
    if usable:
        return text, notes
    return _render(cfg, source_name, [ImportNote(
        EXT, "the extension fields disagree with what Mixtrain reads (edited after compiling?); "
             "imported Mixtrain's view and ignored them")])


def _render(cfg: dict, source_name: str, notes: list[ImportNote] | None = None) -> tuple[str, list[ImportNote]]:
    w = _Writer()
    w.notes.extend(notes or [])

    # Targets written by more than one rule, or named in the .route file a
    # compiled config came from, get a definition; the rest stay inline.
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
            if (counts[key] > 1 or t.get(EXT, {}).get("name")) and key not in named:
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
        lines.append("# Targets (named in the source, or routed to by several rules).")
        lines.extend(definitions)

    # Condition descriptions, for the leaves of `x-routelang.when` trees.
    notes_of: dict[str, dict[str, str]] = {}
    for rule in cfg["rules"]:
        owner = rule.get(EXT, {}).get("part_of", rule["name"])
        for c in rule["conditions"]:
            if c["description"] is not None:
                notes_of.setdefault(owner, {}).setdefault(_leaf_key(c), c["description"])
    for rule in cfg["rules"]:
        if "part_of" not in rule.get(EXT, {}):
            lines.append("")
            lines.extend(_rule(w, rule, named, notes_of.get(rule["name"], {})))

    body = "\n".join(lines) + "\n"
    if w.notes:
        comments = "".join(f"# NOTE: {n}\n" for n in w.notes)
        first, rest = body.split("\n", 1)
        body = f"{first}\n{comments}{rest}"
    return _canonical_layout(body), w.notes


def _canonical_layout(text: str) -> str:
    """`routelang fmt`'s layout, so an imported file is already formatted."""
    try:
        return format_text(text)
    except FormatterBug:
        return text  # the text written above is valid as it stands, only laid out by hand


def import_config(config: dict, source_name: str) -> str:
    """The `.route` text for a Mixtrain routing config (see module docs)."""
    return import_config_with_notes(config, source_name)[0]


def _rule(w: _Writer, rule: dict, named: dict[str, str], notes: dict[str, str]) -> list[str]:
    where = f"rule {rule['name']!r}"
    ext = rule.get(EXT, {})
    header = f"rule {name_text(rule['name'])} priority {rule['priority']}"
    if rule["description"]:
        header += f" {quote(rule['description'])}"
    elif rule["description"] is None:
        w.note(where, "description is null; routelang writes it as absent (\"\")")
    if not rule["is_enabled"] and not ext.get("enabled"):
        header += " disabled"
    out = [header + " {"]
    conditions = [] if "when" in ext else [w.condition(c, where) for c in rule["conditions"]]
    if "when" in ext:
        out.append("    when " + w.tree(ext["when"], where, notes))
    elif conditions:
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
    strategy, targets = _kind(rule), rule["targets"]
    ext = rule.get(EXT, {}).get("strategy", {})

    def ref(t: dict, in_split: bool, outside: bool, indent: str) -> str:
        key = _target_key(t, in_split, outside)
        return named.get(key) or w.target_expr(t, in_split, outside, where, indent)

    if _tree(rule) is not None:
        return ["    " + _tree_text(w, rule, ext, (), ref, where)]
    if strategy == "single":
        if len(targets) > 1:
            w.note(where, f"strategy single with {len(targets)} targets: Mixtrain routes to the first only; "
                          f"the other {len(targets) - 1} are dropped")
        return [f"    route {ref(targets[0], False, False, '    ')}"]
    if strategy == "shadow":
        return [f"    route {ref(targets[0], False, False, '    ')}",
                f"        shadow {ref(targets[1], False, False, '        ')}"]
    defn = strategies.strategy(strategy)
    if defn.layout in ("list", "call_list"):
        head = defn.keyword
        if defn.score_factors:
            head += "(" + ", ".join(
                f"{factor} {w.value(ext.get(f'{factor}_weight', 0.0), where)}"
                for factor in defn.score_factors) + ")"
        items = [ref(t, defn.mixtrain.weights == "equal", False, "        ") for t in targets]
        one_line = f"    {head} " + ", ".join(items)
        if len(items) == 1 or len(one_line) <= LINE_WIDTH and "\n" not in one_line:
            return [one_line]
        return [f"    {head} " + items[0] + ","] + [f"        {x}," for x in items[1:-1]] + [f"        {items[-1]}"]
    labels = [t["label"] for t in targets if t["label"]]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        w.note(where, f"label {label!r} names two split entries, which routelang rejects")
    sticky = ""
    if ext.get("sticky_by"):
        sticky = f" sticky by {field_text(ext['sticky_by'])}"
        if ext.get("salt") is not None and ext["salt"] != rule["name"]:
            sticky += f" salt {quote(ext['salt'])}"
    out = [f"    split{sticky} {{"]
    for t in targets:
        outside = t["label"] is not None and is_identifier(t["label"])
        share = percent_text(t["weight"]) or repr(t["weight"])
        label = f"{t['label']}: " if outside else ""
        out.append(f"        {share} {label}{ref(t, True, outside, '        ')}")
    out.append("    }")
    return out
