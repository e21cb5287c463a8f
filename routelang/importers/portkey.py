"""Portkey gateway config (JSON) -> `.route` file.

    text, notes = import_portkey(json.load(f), "portkey.json")

A config is a tree: a node with a `strategy` has `targets`, each a node
itself; a leaf names a provider. Settings a node gives (`retry`,
`request_timeout`, `override_params`, `custom_host`) pass down to the targets
below it, as Portkey passes them. The top node's strategy becomes the rules:
`conditional` gives one rule per condition, in order, and one for `default`;
any other mode one rule. `conditions[].query` is translated as Portkey's
src/services/conditionalRouter.ts evaluates it, quirks included: a `$or` or
`$and` list ends the query (later keys are never read), `$regex` ends its
operator object, a key is looked up two levels deep (`metadata.a.b` reads
`metadata.a`), `$in`/`$nin` with a value that is not a list never hold,
comparisons go through parseFloat. docs/import.md has the table.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .common import (
    FALSE,
    TRUE,
    Always,
    Cond,
    ImportNote,
    ImportProblem,
    Rule,
    Strategy,
    Target,
    all_of,
    any_of,
    as_strategy,
    compare,
    key_header,
    listing,
    mapping,
    number,
    simplest,
    text,
    unique_name,
    write_file,
)

MODES = ("single", "loadbalance", "fallback", "conditional")
# Where a provider's API lives when the config names no `custom_host`.
PROVIDER_HOSTS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral-ai": "https://api.mistral.ai/v1",
    "together-ai": "https://api.together.xyz/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "fireworks-ai": "https://api.fireworks.ai/inference/v1",
}
# Portkey retries these when `retry.on_status_codes` is not given.
DEFAULT_RETRY_CODES = [429, 500, 502, 503, 504]
# What a routelang target may set: `retries` 0..5, `timeout` at least 100 ms (vocab/settings.py).
MAX_RETRIES, MIN_TIMEOUT_MS = 5, 100
# Node keys that are read; anything else is noted as not carried over.
NODE_KEYS = {"strategy", "targets", "name", "provider", "virtual_key", "api_key", "weight", "override_params",
             "retry", "request_timeout", "custom_host", "on_status_codes"}
INHERITED = ("retry", "request_timeout", "override_params", "custom_host")
# Context roots: Portkey's `params` is the request body, `url.pathname` the endpoint path.
_NUMERIC = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_JS_FLOAT = re.compile(r"\s*([+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))")


def js_parse_float(value: Any) -> float:
    """JavaScript's parseFloat: the longest numeric prefix of String(value), NaN if none."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    m = _JS_FLOAT.match(str(value))
    if not m:
        return math.nan
    return float(m.group(1).replace("Infinity", "inf"))


