"""Mixtrain routing-config JSON -> routelang syntax nodes -> an idiomatic `.route` file.

    text = import_config(json.load(f), "routing.json")

The input is read the way Mixtrain reads it, with routelang's copy of
Mixtrain's models (mixtrain_schema.py): coercions (`"weight": 1` -> 1.0,
`"timeout_ms": "500"` -> 500) and defaults are Mixtrain's. The importer
builds the syntax nodes (ast.py) a `.route` file would parse to, and the
printer spells them in `routelang fmt` layout. Compiled back to JSON, the
file gives the same canonical dump (`RoutingConfig.from_json(x).to_json()`),
value types included. The few things a `.route` file cannot say
(docs/import.md) are reported as `ImportNote`s and a `# NOTE` comment.

The same nodes, with every span pointing into the JSON, are the front end of
`routelang check/lint/explain CONFIG.json` (`syntax_for_analysis`, used by
compiler.compile_json): there targets stay inline, so that each one is
located at its own object.

A config that routelang compiled carries `x-routelang` fields (see
backends/json.py); those are read back too (`or`, `not`, `>=`, sticky splits,
the strategies Mixtrain lacks (vocab/strategies.py), target names, costs,
circuit breakers, health checks), as long as the file they give compiles to
the same config for Mixtrain; otherwise the import is of Mixtrain's view.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from .. import ast, envvars, mixtrain_schema
from ..backends.json import lower
from ..check import check
from ..diagnostics import has_errors
from ..parser import MAX_VALUE_DEPTH
from ..printer import (
    PrinterBug,
    duration_text,
    is_identifier,
    keywords,
    name_node,
    percent_text,
    percent_value,
    print_file,
)
from ..resolve import resolve
from ..runtime.model import ConfigError, plan_from_config
from ..source import NO_SPAN, Source, Span
from ..vocab import operators, strategies
from ..vocab import settings as target_settings
from .common import ImportNote, ImportProblem, Path

# stdlib/providers.route presets whose call adds nothing beyond provider, model
# and endpoint (openai/anthropic only add a default endpoint, which an
# explicit endpoint argument overrides).
PRESETS = ("modal", "fal", "custom", "openai", "anthropic", "azure")
# The presets' own endpoints (stdlib/providers.route), which a call may leave out.
PRESET_ENDPOINTS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}
EXT = "x-routelang"

# The Mixtrain target fields after provider, model and endpoint, in the order the
# import has always written them (headers before function_name, unlike the JSON).
_MIXTRAIN_SETTINGS = tuple(target_settings.BY_SURFACE[surface] for surface in (
    "weight", "label", "timeout", "retries", "headers", "function_name", "request_class", "is_shadow"))

Locate = Callable[[Path], Span]


def load_config(config: Any) -> dict:
    """Mixtrain's canonical form of `config`; ImportProblem when it does not load."""
    try:
        return mixtrain_schema.canonical(config)
    except mixtrain_schema.SchemaProblem as exc:
        raise ImportProblem(f"Mixtrain's RoutingConfig rejects this config: {exc}", exc.problems) from None


def validation_errors(config: dict) -> list[str]:
    """What Mixtrain's RoutingValidator says about a config that loads."""
    return mixtrain_schema.validate_config(mixtrain_schema.load(config))


# ---- JSON -> syntax nodes ------------------------------------------------------------

