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

from . import operators
from .model import RuleSpec, Target

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


def pick_sticky(targets: tuple[Target, ...] | list[Target], u: float) -> Target:
    """The first target whose cumulative weight exceeds u * total."""
    total = sum(t.weight for t in targets)
    if total <= 0:
        return targets[0]
    point = u * total
    cumulative = 0.0
    for target in targets:
        cumulative += target.weight
        if point < cumulative:
            return target
    return targets[-1]


def pick_random(targets: tuple[Target, ...] | list[Target]) -> Target:
    """Mixtrain's SplitStrategy exactly: `random.random() * total` against
    cumulative weights, `<=`, on the global `random` generator."""
    cumulative = []
    total = 0.0
    for target in targets:
        total += target.weight
        cumulative.append(total)
    if total <= 0:
        return targets[0]
    point = random.random() * total
    for target, cum in zip(targets, cumulative):
        if point <= cum:
            return target
    return targets[-1]


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

    def record(self, ok: bool) -> None:
        with self._lock:
            state = self._current()
            if ok:
                self._failures = 0
                if state == HALF_OPEN:
                    self._successes += 1
                    self._probe_at = None
                    if self._successes >= self.success_threshold:
                        self._state = CLOSED
                return
            self._failures += 1
            if state == HALF_OPEN or self._failures >= self.failure_threshold:
                self._state, self._opened_at, self._probe_at = OPEN, self._clock(), None


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
            stats = self._stats.setdefault(key, TargetStats())
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


def rank(rule: RuleSpec, targets: list[Target], metrics: Metrics) -> list[Target]:
    """least_latency, lowest_cost and hybrid: every available target, best first
    (the rest are the fallback chain); ties keep written order."""
    if rule.strategy == "lowest_cost":
        # Targets without a cost come after those with one, in written order.
        return sorted(targets, key=lambda t: (t.cost_per_1k_tokens is None, t.cost_per_1k_tokens or 0.0))
    stats = [metrics.get(t.key) for t in targets]
    if rule.strategy == "least_latency":
        # Cold start: unmeasured targets come first, so each gets measured.
        order = sorted(range(len(targets)), key=lambda i: (stats[i].latency_ms is not None,
                                                           stats[i].latency_ms or 0.0))
    else:
        scores = hybrid_scores(rule, targets, stats)
        order = sorted(range(len(targets)), key=lambda i: -scores[i])
    return [targets[i] for i in order]


def hybrid_scores(rule: RuleSpec, targets: list[Target], stats: list[TargetStats]) -> list[float]:
    """cost_weight * cost score + latency_weight * latency score + reliability_weight
    * reliability, each score in [0, 1] with 1 the best (see docs/semantics.md)."""
    cost = _inverse_score([t.cost_per_1k_tokens for t in targets], unknown=0.5)
    latency = _inverse_score([s.latency_ms for s in stats], unknown=1.0)
    return [rule.cost_weight * c + rule.latency_weight * lat + rule.reliability_weight * s.reliability
            for c, lat, s in zip(cost, latency, stats)]


# ---- selection ----------------------------------------------------------------------

class Selector:
    """Selects the targets of one rule; holds its round-robin counter."""

    def __init__(self, rule: RuleSpec, breakers: dict[tuple, CircuitBreaker], metrics: Metrics):
        self.rule = rule
        self.metrics = metrics
        self.breakers = [breakers.get(t.key) for t in rule.targets]
        self._breaker_of = {t.key: b for t, b in zip(rule.targets, self.breakers) if b is not None}
        self.guarded = bool(self._breaker_of)
        self._counter = 0
        self._lock = threading.Lock()
        # Targets that never change, computed once (no breakers, a deterministic strategy).
        self.static: tuple[Target, ...] | None = None
        if not self.guarded:
            if rule.strategy == "shadow":
                self.static = (rule.targets[0], replace(rule.targets[1], is_shadow=True))
            elif rule.strategy == "single":
                self.static = (rule.targets[0],)
            elif rule.strategy == "fallback":
                self.static = rule.targets

    def select(self, request: dict) -> list[Target]:
        if self.static is not None:
            return list(self.static)
        chosen = self._choose(request, self._available())
        for target in chosen:
            breaker = self._breaker_of.get(target.key)
            if breaker is not None:
                breaker.dispatched()
        return chosen

    def _available(self) -> list[Target]:
        if not self.guarded:
            return list(self.rule.targets)
        return [t for t, b in zip(self.rule.targets, self.breakers) if b is None or b.admits()]

    def _choose(self, request: dict, targets: list[Target]) -> list[Target]:
        rule = self.rule
        kind = rule.strategy
        if not targets:
            return []
        if kind == "single":
            return [targets[0]] if targets[0] is rule.targets[0] else []
        if kind == "shadow":
            return _shadow(rule, targets)
        if kind == "fallback":
            return targets
        if kind == "split":
            if rule.sticky_by is not None:
                key = sticky_key(operators.lookup(request, rule.sticky_by))
                if key is not None:
                    return [pick_sticky(targets, sticky_point(rule.salt, key))]
            return [pick_random(targets)]
        if kind == "round_robin":
            with self._lock:
                turn = self._counter
                self._counter += 1
            return [targets[turn % len(targets)]]
        return rank(rule, targets, self.metrics)


def _shadow(rule: RuleSpec, available: list[Target]) -> list[Target]:
    primary, shadow = rule.targets
    if not any(t is primary for t in available):
        return []  # the shadow never serves in the primary's place
    out = [primary]
    if any(t is shadow for t in available):
        out.append(replace(shadow, is_shadow=True))
    return out