class _Importer:
    def __init__(self):
        self.notes: list[ImportNote] = []
        self.targets: list[Target] = []
        self.taken: set[str] = set()
        self.numeric_noted = False

    def note(self, where: str, message: str, path: tuple = ()) -> None:
        self.notes.append(ImportNote(where, message, path))

    # ---- queries (conditionalRouter.ts evaluateQuery / evaluateOperator) -------------

    def field(self, key: str, where: str) -> list[str]:
        """getContextValue: `context[parts[0]]?.[parts[1]]`, never deeper."""
        parts = key.split(".")
        if len(parts) > 2:
            self.note(where, f"`{key}`: Portkey looks keys up two levels deep, so this reads "
                             f"`{'.'.join(parts[:2])}`; written so")
        root, second = parts[0], parts[1] if len(parts) > 1 else None
        if root == "params" and second is not None:
            return [second]                       # the request body's field
        if root == "metadata" and second is not None:
            return ["metadata", second]
        if root == "url" and second == "pathname":
            return ["request", "path"]
        self.note(where, f"`{key}` is never set in Portkey's context (it has metadata.*, params.* and "
                         f"url.pathname), so it reads undefined there; written as the request field `{key}`")
        return parts[:2]

    def query(self, query: Any, where: str) -> Cond | Always:
        if not isinstance(query, dict):
            raise ImportProblem(f"{where}: a query is an object, not {query!r}")
        parts: list = []
        keys = list(query)
        for i, key in enumerate(keys):
            value = query[key]
            if key in ("$or", "$and"):
                if not isinstance(value, list):
                    raise ImportProblem(f"{where}: `{key}` takes a list of queries, not {value!r}")
                subs = [self.query(q, where) for q in value]
                parts.append(any_of(subs) if key == "$or" else all_of(subs))
                if keys[i + 1:]:
                    self.note(where, f"Portkey decides the query at `{key}` and never reads "
                                     f"{', '.join(f'`{k}`' for k in keys[i + 1:])} after it; left out")
                return all_of(parts)
            field = self.field(key, where)
            if isinstance(value, list):
                if value:
                    raise ImportProblem(f"{where}: `{key}`: a list is read as operators by Portkey, "
                                        f"which refuses it (Unsupported operator)")
                parts.append(TRUE)  # no operators: holds
            elif isinstance(value, dict):
                parts.append(self.operators(value, field, key, where))
            else:
                parts.append(self.strict_equal(field, value, key, where))
        return all_of(parts)

    def strict_equal(self, field: list[str], value: Any, key: str, where: str, negated: bool = False):
        """JavaScript's `===` (or `!==`) with a literal."""
        op = "!=" if negated else "=="
        if isinstance(value, (dict, list)):
            self.note(where, f"`{key}` is compared with an object, which `===` never equals; "
                             f"written as a condition that {'always' if negated else 'never'} holds")
            return TRUE if negated else FALSE
        if value is None:
            self.note(where, f"`{key}` compared with null: Portkey tells null from a missing key, "
                             f"routelang does not (both read null)")
        elif isinstance(value, bool):
            self.note(where, f"`{key}` compared with {str(value).lower()}: routelang's `{op}` takes 1 as "
                             f"equal to true, JavaScript's `===` does not")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ImportProblem(f"{where}: `{key}`: {value!r} is not JSON")
        return compare(field, op, value)

    def operators(self, ops: dict, field: list[str], key: str, where: str):
        parts: list = []
        names = list(ops)
        for i, op in enumerate(names):
            value = ops[op]
            if op == "$eq":
                parts.append(self.strict_equal(field, value, key, where))
            elif op == "$ne":
                parts.append(self.strict_equal(field, value, key, where, negated=True))
            elif op in _NUMERIC:
                number = js_parse_float(value)
                if math.isnan(number):
                    self.note(where, f"`{key}` {op} {value!r}: parseFloat gives NaN, so it never holds")
                    parts.append(FALSE)
                    continue
                if math.isinf(number):
                    raise ImportProblem(f"{where}: `{key}` {op} {value!r}: routelang has no literal for Infinity")
                if not self.numeric_noted:
                    self.numeric_noted = True
                    self.note(where, "numeric comparisons read the request value with float(); Portkey "
                                     "uses parseFloat, which also reads a numeric prefix (`12abc` as 12)")
                parts.append(compare(field, _NUMERIC[op], number if not number.is_integer() else int(number)))
            elif op in ("$in", "$nin"):
                if not isinstance(value, list):
                    self.note(where, f"`{key}` {op} with a value that is not a list never holds in Portkey")
                    parts.append(FALSE)
                    continue
                if any(isinstance(v, (bool, dict, list)) or v is None for v in value):
                    self.note(where, f"`{key}` {op}: booleans, null and objects compare differently "
                                     f"in routelang (1 == true; null is also a missing key)")
                parts.append(compare(field, "in" if op == "$in" else "not in", value))
            elif op == "$regex":
                parts.append(self.regex(field, value, key, where))
                if names[i + 1:]:
                    self.note(where, f"`{key}`: Portkey returns at `$regex` and never reads "
                                     f"{', '.join(f'`{n}`' for n in names[i + 1:])}; left out")
                break
            else:
                raise ImportProblem(f"{where}: `{key}`: Portkey refuses the operator `{op}` "
                                    f"(Unsupported operator used in the query router)")
        return all_of(parts)

    def regex(self, field: list[str], pattern: Any, key: str, where: str):
        pattern = str(pattern)
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            self.note(where, f"`{key}` $regex {pattern!r} does not compile ({exc}); written as never holding")
            return FALSE
        if _js_only(pattern):
            self.note(where, f"`{key}` $regex {pattern!r} is read as a Python regular expression "
                             f"(JavaScript's syntax differs in places)")
        matches = compare(field, "=~", pattern)
        if compiled.search("undefined"):
            # RegExp.test(undefined) tests the text "undefined": a missing key matches.
            return any_of([compare(field, "not exists", unary=True), matches])
        return matches

    # ---- targets ---------------------------------------------------------------------

    def node(self, node: Any, inherited: dict, path: tuple, where: str):
        """A target name or a strategy for a config node."""
        if not isinstance(node, dict):
            raise ImportProblem(f"{where}: a target is an object, not {node!r}")
        for key in node:
            if key not in NODE_KEYS:
                self.note(where, f"`{key}` is not carried over (routelang has no equivalent)", path + (key,))
        settings = dict(inherited)
        for key in INHERITED:
            if key in node:
                value = node[key]
                if key == "override_params":
                    value = dict(settings.get(key, {}), **mapping(value, f"{where}: override_params"))
                elif key == "retry":
                    value = mapping(value, f"{where}: retry")
                elif key == "request_timeout":
                    value = number(value, f"{where}: request_timeout")
                else:
                    value = text(value, f"{where}: custom_host")
                settings[key] = value
        if "strategy" not in node:
            return self.leaf(node, settings, path, where)
        strategy = mapping(node["strategy"], f"{where}: strategy")
        mode = strategy.get("mode")
        targets = listing(node.get("targets") or [], f"{where}: targets")
        if mode not in MODES:
            raise ImportProblem(f"{where}: strategy.mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not targets:
            raise ImportProblem(f"{where}: a `{mode}` strategy needs targets")
        if mode == "conditional":
            self.note(where, "a conditional strategy below the top of the config cannot be written (routelang "
                             "decides conditions in rules); written as its default target", path)
            chosen = _named(targets, strategy.get("default"), where) if strategy.get("default") else 0
            return self.node(targets[chosen], settings, path + ("targets", chosen), where)
        members = [self.node(t, settings, path + ("targets", i), f"{where} > target {i}")
                   for i, t in enumerate(targets)]
        if mode == "single":
            if len(members) > 1:
                self.note(where, f"strategy single with {len(members)} targets: Portkey uses the first; "
                                 f"the others are dropped", path)
            return members[0]
        if mode == "fallback":
            codes = listing(strategy.get("on_status_codes") or [], f"{where}: on_status_codes")
            if codes:
                self.note(where, f"Portkey falls back only on status {codes}; routelang moves on after a "
                                 f"target's retryable failures (docs/gateway.md)", path + ("strategy",))
            return simplest(Strategy("fallback", members))
        weights = [number(t.get("weight", 1), f"{where} > target {i}: weight") for i, t in enumerate(targets)]
        kept = [(w, m) for w, m in zip(weights, members) if w > 0]
        if len(kept) < len(members):
            self.note(where, "targets of weight 0 are never picked by Portkey's loadbalance; left out", path)
        if not kept:
            raise ImportProblem(f"{where}: every loadbalance target has weight 0")
        total = sum(w for w, _ in kept)
        return simplest(Strategy("split", [m for _, m in kept], weights=_shares([w / total for w, _ in kept])))

    def leaf(self, node: dict, settings: dict, path: tuple, where: str) -> str:
        provider = node.get("provider")
        if not isinstance(provider, str):
            if "virtual_key" in node:
                provider = "portkey-virtual-key"
            else:
                raise ImportProblem(f"{where}: a target needs a provider (or a strategy and targets)")
        params = settings.get("override_params", {})
        model = params.get("model")
        if model is not None:
            model = text(model, f"{where}: override_params.model")
        else:
            self.note(where, "no override_params.model: Portkey sends the client's model; routelang names the "
                             "model of each target, written as \"client-model\"", path)
            model = "client-model"
        for key in params:
            if key != "model":
                self.note(where, f"override_params.{key} is not carried over (routelang sends the client's "
                                 f"parameters)", path + ("override_params", key))
        endpoint = settings.get("custom_host") or PROVIDER_HOSTS.get(provider)
        name = unique_name(str(node.get("name") or node.get("virtual_key") or f"{provider}_{model}"), self.taken)
        if endpoint is None:
            variable = re.sub(r"[^A-Z0-9]+", "_", provider.upper()).strip("_") + "_BASE_URL"
            self.note(where, f"provider {provider!r} has no endpoint routelang knows; written as ${{{variable}}}",
                      path)
            endpoint = f"${{{variable}}}"
        target = Target(name, provider, model, endpoint)
        if "api_key" in node:
            header, value = key_header(provider, str(node["api_key"]))
            target.headers[header] = value
        if "virtual_key" in node:
            variable = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") + "_API_KEY"
            self.note(where, f"virtual_key is a key in Portkey's vault; written as the header "
                             f"Authorization: Bearer ${{{variable}}}", path + ("virtual_key",))
            target.headers["Authorization"] = f"Bearer ${{{variable}}}"
        retry = settings.get("retry")
        if isinstance(retry, dict) and retry.get("attempts"):
            attempts = int(number(retry["attempts"], f"{where}: retry.attempts"))
            if attempts > MAX_RETRIES:
                self.note(where, f"retry.attempts {attempts} is above routelang's {MAX_RETRIES}; written as "
                                 f"{MAX_RETRIES}", path)
            target.retries = min(attempts, MAX_RETRIES)
            codes = retry.get("on_status_codes")
            if codes is not None and sorted(number(c, f"{where}: retry.on_status_codes")
                                            for c in listing(codes, f"{where}: retry.on_status_codes")) \
                    != DEFAULT_RETRY_CODES:
                self.note(where, f"Portkey retries on status {codes}; routelang retries 408, 409, 429 and 5xx "
                                 f"(docs/gateway.md)", path)
        timeout = settings.get("request_timeout")
        if timeout is not None:
            if timeout < MIN_TIMEOUT_MS:
                self.note(where, f"request_timeout {timeout}ms is below routelang's {MIN_TIMEOUT_MS}ms; "
                                 f"written as {MIN_TIMEOUT_MS}ms", path)
            target.timeout_ms = max(int(timeout), MIN_TIMEOUT_MS)
        self.targets.append(target)
        return name


def _js_only(pattern: str) -> bool:
    """Constructs Python's `re` reads differently from JavaScript's RegExp."""
    return bool(re.search(r"\(\?<[=!]|\(\?P|\\[AZz]|\(\?[aiLmsux]|\$\{|\\u\{", pattern))


def _named(targets: list, name: Any, where: str) -> int:
    """conditionalRouter.ts findTarget: the index of the target named `name`."""
    for i, t in enumerate(targets):
        if isinstance(t, dict) and t.get("name") == name:
            return i
    raise ImportProblem(f"{where}: no target is named {name!r} (Portkey: Invalid target name found in the "
                        f"query router)")


def _shares(weights: list[float]) -> list[float]:
    """Weights that add up to exactly 1.0, the last taking the rounding."""
    shares = [float(w) for w in weights]
    shares[-1] = 1.0 - math.fsum(shares[:-1])
    return shares


def looks_like(config: Any) -> bool:
    return isinstance(config, dict) and (
        isinstance(config.get("strategy"), dict) and "mode" in config["strategy"]
        or ("provider" in config or "virtual_key" in config) and "rules" not in config)


def import_portkey(config: Any, source_name: str) -> tuple[str, list[ImportNote]]:
    """The `.route` text for a Portkey config, and what it could not say."""
    if not isinstance(config, dict):
        raise ImportProblem("a Portkey config is a JSON object")
    imp = _Importer()
    rules: list[Rule] = []
    strategy = config.get("strategy")
    if isinstance(strategy, dict) and strategy.get("mode") == "conditional":
        targets = listing(config.get("targets") or [], "config: targets")
        base = {k: config[k] for k in INHERITED if k in config}
        for key in config:
            if key not in NODE_KEYS:
                imp.note("config", f"`{key}` is not carried over (routelang has no equivalent)", (key,))
        conditions = strategy.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise ImportProblem("config: a conditional strategy needs conditions (Portkey: No conditions passed "
                                "in the query router)")
        members: dict[int, Any] = {}

        def member(index: int):
            if index not in members:
                members[index] = imp.node(targets[index], base, ("targets", index), f"target {index}")
            return members[index]

        entries = [(c, _named(targets, mapping(c, f"condition {i}").get("then"), f"condition {i}"))
                   for i, c in enumerate(conditions)]
        if strategy.get("default") is not None:
            entries.append((None, _named(targets, strategy["default"], "default")))
        taken: set[str] = set()
        for i, (condition, index) in enumerate(entries):
            where = "default" if condition is None else f"condition {i}"
            when = TRUE if condition is None else imp.query(condition.get("query"), where)
            if when is FALSE:
                imp.note(where, "the query never holds; the rule is left out", ("strategy", "conditions", i))
                continue
            name = unique_name("default" if condition is None else f"condition_{i}", taken)
            priority = 10 * (len(entries) - i)
            rules.append(Rule(name, priority, as_strategy(member(index)), None if when is TRUE else when,
                              f"then {condition['then']}" if condition is not None else None))
            if when is TRUE and condition is not None:
                imp.note(where, "the query always holds: the conditions after it are never reached")
                break
        if not rules:
            raise ImportProblem("no condition can ever hold and there is no default: Portkey refuses every "
                                "request (Query router did not resolve to any valid target)")
    else:
        root = imp.node(config, {}, (), "config")
        rules.append(Rule("default", 0, as_strategy(root)))
    text = write_file("portkey", "Imported from a Portkey config", source_name, imp.notes, imp.targets, rules,
                      "Portkey")
    return text, imp.notes
