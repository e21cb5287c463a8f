"""IR -> LiteLLM proxy config.yaml: `routelang compile FILE --target litellm`.

LiteLLM decides by one thing, the request's `model`: it names a model group,
the deployments sharing a `model_name`. So each enabled rule, in evaluation
order, becomes a model group named after the model its condition asks for
(`model == "x"`, `model in ["x", "y"]`, also `request.model`; the other names
are `model_group_alias`es); a rule with any other condition, or none, is a
group named after the rule, with an RL911 warning and a request routelang
routes by the rule that LiteLLM does not. The rule's strategy gives the
group's deployments: a target is one, a `split` weights them
(`litellm_params.weight`, simple-shuffle), a `fallback` keeps its first step
in the group and puts each later step in a group `NAME-fallback-K` listed in
`router_settings.fallbacks`. `least_latency` and `lowest_cost` set the one,
router-wide `routing_strategy`; what LiteLLM cannot state (a sticky split,
round-robin, hybrid, nesting below a fallback's steps, two rules asking for
different routing strategies) is lowered to the closest form with RL911.
Settings LiteLLM keeps router-wide (`num_retries`, `allowed_fails`,
`cooldown_time`) take the largest value the targets give, with an RL910 note
where targets differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .. import ir
from ..diagnostics import PEER_APPROXIMATION, Diagnostic
from .peer import find_witness, inexact_warning, requests_matching, rule_text, with_field

MODEL_FIELDS = ("model", "request.model")
ROUTING_STRATEGIES = {"least_latency": "latency-based-routing", "lowest_cost": "cost-based-routing"}
ENV_ONLY = re.compile(r"^\$\{(\w+)\}$")


def _env(value: str) -> str:
    """routelang's `${VAR}` is LiteLLM's `os.environ/VAR` (when it is the whole value)."""
    m = ENV_ONLY.match(value)
    return f"os.environ/{m.group(1)}" if m else value


def _asked_models(cond) -> list[str] | None:
    """The model names a condition asks for, when it is exactly "the request's model is one of these"."""
    if isinstance(cond, ir.Compare) and cond.field in MODEL_FIELDS:
        if cond.operator == "equals" and isinstance(cond.value, str):
            return [cond.value]
        if cond.operator == "in" and isinstance(cond.value, list) and all(isinstance(v, str) for v in cond.value):
            return list(cond.value)
    if isinstance(cond, ir.AnyOf):
        names = [_asked_models(c) for c in cond.items]
        if all(n is not None for n in names):
            return [m for n in names for m in n]
    return None


class _Lowering:
    def __init__(self):
        self.notes: list[Diagnostic] = []
        self.model_list: list[dict] = []
        self.fallbacks: list[dict] = []
        self.routing_strategy: tuple[str, str] | None = None   # (strategy, the rule that asked for it)
        self.retries: set[int] = set()
        self.breakers: set[tuple[int, int]] = set()

    def note(self, rule: ir.Rule, message: str) -> None:
        self.notes.append(Diagnostic(PEER_APPROXIMATION, f"rule `{rule.name}`: {message}", rule.span,
                                     rule=rule.name))

    def deployment(self, group: str, t: ir.Target, rule: ir.Rule, weight: float | None = None) -> None:
        params: dict[str, Any] = {"model": f"{t.provider}/{t.model_name}", "api_base": _env(t.endpoint)}
        for header, value in (t.headers or {}).items():
            if header.lower() == "authorization" and value.startswith("Bearer "):
                params["api_key"] = _env(value[len("Bearer "):])
            elif header.lower() in ("x-api-key", "api-key"):
                params["api_key"] = _env(value)
            else:
                params.setdefault("extra_headers", {})[header] = value
        if t.timeout_ms:
            params["timeout"] = t.timeout_ms / 1000
        if weight is not None:
            params["weight"] = weight
        self.retries.add(t.retry_count or 0)
        if t.circuit_breaker is not None:
            self.breakers.add((t.circuit_breaker.failure_threshold, t.circuit_breaker.cooldown_ms))
        for setting, what in (("health_check", "health check"), ("cost_per_1k_tokens", "cost")):
            if getattr(t, setting) is not None:
                self.note(rule, f"target `{t.name or t.model_name}`: the {what} has no place in a LiteLLM "
                                f"deployment; left out")
        self.model_list.append({"model_name": group, "litellm_params": params})

    def group(self, group: str, s, rule: ir.Rule, problems: list[str], top: bool = True) -> None:
        """The deployments of `group` for strategy `s` (a target, or a strategy)."""
        if isinstance(s, ir.Target):
            self.deployment(group, s, rule)
        elif isinstance(s, ir.Single):
            self.deployment(group, s.target, rule)
        elif isinstance(s, ir.Shadow):
            self.note(rule, "LiteLLM does not mirror requests: the shadow target is left out")
            self.deployment(group, s.primary, rule)
        elif isinstance(s, ir.Split):
            if s.sticky_by is not None:
                problems.append(f"the split is sticky by `{s.sticky_by}`; LiteLLM's simple-shuffle draws anew "
                                f"for every request")
            self.ask(rule, "simple-shuffle", problems)
            for arm in s.arms:
                if isinstance(arm, ir.NestedArm):
                    problems.append("a split arm that is a strategy cannot be a LiteLLM deployment; its "
                                    "targets share the arm's weight")
                    targets = arm.strategy.targets
                    for t in targets:
                        self.deployment(group, t, rule, arm.weight / len(targets))
                else:
                    self.deployment(group, arm, rule, arm.weight)
        elif isinstance(s, ir.Fallback):
            if not top:
                problems.append("a fallback inside a fallback step or split arm is flattened")
                for t in s.targets:
                    self.deployment(group, t, rule)
                return
            first, *rest = s.candidates
            self.group(group, first, rule, problems, top=False)
            names = []
            for k, step in enumerate(rest, 1):
                name = f"{group}-fallback-{k}"
                self.group(name, step, rule, problems, top=False)
                names.append(name)
            self.fallbacks.append({group: names})
        else:
            wanted = ROUTING_STRATEGIES.get(s.kind)
            if wanted is None:
                problems.append(f"LiteLLM has no `{s.kind}`; written as simple-shuffle with equal weights, which "
                                f"picks at random instead")
                wanted = "simple-shuffle"
            self.ask(rule, wanted, problems)
            for t in s.candidates:
                self.deployment(group, t, rule)

    def ask(self, rule: ir.Rule, strategy: str, problems: list[str]) -> None:
        """routing_strategy is router-wide: the first rule to need one sets it."""
        if self.routing_strategy is None:
            self.routing_strategy = (strategy, rule.name)
        elif self.routing_strategy[0] != strategy:
            problems.append(f"LiteLLM has one routing_strategy for every group: `{self.routing_strategy[0]}` "
                            f"(for rule `{self.routing_strategy[1]}`), not `{strategy}`")


def lower(router: ir.Router, exact: bool = False) -> tuple[dict, list[Diagnostic]]:
    """The LiteLLM proxy config for `router`, and notes on what LiteLLM does
    differently; with `exact` (`compile --target litellm --exact`) the RL911
    warnings are errors."""
    low = _Lowering()
    aliases: dict[str, str] = {}
    groups: dict[str, str] = {}           # model name a client asks for -> the rule it reaches
    inexact: list[tuple[ir.Rule, list[str], bool]] = []   # (rule, problems, not a model group)
    for rule in router.evaluation_order():
        problems: list[str] = []
        asked = _asked_models(rule.when) if rule.when is not None else None
        not_a_group = asked is None
        if not_a_group:
            asked = [rule.name]
            what = "no condition" if rule.when is None else "a condition on more than the request's model"
            problems.append(f"LiteLLM picks a model group by the request's `model` only; this rule has {what}, "
                            f"so it is the group `{rule.name}`")
        asked = [m for m in asked if m not in groups]
        if not asked:
            low.note(rule, "every model it asks for is taken by an earlier rule; left out")
            continue
        name, *others = asked
        for m in asked:
            groups[m] = rule.name
        aliases.update({alias: name for alias in others})
        low.group(name, rule.strategy, rule, problems)
        if problems:
            inexact.append((rule, problems, not_a_group))
    settings: dict[str, Any] = {"routing_strategy": low.routing_strategy[0] if low.routing_strategy
                                else "simple-shuffle"}
    if aliases:
        settings["model_group_alias"] = aliases
    if low.fallbacks:
        settings["fallbacks"] = low.fallbacks
    if max(low.retries, default=0):
        settings["num_retries"] = max(low.retries)
        if len(low.retries) > 1:
            low.notes.append(Diagnostic(PEER_APPROXIMATION, f"targets retry {sorted(low.retries)} times; LiteLLM "
                                        f"has one num_retries: {max(low.retries)}", router.span))
    if low.breakers:
        failures, cooldown_ms = max(low.breakers)
        settings["allowed_fails"] = failures - 1
        settings["cooldown_time"] = cooldown_ms / 1000
        low.notes.append(Diagnostic(PEER_APPROXIMATION, "LiteLLM cools a deployment down after more than "
                                    "allowed_fails failures in a minute, for every deployment alike; routelang's "
                                    "circuit breakers count failures in a row, per target", router.span))
    config = {"model_list": low.model_list, "router_settings": settings}
    return config, low.notes + _inexact_warnings(router, groups, inexact, exact)


def litellm_choice(groups: dict[str, str]) -> Callable[[dict], str | None]:
    """request -> the rule whose group LiteLLM sends it to (by the request's `model`)."""
    def choice(request: dict) -> str | None:
        model = request.get("model")
        if model is None and isinstance(request.get("request"), dict):  # the gateway sets both alike
            model = request["request"].get("model")
        return groups.get(model) if isinstance(model, str) else None

    return choice


def _inexact_warnings(router: ir.Router, groups: dict[str, str], inexact: list, exact: bool) -> list[Diagnostic]:
    order = router.evaluation_order()
    out = []
    for rule, problems, not_a_group in inexact:
        message = f"rule `{rule.name}`: " + "; ".join(problems)
        witness = found = None
        if not_a_group:  # LiteLLM sends some requests elsewhere: show one
            bases = requests_matching(order, rule) + [{}]
            found = find_witness(router, rule, bases + [with_field(b, "model", rule.name) for b in bases],
                                 litellm_choice(groups))
        if found is not None:
            witness, ours, theirs = found
            where = f"the group of {rule_text(theirs)}" if theirs is not None else "no model group"
            message += f"; a request routelang routes by {rule_text(ours)} goes to {where} in LiteLLM"
        out.append(inexact_warning("LiteLLM", rule, message, witness, exact))
    return out
