"""IR -> a Python module that decides which rule a request matches.

The module is rendered from templates/python_module.py.j2 out of the same
`Plan` the runtime interprets (IR -> backends.json.lower -> runtime.model),
so both executors read one model. Each operator is inlined with exactly the
meaning of routelang/vocab/operators.py (each entry's `python` facet), or
calls it (the string operators).

Safety: every user-written string (names, values, regexes, paths) enters the
code only through `literal()` (Python's repr, or an equivalent for floats
and huge integers) or through a repr'd comment; the template is ours, and
no user text is ever rendered as a template.

Speed: fields are resolved once per request, just before the first rule that
reads them; constants, frozensets and regexes are built at import; and rules
are indexed on the field most of them test with `==` or `in` (as OPA does):
a dict from the request's value there to a function that checks, in
evaluation order, only the rules that can still match. A rule leaves a bucket
only when its `==`/`in` conjunct provably fails, so the first match is the
same as a linear scan's.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2

from .. import __version__, ir
from ..runtime.model import Plan, RuleSpec
from ..vocab import operators

TEMPLATE = "python_module.py.j2"
MIN_INDEXED_RULES = 2
MAX_BUCKET_STEPS = 20  # index only while the buckets hold at most this many rule checks per rule
INLINE_IN_LIMIT = 8    # `in` lists up to this size test as a tuple; longer ones get a frozenset
SCALAR_TYPES = (str, int, float, bool, type(None))


def literal(value: Any) -> str:
    """A Python expression equal to `value` (a JSON value), safe to paste into code."""
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, int):
        try:
            return repr(value)
        except ValueError:  # beyond the decimal digit limit: hex has none
            return hex(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'float("nan")'
        if math.isinf(value):
            return 'float("inf")' if value > 0 else 'float("-inf")'
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _indexable(value: Any) -> bool:
    """Usable as a dict key with `==`'s meaning: hashable scalars, NaN excepted."""
    return isinstance(value, SCALAR_TYPES) and not (isinstance(value, float) and math.isnan(value))


# ---- code for conditions --------------------------------------------------------------

@dataclass
class _Emitter:
    """Module-level state: constants, helper imports, field variables."""

    constants: dict[str, str] = field(default_factory=dict)        # literal -> name
    helpers: dict[str, str] = field(default_factory=dict)          # vocab.operators name -> alias
    fields: dict[str, str] = field(default_factory=dict)           # path -> variable
    uses_regex: bool = False

    def constant(self, code: str) -> str:
        if code not in self.constants:
            self.constants[code] = f"_K{len(self.constants)}"
        return self.constants[code]

    def helper(self, name: str) -> str:
        return self.helpers.setdefault(name, f"_{name}")

    def variable(self, path: str) -> str:
        return self.fields.setdefault(path, f"f{len(self.fields)}")

    def scalar(self, value: Any) -> str:
        """A short literal inline, anything else as a named constant."""
        code = literal(value)
        if isinstance(value, (bool, type(None))) or (isinstance(value, (int, float, str)) and len(code) <= 40
                                                      and "float(" not in code):
            return code
        return self.constant(code)

    def expression(self, tree: dict | None) -> str:
        if tree is None:
            return "True"
        if "all" in tree or "any" in tree:
            key = "all" if "all" in tree else "any"
            parts = [self.expression(c) for c in tree[key]]
            if not parts:
                return "True" if key == "all" else "False"
            return parts[0] if len(parts) == 1 else "(" + f" {'and' if key == 'all' else 'or'} ".join(parts) + ")"
        if "not" in tree:
            inner = self.expression(tree["not"])
            return f"(not {inner})" if inner.startswith("(") and inner.endswith(")") else f"(not ({inner}))"
        return self.compare(self.variable(tree["field"]), tree["operator"], tree.get("value"))

    def compare(self, v: str, op: str, value: Any) -> str:
        return operators.get(op).python(self, v, value)

    def pattern(self, value: Any) -> str:
        self.uses_regex = True
        return self.constant(f"re.compile({literal(str(value))})")

    def membership(self, v: str, value: Any, negated: bool) -> str:
        """`v in value` (Mixtrain: False unless value is a list), or its negation."""
        if not isinstance(value, list) or not value:
            return "True" if negated else "False"
        items = literal(value)[1:-1]
        operator = "not in" if negated else "in"
        if len(value) <= INLINE_IN_LIMIT:
            return f"{v} {operator} ({items},)"  # tuple membership is list membership
        as_tuple = self.constant(f"({items},)")
        if not all(_indexable(item) for item in value):
            return f"{v} {operator} {as_tuple}"
        # A frozenset answers as the list does for scalars (equal values hash alike);
        # other values (lists, dicts) take the tuple.
        as_set = self.constant(f"frozenset({as_tuple})")
        test = f"({v} in {as_set} if type({v}) in {self.constant(_SCALARS)} else {v} in {as_tuple})"
        return f"(not {test})" if negated else test


