"""LiteLLM proxy `config.yaml` -> `.route` file.

    text, notes = import_litellm(yaml.safe_load(f), "config.yaml")

Each `model_list` entry is a deployment (a target); entries sharing a
`model_name` are a model group, which a client picks with the request's
`model`. Each group becomes a rule `when model == "NAME"` (with its
`model_group_alias` names: `model in [...]`) whose strategy is the group's
routing strategy over its deployments, followed by the group's `fallbacks`.
Settings are read from `router_settings` and `litellm_settings` (the
router's win, as LiteLLM's Router takes its own arguments over the module
defaults). docs/import.md lists what is exact and what is noted.
"""

from __future__ import annotations

import re
from typing import Any

from ..vocab import strategies as vocab
from .common import (
    Cond,
    ImportNote,
    ImportProblem,
    Rule,
    Strategy,
    Target,
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

# The API a provider prefix (`openai/gpt-4o`) names, when no api_base is given.
PROVIDER_HOSTS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "together_ai": "https://api.together.xyz/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
}
# LiteLLM's routing_strategy -> routelang's strategy and what differs.
_EVEN = vocab.ROUND_ROBIN.keyword
STRATEGIES = {
    "simple-shuffle": (vocab.SPLIT.kind, None),
    "least-busy": (vocab.ROUND_ROBIN.kind, ("least-busy picks the deployment with the fewest requests in flight; "
                                           f"routelang has no such strategy: written as {_EVEN}, which spreads "
                                           "requests evenly")),
    "usage-based-routing": (vocab.ROUND_ROBIN.kind, ("usage-based-routing picks the deployment with the least tokens "
                                                    f"used this minute; written as {_EVEN}, which spreads requests "
                                                    "evenly")),
    "usage-based-routing-v2": (vocab.ROUND_ROBIN.kind, ("usage-based-routing-v2 picks the deployment with the least "
                                                       f"tokens used this minute; written as {_EVEN}")),
    "latency-based-routing": (vocab.LEAST_LATENCY.kind, ("latency-based-routing keeps its own latency window and buffer; "
                                               "routelang's least_latency uses a moving average (docs/runtime.md)")),
    "cost-based-routing": (vocab.LOWEST_COST.kind, ("cost-based-routing reads LiteLLM's price list; routelang's lowest_cost "
                                          "reads each target's `cost`, which the import does not know")),
}
# The settings read, each with the type it must have (a setting left empty, null, is unset).
SETTINGS_READ = {"routing_strategy": text, "fallbacks": listing, "default_fallbacks": listing,
                 "context_window_fallbacks": listing, "content_policy_fallbacks": listing, "num_retries": number,
                 "timeout": number, "request_timeout": number, "allowed_fails": number, "cooldown_time": number,
                 "model_group_alias": mapping, "enable_tag_filtering": lambda value, where: value}
PARAMS_READ = {"model": text, "api_base": text, "api_key": text, "rpm": number, "tpm": number, "weight": number,
               "timeout": number, "tags": listing}
MAX_RETRIES, MIN_TIMEOUT_MS = 5, 100
ENV = re.compile(r"^os\.environ/(\w+)$")


def env_text(value: Any) -> Any:
    """LiteLLM's `os.environ/VAR` is routelang's `${VAR}`."""
    if isinstance(value, str):
        m = ENV.match(value)
        if m:
            return f"${{{m.group(1)}}}"
    return value


