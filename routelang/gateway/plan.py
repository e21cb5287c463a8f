"""The gateway's one door into the compiler and the runtime.

Everything the gateway needs from them goes through here: loading a file
into a `Loaded` config (`load`), turning the runtime's routing decision into
the ordered attempts, the shadow copies and the reason (`decide`) and
feeding outcomes back (`observe`). When the runtime's strategy model changes (nested
strategies), this module is the one to adapt.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

import routelang
from routelang.runtime import operators, strategies
from routelang.runtime.model import RuleSpec, StrategySpec, Target
from routelang.vocab import strategies as vocab

if TYPE_CHECKING:
    from routelang.compiler import CompileResult


class Availability(Protocol):
    """What a decision reads of the targets' state (state.State provides it; plan does not
    depend on state.py, which is built on `Loaded`)."""

    def healthy(self, key: tuple) -> bool: ...

    def drained(self, key: tuple) -> bool: ...

    def any_unhealthy(self) -> bool: ...

    def admits(self, target: Target) -> bool: ...


EXT = "x-routelang"
# Selectors (vocab/strategies.py) that pick one target, which the gateway backs with the rule's others.
PICKS_ONE = ("weighted_pick", "rotate")


class LoadError(Exception):
    """A file that cannot be served; the message is the rendered diagnostics."""


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str
    interval_s: float
    timeout_s: float


@dataclass
class Loaded:
    """One loaded version of a router: of the config file (`version` counts its
    reloads) or of a registry router (`version` is the registry's number)."""

    path: str                                  # the file, or `REGISTRY#NAME@VERSION`
    router: routelang.LoadedRouter
    sha256: str
    targets: dict[tuple, Target]              # every distinct target (by runtime key), in file order
    health_checks: dict[tuple, HealthCheck]
    models: list[str]                          # the model names a client may ask for (GET /v1/models)
    version: int = 1
    files: tuple[str, ...] = ()                # what a reload watches: the file and the files it imports
    # id(rule) -> how the gateway backs the rule's one-target pick with its other targets:
    # "split" (written order), "rotate" (rotation order) or None (no backing); see `decide`.
    backing: dict[int, str | None] = field(init=False)
    name: str = field(init=False)              # the router's name (an attribute: read on every State call)

    def __post_init__(self) -> None:
        self.backing = {id(rule): _backing(rule) for rule in self.router.plan.order}
        self.name = self.router.plan.name


def target_name(target: Target) -> str:
    """How logs, metrics and headers call a target: its .route name, else its label, else its model."""
    return target.name or target.label or target.model_name


# ---- loading --------------------------------------------------------------------

def read_config(path: str, env: dict[str, str], compiled: CompileResult | None = None,
                ) -> tuple[dict, bytes, tuple[str, ...]]:
    """The Mixtrain-schema JSON config of a `.route` file (compiled and checked,
    `${VAR}`s filled in from `env`; `compiled`: the file as the caller just compiled it with
    `env`, not compiled again) or of a `.json` file; the bytes of every file it was read from
    (for the version hash) and their paths (the file first, then the files it imports; the
    standard library's modules, named `<std...>`, are not watched)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LoadError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.endswith(".json"):
        try:
            config = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise LoadError(f"{path}: not valid JSON: {exc}") from None
        return config, raw, (path,)
    from routelang.backends.json import lower
    from routelang.compiler import compile_path

    result = compile_path(path, env=env) if compiled is None else compiled
    if not result.ok:
        raise LoadError(result.render())
    config, _notes = lower(result.router)
    entry = os.path.abspath(path)
    imports = {os.path.abspath(s.path): s.text for name, s in result.sources.items()
               if s.path is not None and not name.startswith("<") and os.path.abspath(s.path) != entry}
    hashed = raw + b"".join(f"\0{name}\0{text}".encode() for name, text in sorted(imports.items()))
    return config, hashed, (path, *sorted(imports))


def load(path: str, env: dict[str, str] | None = None, compiled: CompileResult | None = None) -> Loaded:
    """Compile/read, check and load `path`; `${VAR}`s come from `env` (default:
    the process environment); `compiled`: see read_config. Raises LoadError."""
    env = dict(os.environ) if env is None else env
    config, raw, files = read_config(path, env, compiled)
    loaded = from_config(config, path, hashlib.sha256(raw).hexdigest(), env)
    loaded.files = files
    return loaded


def from_config(config: dict, origin: str, sha256: str, env: dict[str, str] | None = None) -> Loaded:
    """Load a Mixtrain-schema config (`${VAR}`s filled in from `env`, default the
    process environment); `origin` names it in messages. Raises LoadError."""
    env = dict(os.environ) if env is None else env
    try:
        router = routelang.load(config, env=env)
    except (routelang.ConfigError, routelang.CompileError) as exc:
        raise LoadError(f"{origin}: {exc}") from None
    targets: dict[tuple, Target] = {}
    for rule in router.rules:
        for t in rule.targets:
            targets.setdefault(t.key, t)
    return Loaded(path=origin, router=router, sha256=sha256, targets=targets,
                  health_checks=_health_checks(config, router), models=_models(router))


def _health_checks(config: dict, router: routelang.LoadedRouter) -> dict[tuple, HealthCheck]:
    """`x-routelang.health_check` of each target (the runtime's model does not
    carry it), keyed by the loaded target: the config's rules, less the extra
    ones an `or` expanded into, are the router's rules in file order."""
    rules = [r for r in config.get("rules") or [] if "part_of" not in (r.get(EXT) or {})]
    out: dict[tuple, HealthCheck] = {}
    for data, rule in zip(rules, router.rules):
        for t, target in zip(data.get("targets") or [], rule.targets):
            hc = (t.get(EXT) or {}).get("health_check")
            if isinstance(hc, dict):
                out[target.key] = HealthCheck(path=str(hc.get("path", "/health")),
                                              interval_s=max(0.05, hc.get("interval_ms", 30_000) / 1000),
                                              timeout_s=max(0.05, hc.get("timeout_ms", 2_000) / 1000))
    return out


def _models(router: routelang.LoadedRouter) -> list[str]:
    """Model names rules test (`model` / `request.model` with == or in), then the targets' model names."""
    names: dict[str, None] = {}
    for rule in router.plan.order:
        for leaf in rule.conditions:
            if leaf["field"] in ("model", "request.model") and leaf["operator"] in ("equals", "in"):
                values = leaf["value"] if isinstance(leaf["value"], list) else [leaf["value"]]
                names.update((v, None) for v in values if isinstance(v, str))
    for rule in router.plan.order:
        names.update((t.model_name, None) for t in rule.targets)
    return list(names)


# ---- deciding -------------------------------------------------------------------

@dataclass(slots=True)
class Decision:
    rule: RuleSpec | None
    attempts: list[Target]              # the targets to try, in order
    shadows: list[Target] = field(default_factory=list)
    reason: str = ""
    retry_after_s: int | None = None    # when the rule matched but every target is unavailable
    # attempts[:picked] the runtime selected, so their breakers already admitted them (and a
    # half-open one took its probe); the executor checks and claims the others when it gets there.
    picked: int = 0

    @property
    def unavailable(self) -> bool:
        return self.rule is not None and not self.attempts

    @property
    def split_label(self) -> str | None:
        """A split's arm the request was assigned to (what A/B reports group by)."""
        if self.rule is None or self.rule.strategy != "split" or not self.attempts:
            return None
        return self.attempts[0].label or self.attempts[0].model_name


def decide(loaded: Loaded, doc: dict, state: Availability) -> Decision:
    """Route `doc`: the runtime picks (breakers applied), then unhealthy targets
    leave selection, and a split or round-robin pick is followed by the rule's
    other available targets (written order for a split, rotation order for
    round-robin) as the failover chain."""
    rule, selection, reason = loaded.router.pick(doc)
    if rule is None:
        return Decision(None, [], reason=reason)
    attempts, shadows = list(selection.attempts), list(selection.shadows)
    backing = loaded.backing[id(rule)]
    picked = len(attempts)
    if state.any_unhealthy():
        healthy = state.healthy
        shadows = [t for t in shadows if healthy(t.key)]
        if attempts and not healthy(attempts[0].key) and backing is not None:
            attempts, picked = _repick(rule, doc, attempts[0], state), 0
        else:
            attempts = [t for t in attempts if healthy(t.key)]
            picked = len(attempts)
    if attempts and backing is not None and len(rule.targets) > 1:
        attempts += _others(rule, attempts[0], state, rotate=backing == "rotate")
    if not attempts:
        if not reason.endswith("open"):   # the runtime's reason already says its breakers are open
            reason += f": no target may be tried ({_why_out(rule, state)})"
        return Decision(rule, [], [], reason, _retry_after(loaded, rule, state))
    return Decision(rule, attempts, shadows, reason, picked=picked)


def _why_out(rule: RuleSpec, state: Availability) -> str:
    """Why each target of the rule is out of selection: a drain by hand is not a failing target."""
    def why(target: Target) -> str:
        if state.drained(target.key):
            return "drained"
        return "health check fails" if not state.healthy(target.key) else "circuit breaker open"
    return "; ".join(f"{target_name(t)}: {why(t)}" for t in rule.targets)


def _backing(rule: RuleSpec) -> str | None:
    """A flat one-target pick (split, round-robin) is backed by the rule's other targets;
    a nested strategy's attempts are already its whole chain, and a `no failover` split
    keeps each request in its arm (an experiment's arms are judged by their own targets)."""
    selector = vocab.strategy(rule.strategy).selector
    if selector not in PICKS_ONE or _nested(rule.selection) or not rule.selection.failover:
        return None
    return "rotate" if selector == "rotate" else "split"


def _nested(node: StrategySpec) -> bool:
    return any(isinstance(m, StrategySpec) for m in node.members)


def _available(rule: RuleSpec, state: Availability) -> list[Target]:
    return [t for t in rule.targets if state.healthy(t.key) and state.admits(t)]


def _repick(rule: RuleSpec, doc: dict, chosen: Target, state: Availability) -> list[Target]:
    """The pick again among healthy, admitted targets: weights renormalised for a
    split (the same sticky point), the next one in rotation for round-robin."""
    candidates = _available(rule, state)
    if not candidates:
        return []
    if vocab.strategy(rule.strategy).selector == "rotate":
        at = rule.targets.index(chosen)
        rotation = rule.targets[at:] + rule.targets[:at]
        return [next(t for t in rotation if any(t is c for c in candidates))]
    weights = [t.weight for t in candidates]
    split = rule.selection
    if split.sticky_by is not None:
        key = strategies.sticky_key(operators.lookup(doc, split.sticky_by))
        if key is not None:
            return [candidates[strategies.pick_sticky(weights, strategies.sticky_point(split.salt, key))]]
    return [candidates[strategies.pick_random(weights)]]


def _others(rule: RuleSpec, chosen: Target, state: Availability, rotate: bool) -> list[Target]:
    targets = list(rule.targets)
    at = next((i for i, t in enumerate(targets) if t.key == chosen.key), 0)
    order = targets[at + 1:] + targets[:at] if rotate else targets[:at] + targets[at + 1:]
    return [t for t in order if t.key != chosen.key and state.healthy(t.key) and state.admits(t)]


def _retry_after(loaded: Loaded, rule: RuleSpec, state: Availability) -> int:
    """Seconds until the first target of `rule` may be available again: the
    earliest end of an open breaker's cooldown, else the shortest health-check
    interval; at least 1."""
    waits = []
    for t in rule.targets:
        breaker = loaded.router.breakers.get(t.key)
        if breaker is not None and breaker.state != "closed":
            waits.append(breaker.cooldown_left_s())
        if not state.healthy(t.key) and t.key in loaded.health_checks:
            waits.append(loaded.health_checks[t.key].interval_s)
    return max(1, math.ceil(min(waits))) if waits else 1


def observe(loaded: Loaded, target: Target, ok: bool, latency_ms: float | None,
            tokens: int | None) -> str | None:
    """Feed one attempt's outcome to the runtime (breakers, latency, reliability);
    the target's breaker state after it (None: no breaker)."""
    return loaded.router.observe(target, latency_ms=latency_ms, ok=ok, tokens=tokens)


def admits(loaded: Loaded, target: Target) -> bool:
    breaker = loaded.router.breakers.get(target.key)
    return breaker is None or breaker.admits()


def claim(loaded: Loaded, target: Target) -> None:
    """A target the runtime did not pick is about to be tried: a half-open breaker's probe."""
    breaker = loaded.router.breakers.get(target.key)
    if breaker is not None:
        breaker.dispatched()


def breaker_state(loaded: Loaded, target: Target) -> str | None:
    return loaded.router.breaker_state(target)


def target_view(loaded: Loaded, target: Target) -> dict[str, Any]:
    stats = loaded.router.stats(target)
    return {"breaker": breaker_state(loaded, target), "requests": stats.requests,
            "failures": stats.failures, "latency_ms": stats.latency_ms, "reliability": stats.reliability,
            "tokens": stats.tokens}


def candidates(loaded: Loaded, rule: RuleSpec, state: Availability) -> list[dict[str, Any]]:
    """For /routing/decide: each target of `rule` with what its strategy ranks it by."""
    stats = [loaded.router.stats(t) for t in rule.targets]
    scored = bool(vocab.strategy(rule.strategy).score_factors) and not _nested(rule.selection)
    scores = strategies.hybrid_scores(rule.selection, list(rule.targets), stats) if scored else None
    out = []
    for i, (t, s) in enumerate(zip(rule.targets, stats)):
        row: dict[str, Any] = {"target": target_name(t), "weight": t.weight, "available":
                               state.healthy(t.key) and admits(loaded, t),
                               "healthy": state.healthy(t.key), "breaker": loaded.router.breaker_state(t),
                               "latency_ms": s.latency_ms, "reliability": s.reliability,
                               "cost_per_1k_tokens": t.cost_per_1k_tokens}
        if scores is not None:
            row["score"] = scores[i]
        out.append(row)
    return out


def why_winner(rule: RuleSpec, rows: list[dict], winner: Target | None) -> str:
    """One sentence on why the first attempt was chosen, for ranked strategies."""
    defn = vocab.strategy(rule.strategy)
    if winner is None or defn.selector not in strategies.RANKINGS:
        return ""
    name = target_name(winner)
    row = next((r for r in rows if r["target"] == name), None)
    if row is None:
        return ""
    if defn.score_factors:
        weights = ", ".join(f"{f} {w}" for f, w in zip(defn.score_factors, rule.selection.score_weights))
        return f"{name} has the highest {defn.keyword} score {row['score']:.4f} ({weights})"
    if defn.selector == "rank_by_latency":
        if row["latency_ms"] is None:
            return f"{name} has not been measured yet (unmeasured targets go first)"
        return f"{name} has the lowest measured latency ({row['latency_ms']:.1f} ms)"
    cost = row["cost_per_1k_tokens"]
    return f"{name} is the cheapest" + ("" if cost is None else f" ({cost} per 1k tokens)")