class _Builder:
    def __init__(self, locate: Locate, inline: bool, from_routelang: bool):
        self.locate = locate
        self.inline = inline     # every target inline, as a `{ provider ... }` literal
        self.from_routelang = from_routelang  # compiled by routelang: `${VAR}` was written as a reference
        self.notes: list[ImportNote] = []

    def note(self, where: str, message: str, path: Path) -> None:
        self.notes.append(ImportNote(where, message, path))

    # ---- values ----------------------------------------------------------------

    def value(self, v: Any, path: Path, where: str) -> ast.Value:
        span = self.locate(path)
        if isinstance(v, float) and not math.isfinite(v):
            self.note(where, f"{v!r} has no routelang spelling; written as null", path)
            return ast.Value(None, span)
        if isinstance(v, list):
            items = [self.value(x, path + (i,), where) for i, x in enumerate(v)]
            return self._nested(items, items, span, path, where)
        if isinstance(v, dict):
            pairs = {k: self.value(x, path + (k,), where) for k, x in v.items()}
            return self._nested(pairs, pairs.values(), span, path, where)
        if v is None or isinstance(v, (bool, int, float, str)):
            return ast.Value(v, span)
        raise ImportProblem(f"{where}: unexpected value {v!r}")

    def _nested(self, value, children, span: Span, path: Path, where: str) -> ast.Value:
        depth = 1 + max((c.depth for c in children), default=0)
        if depth > MAX_VALUE_DEPTH:
            self.note(where, f"a value nests deeper than {MAX_VALUE_DEPTH} levels, which routelang refuses; "
                             f"written as null", path)
            return ast.Value(None, span)
        return ast.Value(value, span, depth)

    def string(self, text: str, path: Path) -> ast.Value:
        return ast.Value(text, self.locate(path))

    # ---- conditions --------------------------------------------------------------

    def condition(self, c: dict, path: Path, where: str) -> ast.Compare:
        field, op, value = c["field"], c["operator"], c.get("value")
        entry = operators.get(op)
        lhs = ast.FieldPath(field.split("."), self.locate(path + ("field",)))
        if entry.unary:
            if value is not None:
                self.note(where, f"the value {value!r} of `{op}` is ignored by Mixtrain and dropped", path + ("value",))
            operand = None
        elif entry.operand == "list" and not isinstance(value, list):
            # Mixtrain's engine: `in` a non-list never matches, `not_in` always does; so do `[]`.
            what = "no value" if value is None else f"the non-list value {value!r}"
            self.note(where, f"`{op}` with {what} (Mixtrain's validator rejects it): "
                             f"written as `{entry.text} []`, which routes the same", path)
            operand = ast.Value([], self.locate(path + ("value",)), 1)
        else:
            operand = self.value(value, path + ("value",), where)
        note = None
        if c.get("description") is not None:
            note = self.string(c["description"], path + ("description",))
        return ast.Compare(lhs, op, operand, self.locate(path), entry.text, note)

    def tree(self, tree: dict, path: Path, where: str, descriptions: dict[str, tuple[str, Path]]):
        """An `x-routelang.when` condition tree as nodes, grouped as the parser groups them."""
        for kind, cls in (("any", ast.AnyOf), ("all", ast.AllOf)):
            if kind in tree:
                items = [self.tree(c, path + (kind, i), where, descriptions) for i, c in enumerate(tree[kind])]
                if not items:
                    raise ValueError(f"an empty `{kind}` group")
                if len(items) == 1:
                    return items[0]
                if isinstance(items[0], cls):  # `(a and b) and c` reads as one chain
                    items = items[0].items + items[1:]
                return cls(items, self.locate(path))
        if "not" in tree:
            return ast.Not(self.tree(tree["not"], path + ("not",), where, descriptions), self.locate(path))
        leaf = dict(tree, value=tree.get("value"), description=None)
        cmp = self.condition(leaf, path, where)
        described = descriptions.get(_leaf_key(tree))
        if described is not None:
            cmp.note = ast.Value(described[0], self.locate(described[1]))
        return cmp

    # ---- targets -------------------------------------------------------------------

    def duration(self, ms: int, path: Path) -> ast.Duration:
        # What the parser makes of duration_text(ms): `30s` -> 30.0 * 1000, `1500ms` -> 1500.0.
        whole = float(ms // 1000) * 1000 if ms % 1000 == 0 and ms else float(ms)
        return ast.Duration(whole, duration_text(ms), self.locate(path))

    def setting(self, s: target_settings.Setting, v: Any, path: Path, where: str) -> ast.Setting:
        """One `key value` setting, `v` read from the JSON at `path`."""
        if s.kind == "duration":
            value = self.duration(v, path)
            if v > 2**53:
                self.note(where, f"{s.surface} {v}ms is too large to read back exactly", path)
        elif s.kind == "headers":
            value = ast.Value({k: self.string(x, path + (k,)) for k, x in v.items()}, self.locate(path), 1)
        elif s.kind == "block":
            value = [self.setting(sub, v[sub.json_field], path + (sub.json_field,), where)
                     for sub in s.block if v.get(sub.json_field) is not None]
        elif s.kind == "money":  # micro-dollars in the JSON, USD in .route
            value = ast.Value(v / 1_000_000 if v % 1_000_000 else v // 1_000_000, self.locate(path))
        else:
            value = self.value(v, path, where)
        return ast.Setting(s.surface, value, self.locate(path))

    def settings(self, t: dict, path: Path, in_split: bool, label_outside: bool, where: str) -> list[ast.Setting]:
        out = []
        for s in _MIXTRAIN_SETTINGS:
            v = t[s.json_field]
            if v is None or (s.surface == "weight" and (in_split or v == 1.0)) \
                    or (s.surface == "label" and label_outside) or (s.surface == "is_shadow" and not v):
                continue  # unset, Mixtrain's default, or written elsewhere (a split share, `label: T`)
            out.append(self.setting(s, v, path + (s.json_field,), where))
        ext = t.get(EXT, {})
        for s in target_settings.EXTENSIONS:
            v = ext.get(s.json_field)
            if v if s.kind == "block" else v is not None:  # (an empty block is no block)
                out.append(self.setting(s, v, path + (EXT, s.json_field), where))
        return out

    def target(self, t: dict, path: Path, in_split: bool, label_outside: bool, where: str):
        span = self.locate(path)
        strings = [(k, t[k], (k,)) for k in envvars.TARGET_STRING_FIELDS]
        strings += [(f"header {k!r}", v, ("headers", k)) for k, v in (t["headers"] or {}).items()]
        for key, text, at in strings:
            if isinstance(text, str) and envvars.has_refs(text) and not self.from_routelang:
                self.note(where, f"{key} {text!r} holds `${{...}}`, which routelang fills in from the environment "
                                 f"when the router is loaded; Mixtrain takes it literally", path + at)
        settings = self.settings(t, path, in_split, label_outside, where)
        if t["provider"] in PRESETS and not self.inline:
            args = [self.string(t["model_name"], path + ("model_name",))]
            if PRESET_ENDPOINTS.get(t["provider"]) != t["endpoint"]:
                args.append(self.string(t["endpoint"], path + ("endpoint",)))
            provider = ast.Name(t["provider"], self.locate(path + ("provider",)))
            return ast.TargetCall(provider, args, ast.Settings(settings, span) if settings else None, span)
        spelled = [self.setting(s, t[s.json_field], path + (s.json_field,), where) for s in target_settings.IDENTITY]
        return ast.TargetLiteral(ast.Settings(spelled + settings, span), span)


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


def _uses(rule: dict, i: int):
    """(target, JSON path, in_split, label_outside) for each target a rule writes."""
    if "part_of" in rule.get(EXT, {}):
        return  # an extra rule routelang expanded an `or` into; its owner says it all
    if _tree(rule) is not None:
        for index, (in_split, outside) in sorted(_tree_uses(rule).items()):
            yield rule["targets"][index], ("rules", i, "targets", index), in_split, outside
        return
    kind = _kind(rule)
    targets = rule["targets"][:1] if kind == "single" else rule["targets"]
    for k, t in enumerate(targets):
        # A split's weights are its shares; an equal-weights lowering's are the compiler's.
        in_split = kind == "split" or strategies.strategy(kind).mixtrain.weights == "equal"
        outside = kind == "split" and t["label"] is not None and is_identifier(t["label"])
        yield t, ("rules", i, "targets", k), in_split, outside


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


class _FileBuilder(_Builder):
    """The whole file: header, shared target definitions, rules."""

    def build(self, cfg: dict) -> tuple[ast.File, dict[int, list[str]]]:
        items: list = []
        comments: dict[int, list[str]] = {}
        # Targets written by more than one rule, or named in the .route file a
        # compiled config came from, get a definition; the rest stay inline.
        self.named: dict[str, ast.Name] = {}
        definitions = []
        if not self.inline:
            counts: dict[str, int] = {}
            for i, rule in enumerate(cfg["rules"]):
                for t, _, in_split, outside in _uses(rule, i):
                    key = _target_key(t, in_split, outside)
                    counts[key] = counts.get(key, 0) + 1
            taken = set(PRESETS) | keywords()
            for i, rule in enumerate(cfg["rules"]):
                for t, path, in_split, outside in _uses(rule, i):
                    key = _target_key(t, in_split, outside)
                    if (counts[key] > 1 or t.get(EXT, {}).get("name")) and key not in self.named:
                        name = _target_name(t, taken)
                        self.named[key] = ast.Name(name, self.locate(path))
                        expr = self.target(t, path, in_split, outside, f"target {name}")
                        definitions.append(ast.TargetDef(ast.Name(name, self.locate(path)), expr, self.locate(path)))

        header_desc = None
        if cfg["description"]:
            header_desc = self.string(cfg["description"], ("description",))
        elif cfg["description"] is None:
            self.note("router", "description is null; routelang writes it as absent (\"\")", ("description",))
        items.append(ast.RouterHeader(name_node(cfg["name"], self.locate(("name",))), header_desc,
                                      self.locate(("name",))))
        if cfg["metadata"]:
            metadata = self.value(cfg["metadata"], ("metadata",), "metadata")
            items.append(ast.MetadataBlock(metadata, metadata.span))
        elif cfg["metadata"] is None:
            self.note("router", "metadata is null; routelang writes it as absent ({})", ("metadata",))

        # Condition descriptions, for the leaves of `x-routelang.when` trees.
        descriptions: dict[str, dict[str, tuple[str, Path]]] = {}
        for i, rule in enumerate(cfg["rules"]):
            owner = rule.get(EXT, {}).get("part_of", rule["name"])
            for j, c in enumerate(rule["conditions"]):
                if c["description"] is not None:
                    descriptions.setdefault(owner, {}).setdefault(
                        _leaf_key(c), (c["description"], ("rules", i, "conditions", j, "description")))
        rules = [self.rule(rule, i, descriptions.get(rule["name"], {}))
                 for i, rule in enumerate(cfg["rules"]) if "part_of" not in rule.get(EXT, {})]

        uses_presets = any(t["provider"] in PRESETS for i, rule in enumerate(cfg["rules"]) for t, *_ in _uses(rule, i))
        if uses_presets and not self.inline:
            items.append(ast.Import("std.providers", None, NO_SPAN))
        if definitions:
            comments[len(items)] = ["Targets (named in the source, or routed to by several rules)."]
            items.extend(definitions)
        items.extend(rules)
        return ast.File(items, [], self.locate(())), comments

    def rule(self, rule: dict, i: int, descriptions: dict[str, tuple[str, Path]]) -> ast.RuleDef:
        path = ("rules", i)
        where = f"rule {rule['name']!r}"
        ext = rule.get(EXT, {})
        node = ast.RuleDef(name_node(rule["name"], self.locate(path + ("name",))), self.locate(path + ("name",)))
        node.priority = ast.Value(rule["priority"], self.locate(path + ("priority",)))
        if rule["description"]:
            node.description = self.string(rule["description"], path + ("description",))
        elif rule["description"] is None:
            self.note(where, "description is null; routelang writes it as absent (\"\")", path + ("description",))
        if not rule["is_enabled"] and not ext.get("enabled"):
            node.enabled = ast.Name("disabled", self.locate(path + ("is_enabled",)))
        if "when" in ext:
            node.whens.append(self.tree(ext["when"], path + (EXT, "when"), where, descriptions))
        elif rule["conditions"]:
            conditions = [self.condition(c, path + ("conditions", j), where) for j, c in enumerate(rule["conditions"])]
            node.whens.append(conditions[0] if len(conditions) == 1 else
                              ast.AllOf(conditions, self.locate(path + ("conditions",))))
        node.strategies.append(self.strategy(rule, path, where))
        return node

    def ref(self, t: dict, path: Path, in_split: bool, outside: bool, where: str):
        name = self.named.get(_target_key(t, in_split, outside))
        if name is not None:
            return ast.TargetRef(ast.Name(name.text, self.locate(path)), self.locate(path))
        return self.target(t, path, in_split, outside, where)

    def strategy(self, rule: dict, path: Path, where: str) -> ast.Strategy:
        tree = _tree(rule)
        if tree is not None:
            return self.strategy_tree(rule, tree, (), path, where)
        kind, targets = _kind(rule), rule["targets"]
        ext = rule.get(EXT, {}).get("strategy", {})
        span = self.locate(path + ("targets",))
        at = [path + ("targets", k) for k in range(len(targets))]
        if kind == "single":
            if len(targets) > 1:
                self.note(where, f"strategy single with {len(targets)} targets: Mixtrain routes to the first only; "
                                 f"the other {len(targets) - 1} are dropped", path + ("targets",))
            return ast.Strategy("single", [self.ref(targets[0], at[0], False, False, where)], span)
        if kind == "shadow":
            return ast.Strategy("shadow", [self.ref(t, p, False, False, where) for t, p in zip(targets, at)], span)
        if kind != "split":
            defn = strategies.strategy(kind)
            equal_shares = defn.mixtrain.weights == "equal"  # the compiler's weights, not written ones
            strategy = ast.Strategy(kind, [self.ref(t, p, equal_shares, False, where) for t, p in zip(targets, at)], span)
            for factor in defn.score_factors:
                key = f"{factor}_weight"
                strategy.hybrid[factor] = self.value(ext.get(key, 0.0), path + (EXT, "strategy", key), where)
            return strategy
        entries = []
        for t, p in zip(targets, at):
            outside = t["label"] is not None and is_identifier(t["label"])
            share = percent_text(t["weight"]) or repr(t["weight"])
            weight = percent_value(share[:-1]) if share.endswith("%") else float(share)
            label = ast.Name(t["label"], self.locate(p + ("label",))) if outside else None
            entries.append(ast.SplitEntry(weight, share, label, self.ref(t, p, True, outside, where),
                                          self.locate(p + ("weight",))))
        strategy = ast.Strategy("split", [e.target for e in entries], span, entries=entries)
        if ext.get("sticky_by"):
            sticky_at = path + (EXT, "strategy", "sticky_by")
            salt = None
            if ext.get("salt") is not None and ext["salt"] != rule["name"]:
                salt = self.string(ext["salt"], path + (EXT, "strategy", "salt"))
            strategy.sticky = ast.Sticky(ast.FieldPath(ext["sticky_by"].split("."), self.locate(sticky_at)), salt,
                                         self.locate(sticky_at))
        if ext.get("failover") is False:
            strategy.no_failover = self.locate(path + (EXT, "strategy", "failover"))
        return strategy

    def strategy_tree(self, rule: dict, node: dict, tree_path: tuple[int, ...], path: Path,
                      where: str) -> ast.Strategy:
        """A nested strategy tree (`x-routelang.strategy` with `members`; leaves are
        indices into the rule's targets) as syntax nodes."""
        defn = strategies.strategy(node["kind"])
        uses = _tree_uses(rule)
        at = path + (EXT, "strategy")
        span = self.locate(path + ("targets",))

        def member(m, k: int):
            if isinstance(m, dict):
                return self.strategy_tree(rule, m, (*tree_path, k), path, where)
            return self.ref(rule["targets"][m], path + ("targets", m), *uses[m], where)

        members = [member(m, k) for k, m in enumerate(node["members"])]
        strategy = ast.Strategy(defn.kind, members, span)
        if defn.layout == "block":
            labels = node.get("labels") or [None] * len(members)
            for k, (m, target) in enumerate(zip(node["members"], members)):
                label = labels[k]
                if label is not None and isinstance(m, dict) and not is_identifier(label):
                    self.note(where, f"split arm label {label!r} is not a name; it is left out", at)
                # A leaf's label that is no identifier stays a setting of the target.
                written = label is not None and is_identifier(label) and (isinstance(m, dict) or uses[m][1])
                share = percent_text(node["weights"][k]) or repr(node["weights"][k])
                weight = percent_value(share[:-1]) if share.endswith("%") else float(share)
                strategy.entries.append(ast.SplitEntry(weight, share, ast.Name(label, span) if written else None,
                                                       target, span))
            if node.get("sticky_by"):
                default_salt = rule["name"] if not tree_path else f"{rule['name']}/{'.'.join(map(str, tree_path))}"
                salt = None
                if node.get("salt") is not None and node["salt"] != default_salt:
                    salt = self.string(node["salt"], at)
                strategy.sticky = ast.Sticky(ast.FieldPath(node["sticky_by"].split("."), span), salt, span)
            if node.get("failover") is False:
                strategy.no_failover = span
        for factor in defn.score_factors:
            strategy.hybrid[factor] = self.value(node.get(f"{factor}_weight", 0.0), at, where)
        return strategy


# ---- entry points ---------------------------------------------------------------

def _no_span(path: Path) -> Span:
    return NO_SPAN


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


def _compiled_by_routelang(config: dict) -> bool:
    return isinstance(config.get(EXT), dict)  # backends/json.py writes {"format": ..., "compiler": ...}


def _render(cfg: dict, source_name: str, notes: list[ImportNote], from_routelang: bool,
            policies: list | None = None) -> tuple[str, list[ImportNote]]:
    builder = _FileBuilder(_no_span, inline=False, from_routelang=from_routelang)
    builder.notes.extend(notes)
    file, comments = builder.build(cfg)
    header = [f"Imported from {source_name} by `routelang import`."] + [f"NOTE: {n}" for n in builder.notes]
    comments[0] = header + comments.get(0, [])
    return print_file(file, comments) + _policies_text(policies or []), builder.notes


def _policies(config: dict) -> list:
    """The workspaces and agents a config compiled by routelang carries (`x-routelang.policies`)."""
    ext = config.get(EXT)
    found = ext.get("policies") if isinstance(ext, dict) else None
    return found if isinstance(found, list) else []


def _policies_text(policies: list) -> str:
    from ..ir import Policy
    from ..policies import policy_source

    return "".join("\n" + policy_source(Policy.model_validate(p)) for p in policies)


def _same_for_mixtrain(text: str, cfg: dict) -> bool:
    """Does `text` compile to a config whose Mixtrain canonical form is `cfg`?
    (Resolved and checked here rather than through compiler.py, which reads
    JSON configs through this module.)"""
    resolution = resolve(Source("<import>", text))
    if resolution.router is None or has_errors(resolution.diagnostics) or has_errors(check(resolution.router)):
        return False
    compiled, _ = lower(resolution.router)
    try:
        return json.dumps(load_config(compiled), sort_keys=True) == json.dumps(cfg, sort_keys=True)
    except ImportProblem:
        return False


_IGNORED_EXTENSIONS = ImportNote(
    EXT, "the extension fields disagree with what Mixtrain reads (edited after compiling?); "
         "imported Mixtrain's view and ignored them")


def _view(config: dict, source_name: str) -> tuple[dict, list[ImportNote], tuple[str, list[ImportNote]] | None]:
    """The config to write (with its usable extension fields), notes so far,
    and the import text if it was already made while deciding."""
    cfg = load_config(config)
    extended = _with_extensions(cfg, config)
    if extended is None:
        return cfg, [], None
    try:
        rendered = _render(extended, source_name, [], _compiled_by_routelang(config), _policies(config))
        usable = _same_for_mixtrain(rendered[0], cfg)
    except (KeyError, TypeError, AttributeError, ValueError, PrinterBug):
        usable = False  # malformed extension fields: they are a hint, Mixtrain's fields are the config
    if usable:
        return extended, [], rendered
    return cfg, [_IGNORED_EXTENSIONS], None


def import_config_with_notes(config: dict, source_name: str) -> tuple[str, list[ImportNote]]:
    """The `.route` text for a Mixtrain config, and what it could not say."""
    cfg, notes, rendered = _view(config, source_name)
    return rendered if rendered is not None else _render(cfg, source_name, notes, _compiled_by_routelang(config),
                                                         _policies(config))


def import_config(config: dict, source_name: str) -> str:
    """The `.route` text for a Mixtrain routing config (see module docs)."""
    return import_config_with_notes(config, source_name)[0]


def syntax_for_analysis(config: Any, source_name: str, locate: Locate) -> tuple[ast.File, list[ImportNote]]:
    """The syntax nodes of the imported file, each located in the JSON by
    `locate(path)`, with every target inline (at its own object)."""
    cfg, notes, _ = _view(config, source_name)
    builder = _FileBuilder(locate, inline=True, from_routelang=_compiled_by_routelang(config))
    builder.notes.extend(notes)
    file, _ = builder.build(cfg)
    return file, builder.notes