class _Importer:
    def __init__(self, config: dict):
        self.notes: list[ImportNote] = []
        self.limits_noted = False
        self.config = config
        router = config.get("router_settings") or {}
        module = config.get("litellm_settings") or {}
        if not isinstance(router, dict) or not isinstance(module, dict):
            raise ImportProblem("router_settings and litellm_settings are mappings")
        self.settings: dict[str, Any] = {}
        for key, check in SETTINGS_READ.items():
            router_value, module_value = router.get(key), module.get(key)
            if router_value is not None and module_value is not None and router_value != module_value:
                self.note("settings", f"{key} is {router_value!r} in router_settings and {module_value!r} in "
                                      f"litellm_settings; LiteLLM's router uses router_settings'")
            if router_value is not None:
                self.settings[key] = check(router_value, f"router_settings.{key}")
            elif module_value is not None:
                self.settings[key] = check(module_value, f"litellm_settings.{key}")
        for section, values in (("router_settings", router), ("litellm_settings", module)):
            for key in values:
                if key not in SETTINGS_READ:
                    self.note(section, f"`{key}` is not carried over (no routing meaning in routelang)")

    def note(self, where: str, message: str) -> None:
        self.notes.append(ImportNote(where, message))

    def groups(self) -> dict[str, list[dict]]:
        model_list = self.config.get("model_list")
        if not isinstance(model_list, list) or not model_list:
            raise ImportProblem("model_list: a LiteLLM config needs a list of deployments")
        groups: dict[str, list[dict]] = {}
        for i, entry in enumerate(model_list):
            if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str) \
                    or not isinstance(entry.get("litellm_params"), dict) \
                    or not isinstance(entry["litellm_params"].get("model"), str):
                raise ImportProblem(f"model_list[{i}]: needs model_name and litellm_params.model")
            name = entry["model_name"]
            if "*" in name or "*" in entry["litellm_params"]["model"]:
                self.note(f"model_list[{i}]", f"the wildcard deployment {name!r} forwards the client's model "
                                              f"name; routelang targets name their model: left out")
                continue
            groups.setdefault(name, []).append(entry)
        return groups

    def target(self, entry: dict, name: str, where: str) -> Target:
        params = {}
        for key, value in entry["litellm_params"].items():
            if key not in PARAMS_READ:
                self.note(where, f"litellm_params.{key} is not carried over")
            elif value is not None:
                params[key] = PARAMS_READ[key](value, f"{where}: litellm_params.{key}")
        provider, _, model = params["model"].partition("/")
        if not model:
            provider, model = ("anthropic" if params["model"].startswith("claude") else "openai"), params["model"]
        endpoint = env_text(params.get("api_base")) or PROVIDER_HOSTS.get(provider)
        if endpoint is None:
            variable = re.sub(r"[^A-Z0-9]+", "_", provider.upper()).strip("_") + "_API_BASE"
            self.note(where, f"no api_base, and routelang does not know where provider {provider!r} is: written as "
                             f"${{{variable}}}")
            endpoint = f"${{{variable}}}"
        target = Target(name, provider, model, endpoint.rstrip("/") if endpoint.startswith("http") else endpoint)
        key = env_text(params.get("api_key"))
        if isinstance(key, str) and key.lower() != "none":
            header, value = key_header(provider, key)
            target.headers[header] = value
        if ("rpm" in params or "tpm" in params) and not self.limits_noted:
            self.limits_noted = True
            self.note("model_list", "rpm and tpm are rate limits; routelang has no per-target limits "
                                    "(simple-shuffle's weighting by them is carried over)")
        timeout = params.get("timeout", self.settings.get("timeout", self.settings.get("request_timeout")))
        if timeout is not None:
            ms = round(float(timeout) * 1000)
            if ms < MIN_TIMEOUT_MS:
                self.note(where, f"timeout {timeout}s is below routelang's {MIN_TIMEOUT_MS}ms; written as "
                                 f"{MIN_TIMEOUT_MS}ms")
            target.timeout_ms = max(ms, MIN_TIMEOUT_MS)
        retries = self.settings.get("num_retries")
        if retries:
            if retries > MAX_RETRIES:
                self.note(where, f"num_retries {retries} is above routelang's {MAX_RETRIES}; written as "
                                 f"{MAX_RETRIES}")
            target.retries = min(int(retries), MAX_RETRIES)
        if "allowed_fails" in self.settings or "cooldown_time" in self.settings:
            allowed = max(int(self.settings.get("allowed_fails", 3)), 0)     # LiteLLM's defaults: 3 fails, 5 s
            cooldown = float(self.settings.get("cooldown_time", 5))
            target.breaker = {"failures": allowed + 1, "cooldown_ms": max(round(cooldown * 1000), 1000)}
        return target

    def strategy_name(self) -> str:
        return self.settings.get("routing_strategy", "simple-shuffle")

    def group_strategy(self, name: str, deployments: list[dict], targets: list[Target]):
        if len(targets) == 1:
            return targets[0].name
        kind, difference = STRATEGIES.get(self.strategy_name(), (None, None))
        if kind is None:
            raise ImportProblem(f"routing_strategy {self.strategy_name()!r} is not one of "
                                f"{', '.join(STRATEGIES)}")
        if difference:
            self.note(f"model group {name!r}", difference)
        if kind != "split":
            return Strategy(kind, [t.name for t in targets])
        # simple-shuffle: weighted by `weight`, else rpm, else tpm, else uniform, each
        # chosen when the group's first deployment sets it (LiteLLM's simple_shuffle).
        params = [d["litellm_params"] for d in deployments]
        for key in ("weight", "rpm", "tpm"):
            if params[0].get(key) is not None:
                weights = [float(number(p.get(key) or 0, f"model group {name!r}: litellm_params.{key}"))
                           for p in params]
                break
        else:
            weights = [1.0] * len(params)
        total = sum(weights)
        if total <= 0:
            weights, total = [1.0] * len(params), float(len(params))
        kept = [(w / total, t.name) for w, t in zip(weights, targets) if w > 0]
        if len(kept) < len(targets):
            self.note(f"model group {name!r}", "deployments of weight 0 are never picked; left out")
        shares = [w for w, _ in kept]
        shares[-1] = 1.0 - sum(shares[:-1])
        return simplest(Strategy("split", [n for _, n in kept], weights=shares))

    def fallbacks(self, key: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for item in self.settings.get(key) or []:
            for group, to in mapping(item, key).items():
                out[str(group)] = [str(t) for t in (to if isinstance(to, list) else [to])]
        return out

    def aliases(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for alias, group in (self.settings.get("model_group_alias") or {}).items():
            if isinstance(group, dict):  # {"model": "gpt-4o", "hidden": true}
                group = group.get("model")
            out.setdefault(str(group), []).append(alias)
        return out


def looks_like(config: Any) -> bool:
    return isinstance(config, dict) and isinstance(config.get("model_list"), list)


def import_litellm(config: Any, source_name: str) -> tuple[str, list[ImportNote]]:
    """The `.route` text for a LiteLLM proxy config, and what it could not say."""
    if not looks_like(config):
        raise ImportProblem("a LiteLLM config is a mapping with a model_list")
    imp = _Importer(config)
    groups = imp.groups()
    taken: set[str] = set()
    targets: list[Target] = []
    members: dict[str, Any] = {}
    for name, deployments in groups.items():
        # A group's deployments are NAME_1, NAME_2, ...; a group of one is NAME.
        group_targets = [imp.target(d, unique_name(name if len(deployments) == 1 else f"{name}_{k + 1}", taken),
                                    f"model group {name!r}") for k, d in enumerate(deployments)]
        targets.extend(group_targets)
        members[name] = imp.group_strategy(name, deployments, group_targets)
        if any("tags" in d["litellm_params"] for d in deployments):
            imp.note(f"model group {name!r}", "deployment tags are not carried over: tag filtering picks "
                                              "deployments by the request's tags, which routelang rules do not "
                                              "see as a set")
    if imp.settings.get("enable_tag_filtering"):
        imp.note("settings", "enable_tag_filtering: requests are not filtered by tags (see the tags notes)")
    fallbacks = imp.fallbacks("fallbacks")
    defaults = imp.settings.get("default_fallbacks") or []
    for key in ("context_window_fallbacks", "content_policy_fallbacks"):
        for group, to in imp.fallbacks(key).items():
            imp.note(f"model group {group!r}", f"{key} {to} apply to one kind of error only; routelang falls "
                                               f"back on any failure, so they are not carried over")
    for group in fallbacks:
        if group not in groups:
            imp.note("fallbacks", f"fallbacks name the model group {group!r}, which has no deployment")
    aliases = imp.aliases()
    for group in aliases:
        if group not in groups:
            imp.note("model_group_alias", f"an alias names the model group {group!r}, which has no deployment")
    rules = []
    names: set[str] = set()
    for i, (name, member) in enumerate(members.items()):
        chain = [member]
        for to in fallbacks.get(name, defaults if name not in defaults else []):
            if to in members and to != name:
                chain.append(members[to])
            elif to not in members:
                imp.note(f"model group {name!r}", f"falls back to {to!r}, which has no deployment: left out")
        strategy = Strategy("fallback", chain) if len(chain) > 1 else as_strategy(member)
        requested = [name] + aliases.get(name, [])
        when: Cond = compare(["model"], "==", name) if len(requested) == 1 else compare(["model"], "in", requested)
        rules.append(Rule(unique_name(name, names), 10 * (len(members) - i), strategy, when,
                          f"model group {name}"))
    if imp.settings.get("num_retries"):
        imp.note("settings", "num_retries: LiteLLM retries the model group (any deployment); routelang retries "
                             "the same target, then moves on")
    if "allowed_fails" in imp.settings or "cooldown_time" in imp.settings:
        imp.note("settings", "allowed_fails counts failures per minute; routelang's circuit_breaker counts "
                             "failures in a row")
    text = write_file("litellm", "Imported from a LiteLLM proxy config", source_name, imp.notes, targets, rules,
                      "LiteLLM")
    return text, imp.notes
