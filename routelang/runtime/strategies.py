"""Target selection: every strategy, circuit breakers and live metrics.

Selection is shared by both executors (interpreted JSON and generated
Python): they differ only in how they find the rule. docs/semantics.md
states each strategy; docs/runtime.md the metrics and breaker interface.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..vocab import strategies
from . import operators
from .model import RuleSpec, StrategySpec, Target

# ---- the published sticky hash -----------------------------------------------------

HASH_DIGITS = 15  # hex digits of SHA-1 used: 60 bits, exact in a double


def sticky_key(value: Any) -> str | None:
    """The text a sticky value is hashed as: strings as they are, anything
    else as compact JSON (`json.dumps(v, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`). None (missing or null) and values JSON cannot
    write have no key: the request falls back to the random split."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return None


def sticky_point(salt: str, key: str) -> float:
    """u in [0, 1): the first 15 hex digits of SHA-1("{salt}:{key}" as UTF-8), over 16**15."""
    digest = hashlib.sha1(f"{salt}:{key}".encode("utf-8", "surrogatepass")).hexdigest()
    return int(digest[:HASH_DIGITS], 16) / 16**HASH_DIGITS


def pick_sticky(weights: tuple[float, ...] | list[float], u: float) -> int:
    """The position of the first member whose cumulative weight exceeds u * total."""
    total = sum(weights)
    if total <= 0:
        return 0
    point = u * total
    cumulative = 0.0
    for position, weight in enumerate(weights):
        cumulative += weight
        if point < cumulative:
            return position
    return len(weights) - 1


def pick_random(weights: tuple[float, ...] | list[float]) -> int:
    """Mixtrain's SplitStrategy exactly: `random.random() * total` against
    cumulative weights, `<=`, on the global `random` generator. The position
    of the member picked."""
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    if total <= 0:
        return 0
    point = random.random() * total
    for position, cum in enumerate(cumulative):
        if point <= cum:
            return position
    return len(weights) - 1


