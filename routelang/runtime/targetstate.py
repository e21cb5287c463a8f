"""Target state: what routing learns about targets while it serves, behind one
small interface (`TargetState`): each target's circuit breaker, its latency,
reliability and token statistics, and the round-robin turns.

A Router reads and feeds its state through `TargetState` only, so where the
state lives is the caller's choice: `InProcessTargetState` (the default) keeps
it in this process; the gateway's Redis state (routelang.gateway.redisstate)
shares it between processes. State is keyed by what it is about, not by the
Router: a breaker by its target's key and its settings, statistics by the
target's key, turns by (rule name, position of the round-robin node). A new
version of a router given the same TargetState carries on where the old one
left off; a breaker whose settings changed starts closed.

Reads (`Breaker.closed`, `admits`, `stats`) are synchronous and local: the
request path never waits on I/O for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

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

    def cooldown_left_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        with self._lock:
            if self._current() != OPEN:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

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


# ---- statistics ---------------------------------------------------------------------

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


def smoothed(previous: float | None, latency_ms: float) -> float:
    """The latency average after one more sample."""
    return latency_ms if previous is None else LATENCY_SMOOTHING * latency_ms + (1 - LATENCY_SMOOTHING) * previous


class Metrics:
    """Per-target statistics; thread-safe."""

    def __init__(self) -> None:
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
                stats.latency_ms = smoothed(stats.latency_ms, latency_ms)

    def get(self, key: tuple) -> TargetStats:
        with self._lock:
            stats = self._stats.get(key)
            return replace(stats) if stats is not None else TargetStats()

    def put(self, key: tuple, stats: TargetStats) -> None:
        """Replace a target's statistics (with what a shared store holds)."""
        with self._lock:
            self._stats[key] = stats


# ---- the interface ------------------------------------------------------------------

def breaker_settings(circuit_breaker: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A target's `circuit_breaker` settings as a hashable key (part of the breaker's identity)."""
    return tuple(sorted(circuit_breaker.items()))


class Breaker(Protocol):
    """What selection asks of a target's breaker; CircuitBreaker is the model."""

    @property
    def closed(self) -> bool: ...

    @property
    def state(self) -> str: ...

    def admits(self) -> bool: ...

    def dispatched(self) -> None: ...

    def record(self, ok: bool) -> str: ...

    def cooldown_left_s(self) -> float: ...


class TargetState(Protocol):
    def breaker(self, key: tuple, settings: dict[str, Any]) -> Breaker:
        """The breaker of target `key` with these `circuit_breaker` settings (the same object
        for the same key and settings, whichever Router asks)."""

    def observe(self, key: tuple, latency_ms: float | None, ok: bool, tokens: int | None) -> None:
        """One outcome for the statistics (the breaker is fed by Breaker.record)."""

    def stats(self, key: tuple) -> TargetStats:
        """The target's statistics now (a copy)."""

    def take_turn(self, key: tuple) -> int:
        """The next turn (0, 1, 2, ...) of a round-robin node, `key` (rule name, position of the
        node in the rule's strategy tree)."""


class InProcessTargetState:
    """Target state in this process (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.metrics = Metrics()
        self._lock = threading.Lock()
        self._breakers: dict[tuple, CircuitBreaker] = {}
        self._turns: dict[tuple, int] = {}

    def breaker(self, key: tuple, settings: dict[str, Any]) -> CircuitBreaker:
        identity = (key, breaker_settings(settings))
        with self._lock:
            breaker = self._breakers.get(identity)
            if breaker is None:
                breaker = self._breakers[identity] = self.new_breaker(key, settings)
            return breaker

    def new_breaker(self, key: tuple, settings: dict[str, Any]) -> CircuitBreaker:
        return CircuitBreaker(clock=self.clock, **settings)

    def observe(self, key: tuple, latency_ms: float | None, ok: bool, tokens: int | None) -> None:
        self.metrics.observe(key, latency_ms, ok, tokens)

    def stats(self, key: tuple) -> TargetStats:
        return self.metrics.get(key)

    def take_turn(self, key: tuple) -> int:
        with self._lock:
            turn = self._turns.get(key, 0)
            self._turns[key] = turn + 1
            return turn
