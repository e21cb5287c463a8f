"""A reference evaluator of Portkey's conditional router, for the tests only:
Portkey-AI/gateway src/services/conditionalRouter.ts (commit 0b982cb31b1e),
followed line by line, with JavaScript's `===`, parseFloat and String() for
JSON values, and generators of conditional configs and of the requests' context.
tests/test_import_peers.py decides imported configs with it, tests/test_peer_backends.py
compiled ones, tests/test_portkey_gateway.py checks it against Portkey's gateway."""

from __future__ import annotations

import math
import re

from hypothesis import strategies as st

UNDEFINED = object()  # JavaScript's undefined (None is null)


def js_strict_equal(a, b) -> bool:
    """`a === b` for JSON values: types must agree (a boolean is not a number), objects are never equal."""
    if a is UNDEFINED or b is UNDEFINED:
        return a is b
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def js_parse_float(v) -> float:
    if v is UNDEFINED or v is None or isinstance(v, bool):
        return math.nan
    if isinstance(v, (int, float)):
        return float(v)
    m = re.match(r"\s*([+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))", str(v))
    return float(m.group(1).replace("Infinity", "inf")) if m else math.nan


def js_string(v) -> str:
    if v is UNDEFINED:
        return "undefined"
    if v is None:
        return "null"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class PortkeyConditionalRouter:
    """Portkey-AI/gateway src/services/conditionalRouter.ts (commit 0b982cb), line by line."""

    def __init__(self, config: dict, context: dict):
        self.config, self.context = config, context

    def resolve_target(self):                   # resolveTarget()
        for condition in self.config["strategy"]["conditions"]:
            if self.evaluate_query(condition["query"]):
                return self.find_target(condition["then"])
        if self.config["strategy"].get("default"):
            return self.find_target(self.config["strategy"]["default"])
        raise LookupError("Query router did not resolve to any valid target")

    def evaluate_query(self, query: dict) -> bool:  # evaluateQuery()
        for key, value in query.items():
            if key == "$or" and isinstance(value, list):
                return any(self.evaluate_query(q) for q in value)
            if key == "$and" and isinstance(value, list):
                return all(self.evaluate_query(q) for q in value)
            context_value = self.get_context_value(key)
            if isinstance(value, (dict, list)):   # typeof value === 'object' && value !== null
                if not self.evaluate_operator(value, context_value):
                    return False
            elif not js_strict_equal(context_value, value):
                return False
        return True

    def evaluate_operator(self, operator: dict, value) -> bool:  # evaluateOperator()
        for op, compare_value in operator.items():
            if op == "$eq":
                if not js_strict_equal(value, compare_value):
                    return False
            elif op == "$ne":
                if js_strict_equal(value, compare_value):
                    return False
            elif op == "$gt":
                if not js_parse_float(value) > js_parse_float(compare_value):
                    return False
            elif op == "$gte":
                if not js_parse_float(value) >= js_parse_float(compare_value):
                    return False
            elif op == "$lt":
                if not js_parse_float(value) < js_parse_float(compare_value):
                    return False
            elif op == "$lte":
                if not js_parse_float(value) <= js_parse_float(compare_value):
                    return False
            elif op == "$in":
                if not isinstance(compare_value, list) or not any(js_strict_equal(value, c) for c in compare_value):
                    return False
            elif op == "$nin":
                if not isinstance(compare_value, list) or any(js_strict_equal(value, c) for c in compare_value):
                    return False
            elif op == "$regex":
                try:
                    regex = re.compile(compare_value)
                except re.error:
                    return False
                return regex.search(js_string(value)) is not None   # returns: later operators are never read
            else:
                raise ValueError(f"Unsupported operator used in the query router: {op}")
        return True

    def find_target(self, name: str) -> dict:       # findTarget()
        for target in self.config["targets"]:
            if target.get("name") == name:
                return target
        raise LookupError(f"Invalid target name found in the query router: {name}")

    def get_context_value(self, key: str):          # getContextValue(): two levels, never deeper
        parts = key.split(".")
        first = self.context.get(parts[0], UNDEFINED)
        if not isinstance(first, dict) or len(parts) < 2:
            return UNDEFINED
        return first.get(parts[1], UNDEFINED)


# Values on which JavaScript and Python agree (docs/import.md lists where they do not: booleans,
# null, strings parseFloat reads a prefix of, regex syntax only one of them has).
STRINGS = st.sampled_from(["free", "paid", "gpt-4o", "eu", "5", "12", "3.5", "-1", "", "undefined", "abc"])
NUMBERS = st.one_of(st.integers(-20, 20), st.sampled_from([0.5, 2.5, -3.25, 10.0]))
LITERALS = st.one_of(STRINGS, NUMBERS)
PATTERNS = st.sampled_from(["^f", "ee$", "^[0-9]+$", "und", "a|e", "(?:pa)+", "^$", "x", "^-"])
KEYS = st.sampled_from(["metadata.tier", "metadata.region", "metadata.n", "params.model", "params.max_tokens",
                        "metadata.user.tier", "url.pathname"])
COMPARISONS = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex"])


@st.composite
def operator_objects(draw):
    ops = draw(st.lists(COMPARISONS, min_size=1, max_size=3, unique=True))
    out = {}
    for op in ops:
        if op == "$regex":
            out[op] = draw(PATTERNS)
        elif op in ("$in", "$nin"):
            out[op] = draw(st.one_of(st.lists(LITERALS, max_size=3), LITERALS))  # not a list: never holds
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            out[op] = draw(st.one_of(NUMBERS, st.sampled_from(["10", "2.5", "abc"])))
        else:
            out[op] = draw(LITERALS)
    return out


def queries(depth: int = 2):
    leaf = st.dictionaries(KEYS, st.one_of(LITERALS, operator_objects()), min_size=0, max_size=3)
    if depth == 0:
        return leaf
    logical = st.fixed_dictionaries({}).flatmap(lambda _: st.tuples(
        st.dictionaries(KEYS, st.one_of(LITERALS, operator_objects()), max_size=2),
        st.sampled_from(["$or", "$and"]),
        st.lists(queries(depth - 1), min_size=0, max_size=3),
        st.dictionaries(KEYS, LITERALS, max_size=1),
    ).map(lambda t: {**t[0], t[1]: t[2], **{k: v for k, v in t[3].items() if k not in t[0]}}))
    return st.one_of(leaf, logical)


@st.composite
def conditional_configs(draw):
    n = draw(st.integers(1, 4))
    targets = [{"name": f"t{i}", "provider": "openai", "override_params": {"model": f"m{i}"}} for i in range(n)]
    names = st.sampled_from([t["name"] for t in targets])
    conditions = draw(st.lists(st.fixed_dictionaries({"query": queries(), "then": names}), min_size=1, max_size=4))
    strategy = {"mode": "conditional", "conditions": conditions}
    if draw(st.booleans()):
        strategy["default"] = draw(names)
    return {"strategy": strategy, "targets": targets}


CONTEXT_VALUES = st.one_of(STRINGS, st.integers(-20, 20))
CONTEXTS = st.fixed_dictionaries({
    "metadata": st.dictionaries(st.sampled_from(["tier", "region", "n", "user"]), STRINGS, max_size=4),
    "params": st.dictionaries(st.sampled_from(["model", "max_tokens"]), CONTEXT_VALUES, max_size=2),
})