# ---- circuit breakers ---------------------------------------------------------------

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """As the llm-edge-routing crate: `failure_threshold` consecutive failures
    open the breaker for `cooldown_ms`; then one request may probe (half-open);
    `success_threshold` successes close it, a failure opens it again. A probe
    whose outcome is never reported is given up after another cooldown."""

    def __init__(self, failure_threshold: int = 5, cooldown_ms: int = 30_000, success_threshold: int = 1,
                 clock: Callable[[], float] = time.monotonic):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_ms / 1000
        self.success_threshold = success_threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._probe_at: float | None = None

    @property
    def state(self) -> str:
        with self._lock:
            return self._current()

    @property
    def closed(self) -> bool:
        """Closed now? Read without the lock: a closed breaker changes only when an outcome is
        recorded, and a read just before that is as valid as one under the lock."""
        return self._state == CLOSED

    def _current(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            self._state, self._successes, self._probe_at = HALF_OPEN, 0, None
        return self._state

    def admits(self) -> bool:
        """May a request go to this target now? (Closed, or half-open with no probe out.)"""
        with self._lock:
            state = self._current()
            if state == HALF_OPEN:
                return self._probe_at is None or self._clock() - self._probe_at >= self.cooldown_s
            return state == CLOSED

    def dispatched(self) -> None:
        """A selection sent a request here: in half-open state that request is the probe."""
        with self._lock:
            if self._current() == HALF_OPEN:
                self._probe_at = self._clock()

    def record(self, ok: bool) -> str:
        """One outcome; the state after it."""
        with self._lock:
            state = self._current()
            if ok:
                self._failures = 0
                if state == HALF_OPEN:
                    self._successes += 1
                    self._probe_at = None
                    if self._successes >= self.success_threshold:
                        self._state = CLOSED
                return self._state
            self._failures += 1
            if state == HALF_OPEN or self._failures >= self.failure_threshold:
                self._state, self._opened_at, self._probe_at = OPEN, self._clock(), None
            return self._state


# ---- metrics ------------------------------------------------------------------------

LATENCY_SMOOTHING = 0.3  # weight of the newest sample in the latency average


@dataclass
class TargetStats:
    requests: int = 0
    failures: int = 0
    latency_ms: float | None = None   # exponentially weighted moving average; None: never measured
    tokens: int = 0

    @property
    def reliability(self) -> float:
        """Share of successful requests; 1.0 before any is observed."""
        return 1.0 if self.requests == 0 else (self.requests - self.failures) / self.requests


class Metrics:
    """Per-target statistics fed by `Router.observe`; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stats: dict[tuple, TargetStats] = {}

    def observe(self, key: tuple, latency_ms: float | None, ok: bool, tokens: int | None) -> None:
        with self._lock:
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = TargetStats()
            stats.requests += 1
            stats.failures += 0 if ok else 1
            if tokens:
                stats.tokens += tokens
            if latency_ms is not None:
                stats.latency_ms = latency_ms if stats.latency_ms is None else (
                    LATENCY_SMOOTHING * latency_ms + (1 - LATENCY_SMOOTHING) * stats.latency_ms)

    def get(self, key: tuple) -> TargetStats:
        with self._lock:
            stats = self._stats.get(key)
            return replace(stats) if stats is not None else TargetStats()


# ---- ranking strategies -------------------------------------------------------------

def _inverse_score(values: list[float | None], unknown: float) -> list[float]:
    """Lower is better: (best value) / value, so 1.0 for the best and for zero;
    `unknown` where there is no value."""
    best = min((v for v in values if v is not None and v > 0), default=None)
    return [unknown if v is None else 1.0 if v <= 0 or best is None else best / v for v in values]


def _by_cost(node: StrategySpec, targets: list[Target], metrics: Metrics) -> list[Target]:
    # Targets without a cost come after those with one, in written order.
    return sorted(targets, key=lambda t: (t.cost_per_1k_tokens is None, t.cost_per_1k_tokens or 0.0))


def _by_latency(node: StrategySpec, targets: list[Target], metrics: Metrics) -> list[Target]:
    # Cold start: unmeasured targets come first, so each gets measured.
    stats = [metrics.get(t.key) for t in targets]
    order = sorted(range(len(targets)), key=lambda i: (stats[i].latency_ms is not None, stats[i].latency_ms or 0.0))
    return [targets[i] for i in order]


def _by_score(node: StrategySpec, targets: list[Target], metrics: Metrics) -> list[Target]:
    scores = hybrid_scores(node, targets, [metrics.get(t.key) for t in targets])
    order = sorted(range(len(targets)), key=lambda i: -scores[i])
    return [targets[i] for i in order]


def hybrid_scores(node: StrategySpec, targets: list[Target], stats: list[TargetStats]) -> list[float]:
    """cost_weight * cost score + latency_weight * latency score + reliability_weight
    * reliability, each score in [0, 1] with 1 the best (see docs/semantics.md)."""
    cost_weight, latency_weight, reliability_weight = node.score_weights
    cost = _inverse_score([t.cost_per_1k_tokens for t in targets], unknown=0.5)
    latency = _inverse_score([s.latency_ms for s in stats], unknown=1.0)
    return [cost_weight * c + latency_weight * lat + reliability_weight * s.reliability
            for c, lat, s in zip(cost, latency, stats)]


# ranked selectors: every available target, best first (the rest are the fallback
# chain); ties keep written order.
RANKINGS = {"rank_by_cost": _by_cost, "rank_by_latency": _by_latency, "rank_by_score": _by_score}


# ---- selection ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Selection:
    """What one routing decision asks the caller to do: try `attempts` in
    order until one succeeds, and mirror the request to each of `shadows`
    (copies with `is_shadow=True`, whose responses are discarded).
    `targets` is both, Mixtrain's `selected_targets`."""

    attempts: tuple[Target, ...]
    shadows: tuple[Target, ...] = ()

    @property
    def targets(self) -> list[Target]:
        return [*self.attempts, *self.shadows]


NOTHING = Selection(())


class Turns:
    """Round-robin turn counters, in this process: `take_turn(key)` is 0, 1, 2, ... for
    each key (a round-robin node: its rule's name and its position in the rule's
    strategy tree). A Router's `turns` may be replaced by any object with this method
    (the gateway keeps them in its shared state)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: dict[tuple, int] = {}

    def take_turn(self, key: tuple) -> int:
        with self._lock:
            turn = self._taken.get(key, 0)
            self._taken[key] = turn + 1
            return turn


class Selector:
    """Selects the targets of one rule, through its strategy tree (nested
    strategies select recursively); round-robin turns come from `take_turn`."""

    def __init__(self, rule: RuleSpec, breakers: dict[tuple, CircuitBreaker], metrics: Metrics,
                 take_turn: Callable[[tuple], int]):
        self.rule = rule
        self.metrics = metrics
        self._breaker_of = {t.key: breakers[t.key] for t in rule.targets if t.key in breakers}
        self.guarded = bool(self._breaker_of)
        self._guards = [(id(t), self._breaker_of.get(t.key)) for t in rule.targets]
        self._take_turn = take_turn
        # id(round-robin node) -> its turn key: (rule name, position in the strategy tree)
        self._turn_keys = {id(n): (rule.name, i) for i, n in enumerate(rule.selection.walk())}
        # The selection when it never changes (no breakers, only static strategies): built once.
        self.static: Selection | None = None
        # With breakers (only static strategies): the selection while every breaker is closed,
        # when admitting and dispatching change nothing (saves ~3 us per request, measured).
        self._when_closed: Selection | None = None
        self._breakers = tuple(self._breaker_of.values())
        if all(strategies.strategy(n.kind).static for n in rule.selection.walk()):
            if self.guarded:
                self._when_closed = self._select(rule.selection, {}, None)
            else:
                self.static = self._select(rule.selection, {}, None)

    def select(self, request: dict) -> Selection:
        if self.static is not None:
            return self.static
        if self._when_closed is not None and all(breaker.closed for breaker in self._breakers):
            return self._when_closed
        available = None
        if self.guarded:
            available = {i for i, breaker in self._guards if breaker is None or breaker.admits()}
        chosen = self._select(self.rule.selection, request, available)
        for target in (*chosen.attempts, *chosen.shadows):
            breaker = self._breaker_of.get(target.key)
            if breaker is not None:
                breaker.dispatched()
        return chosen

    # `available`: ids of the targets whose breaker admits a request now; None: all of them.
    def _select(self, node: StrategySpec, request: dict, available: set[int] | None) -> Selection:
        selector = strategies.strategy(node.kind).selector
        if selector == "first":
            primary = node.members[0]
            return Selection((primary,)) if _open(primary, available) else NOTHING
        if selector == "primary_shadow":
            primary, shadow = node.members
            if not _open(primary, available):
                return NOTHING  # the shadow never serves in the primary's place
            return Selection((primary,), (replace(shadow, is_shadow=True),) if _open(shadow, available) else ())
        if selector == "in_order":
            attempts: list[Target] = []
            shadows: list[Target] = []
            for member in node.members:
                if isinstance(member, StrategySpec):
                    inner = self._select(member, request, available)
                    attempts.extend(inner.attempts)
                    shadows.extend(inner.shadows)
                elif _open(member, available):
                    attempts.append(member)
            return Selection(tuple(attempts), tuple(shadows))
        if selector == "weighted_pick":
            # `no failover`: the pick is among every arm, and an arm that cannot serve now selects
            # nothing rather than hand its request to another arm.
            usable = [i for i, m in enumerate(node.members)
                      if not node.failover or self._can_serve(m, available)]
            if not usable:
                return NOTHING
            weights = [node.weights[i] for i in usable]
            position = None
            if node.sticky_by is not None:
                key = sticky_key(operators.lookup(request, node.sticky_by))
                if key is not None:
                    position = pick_sticky(weights, sticky_point(node.salt, key))
            member = node.members[usable[pick_random(weights) if position is None else position]]
            if not node.failover and not self._can_serve(member, available):
                return NOTHING
            if isinstance(member, StrategySpec):
                return self._select(member, request, available)
            return Selection((member,))
        targets = [t for t in node.members if _open(t, available)]
        if not targets:
            return NOTHING
        if selector == "rotate":
            turn = self._take_turn(self._turn_keys[id(node)])
            return Selection((targets[turn % len(targets)],))
        return Selection(tuple(RANKINGS[selector](node, targets, self.metrics)))

    def _can_serve(self, member: Target | StrategySpec, available: set[int] | None) -> bool:
        """Would `member` select anything now? (A nested single or shadow needs its
        primary; any other strategy one of its members.)"""
        if not isinstance(member, StrategySpec):
            return _open(member, available)
        if strategies.strategy(member.kind).selector in ("first", "primary_shadow"):
            return _open(member.members[0], available)
        return any(self._can_serve(m, available) for m in member.members)


def _open(target: Target, available: set[int] | None) -> bool:
    return available is None or id(target) in available