_SCALARS = "frozenset((str, int, float, bool, type(None)))"


# ---- rule order and the index -------------------------------------------------------------

def _conjuncts(tree: dict | None) -> list[dict]:
    if tree is None:
        return []
    if "all" in tree:
        return [leaf for c in tree["all"] for leaf in _conjuncts(c)]
    return [tree]


def _index_keys(rule: RuleSpec, path: str) -> list[Any] | None:
    """Values of `path` that are the only ones `rule` can match, or None."""
    for leaf in _conjuncts(rule.when):
        if leaf.get("field") != path:
            continue
        value = leaf.get("value")
        if leaf["operator"] == "equals" and _indexable(value):
            return [value]
        if leaf["operator"] == "in" and isinstance(value, list) and all(_indexable(v) for v in value):
            return list(value)
    return None


def _index_field(plan: Plan) -> str | None:
    counts: dict[str, int] = {}
    for rule in plan.order:
        for path in dict.fromkeys(leaf.get("field") for leaf in _conjuncts(rule.when)):
            if path is not None and _index_keys(rule, path) is not None:
                counts[path] = counts.get(path, 0) + 1
    if not counts:
        return None
    path, count = max(counts.items(), key=lambda item: item[1])
    return path if count >= MIN_INDEXED_RULES else None


def _location_comment(rule: RuleSpec, position: int) -> list[str]:
    line = f"rule {position}: {rule.name!r}, priority {rule.priority}"
    if rule.location is not None:
        file, row, column = rule.location
        line += f", at {file!r} line {row} column {column}"
    return [line]


def _resolve(em: _Emitter, path: str, resolved: set[str]) -> list[tuple[str, str]]:
    """Statements giving `path`'s variable its value (Mixtrain's lookup: dicts
    only, None where a step is missing), reusing variables of resolved prefixes."""
    if path in resolved:
        return []
    resolved.add(path)
    variable = em.variable(path)
    if "." not in path:
        return [(variable, f"request.get({literal(path)})")]
    parent, key = path.rsplit(".", 1)
    out = _resolve(em, parent, resolved)
    above = em.variable(parent)
    out.append((variable, f"{above}.get({literal(key)}) if isinstance({above}, dict) else None"))
    return out


def _chain(em: _Emitter, plan: Plan, positions: list[int], known: set[str]) -> list[dict]:
    """The checks of the rules at `positions`, in order; each field resolved
    just before the first rule that reads it."""
    steps = []
    resolved = set(known)
    for position in positions:
        rule = plan.order[position]
        condition = None if rule.when is None else [em.expression(c) for c in (
            rule.when["all"] if rule.when.get("all") else [rule.when])]
        resolve = [statement for path in _fields(rule.when) for statement in _resolve(em, path, resolved)]
        steps.append({"position": position, "condition": condition, "resolve": resolve,
                      "comment": _location_comment(rule, position)})
        if condition is None:
            break  # matches every request: later rules are never reached here
    return steps


def _fields(tree: dict | None) -> list[str]:
    out: list[str] = []

    def walk(t):
        if t is None:
            return
        for key in ("all", "any"):
            if key in t:
                for c in t[key]:
                    walk(c)
                return
        if "not" in t:
            walk(t["not"])
            return
        out.append(t["field"])

    walk(tree)
    return list(dict.fromkeys(out))


