"""The state replicas would share: circuit breakers, latency/reliability
statistics, target health (probed, or pushed through the admin API),
drained targets and round-robin turns. The request path reaches it only through `State`,
so a shared store (Redis, ...) is a new class here, not a change there.

`InProcessState`, the default, keeps it in this process: breakers and
statistics are the runtime's own (fed through `plan`), health and the
round-robin turns are dicts.
With `--workers N` each worker has its own.
"""

from __future__ import annotations

from typing import Any, Protocol

from routelang.runtime.model import Target

from . import plan


class State(Protocol):
    def bind(self, loaded: plan.Loaded, previous: plan.Loaded | None) -> None:
        """A new config version takes over; state of targets that stay carries over."""

    def record(self, target: Target, ok: bool, latency_ms: float | None, tokens: int | None) -> None:
        """One attempt's outcome (feeds the breaker and the ranking statistics)."""

    def admits(self, target: Target) -> bool:
        """Does the target's breaker let a request through now?"""

    def claim(self, target: Target) -> None:
        """A request is about to go to `target` outside the runtime's pick (a half-open probe)."""

    def breaker(self, target: Target) -> str | None:
        """"closed", "open", "half_open", or None without a breaker."""

    def healthy(self, key: tuple) -> bool:
        """May the target be selected? False while its health check (or the health
        last pushed for it) fails, and while it is drained: either way it leaves selection."""

    def any_unhealthy(self) -> bool:
        """Is any target out of selection (unhealthy or drained)?"""

    def set_health(self, key: tuple, healthy: bool, detail: str | None, pushed: bool = False) -> None:
        """A probe's result, or (`pushed`) a report from outside (POST /api/targets/.../health)."""

    def set_drained(self, key: tuple, drained: bool) -> None:
        """Drain a target by hand (it leaves selection as an unhealthy one does) or undrain it."""

    def drained(self, key: tuple) -> bool: ...

    def view(self, target: Target) -> dict[str, Any]:
        """What /routing shows of a target: breaker, health, statistics."""

    def take_turn(self, key: tuple) -> int:
        """The next turn (0, 1, 2, ...) of a round-robin node; `key` is (rule name,
        position of the node in the rule's strategy tree), so turns carry over a reload."""


class InProcessState:
    def __init__(self) -> None:
        self.loaded: plan.Loaded | None = None
        self._health: dict[tuple, tuple[bool, str | None, bool]] = {}   # key -> (healthy, detail, pushed)
        self._unhealthy = 0
        self._drained: set[tuple] = set()
        self._turns: dict[tuple, int] = {}  # one event loop: no lock needed

    def bind(self, loaded: plan.Loaded, previous: plan.Loaded | None) -> None:
        if previous is not None:
            plan.carry_over(previous, loaded)
        self.loaded = loaded
        plan.take_turns_from(loaded, self)
        # A probe's result goes with its health check; pushed health and drains stay with the target.
        self._health = {k: v for k, v in self._health.items()
                        if k in loaded.health_checks or (v[2] and k in loaded.targets)}
        self._unhealthy = sum(not entry[0] for entry in self._health.values())
        self._drained &= loaded.targets.keys()

    def record(self, target: Target, ok: bool, latency_ms: float | None, tokens: int | None) -> None:
        plan.observe(self.loaded, target, ok, latency_ms, tokens)

    def admits(self, target: Target) -> bool:
        return plan.admits(self.loaded, target)

    def claim(self, target: Target) -> None:
        plan.claim(self.loaded, target)

    def breaker(self, target: Target) -> str | None:
        return plan.breaker_state(self.loaded, target)

    def healthy(self, key: tuple) -> bool:
        if key in self._drained:
            return False
        entry = self._health.get(key)
        return entry is None or entry[0]

    def any_unhealthy(self) -> bool:
        return self._unhealthy > 0 or bool(self._drained)

    def set_health(self, key: tuple, healthy: bool, detail: str | None, pushed: bool = False) -> None:
        self._health[key] = (healthy, detail, pushed)
        self._unhealthy = sum(not entry[0] for entry in self._health.values())

    def set_drained(self, key: tuple, drained: bool) -> None:
        if drained:
            self._drained.add(key)
        else:
            self._drained.discard(key)

    def drained(self, key: tuple) -> bool:
        return key in self._drained

    def view(self, target: Target) -> dict[str, Any]:
        out = plan.target_view(self.loaded, target)
        entry = self._health.get(target.key)
        out["healthy"] = None if entry is None else entry[0]
        out["health_detail"] = None if entry is None else entry[1]
        out["health_pushed"] = None if entry is None else entry[2]
        out["drained"] = target.key in self._drained
        return out

    def take_turn(self, key: tuple) -> int:
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return turn