def _index(em: _Emitter, plan: Plan) -> dict | None:
    path = _index_field(plan)
    if path is None:
        return None
    keys_of = [_index_keys(rule, path) for rule in plan.order]
    unindexed = [p for p, keys in enumerate(keys_of) if keys is None]
    by_value: dict[Any, list[int]] = {}  # equal values (1, 1.0, True) share one entry, as `==` does
    for position, keys in enumerate(keys_of):
        for key in keys or ():
            members = by_value.setdefault(key, [])
            if position not in members:
                members.append(position)
    buckets: dict[tuple[int, ...], str] = {}
    entries = []
    for key, members in by_value.items():
        positions = tuple(sorted(set(members) | set(unindexed)))
        entries.append((key, positions))
        buckets.setdefault(positions, f"_bucket_{len(buckets)}")
    default = tuple(unindexed)
    buckets.setdefault(default, "_bucket_default")
    if sum(len(p) for p in buckets) > MAX_BUCKET_STEPS * max(len(plan.order), 1):
        return None  # too many unindexed rules copied into too many buckets: scan linearly
    known: set[str] = set()
    resolve = _resolve(em, path, known)
    parameters = list(dict.fromkeys(name for name, _ in resolve))
    rendered = [{"function": name, "steps": _chain(em, plan, list(positions), known),
                 "doc": "a value no rule tests for: only the rules that do not test this field" if
                 positions == default else None}
                for positions, name in buckets.items()]
    return {
        "variable": em.variable(path),
        "parameters": ", ".join(parameters),
        "field_comment": repr(path),
        "resolve": resolve,
        "entries": [(literal(key), buckets[positions]) for key, positions in entries],
        "default": buckets[default],
        "buckets": rendered,
    }


# ---- the module ---------------------------------------------------------------------------

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("routelang", "templates"),
    autoescape=False,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
_RULE_COMMENT = re.compile(r"^\s*# rule (\d+): ")


def render(plan: Plan, source_name: str = "<config>") -> str:
    """The Python module for `plan`."""
    em = _Emitter()
    index = _index(em, plan)
    steps = None if index is not None else _chain(em, plan, list(range(len(plan.order))), set())
    text = _environment.get_template(TEMPLATE).render(
        version=__version__,
        source_name=repr(source_name),
        router_name=literal(plan.name),
        rules=[{"name": literal(r.name), "priority": literal(r.priority)} for r in plan.order],
        constants=[(name, code) for code, name in em.constants.items()],
        helpers=sorted(em.helpers.items()),
        uses_regex=em.uses_regex,
        index=index,
        steps=steps,
    )
    return text.rstrip("\n") + "\n" + _line_map(text, plan) + _policies(plan)


def _policies(plan: Plan) -> str:
    """POLICIES: the router's workspaces and agents, as the JSON backend writes them (docs/tenants.md)."""
    if not plan.policies:
        return ""
    return ("\n# The workspaces and agents (x-routelang.policies; money in micro-dollars).\n"
            f"POLICIES = {literal([dict(p) for p in plan.policies])}\n")


def _line_map(text: str, plan: Plan) -> str:
    """LINE_MAP: generated line of each rule's check -> (.route file, line, column)."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _RULE_COMMENT.match(line)
        if match:
            rule = plan.order[int(match.group(1))]
            if rule.location is not None:
                entries.append(f"    {number + 1}: {literal(list(rule.location))},")
    body = "\n".join(entries)
    return ("\n\n# First generated line of each rule's code -> [.route file, line, column].\n"
            "LINE_MAP = {" + (f"\n{body}\n" if entries else "") + "}\n")


def generate(router: ir.Router, source_name: str = "<input>") -> tuple[str, list]:
    """`routelang compile --target python`: the module, and notes (none)."""
    from ..compiler import rule_locations
    from ..runtime.model import plan_from_config
    from .json import lower

    config, _notes = lower(router)
    return render(plan_from_config(config, locations=rule_locations(router)), source_name), []


_cache: dict[str, Callable[[dict], int]] = {}


def executor(plan: Plan) -> Callable[[dict], int]:
    """`decide` of the generated module for `plan`, compiled once per process
    (cached by the source's hash). Only generated text is executed."""
    source = render(plan, "<runtime>")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    decide = _cache.get(digest)
    if decide is None:
        namespace: dict[str, Any] = {"__name__": f"routelang_generated_{digest[:12]}"}
        # Safe: `source` is our template's output, every user string in it a repr() literal.
        exec(compile(source, f"<routelang generated {digest[:12]}>", "exec"), namespace)  # noqa: S102
        decide = _cache[digest] = namespace["decide"]
    return decide
