"""The state replicas would share: circuit breakers, latency/reliability
statistics, target health. The request path reaches it only through `State`,
so a shared store (Redis, ...) is a new class here, not a change there.

`InProcessState`, the default, keeps it in this process: breakers and
statistics are the runtime's own (fed through `plan`), health is a dict.
With `--workers N` each worker has its own.

One gateway may serve several routers (`serve --registry`). Breakers and
statistics are each router's own; health is the upstream's, shared by every
router that uses it (keyed by the target's key). Which router a call is
about is the request's: its handler sets `ROUTER` to the version it runs on
(a ContextVar, so the executor and the shadow tasks it starts need not pass
it along), and calls go to that router's current version (a version that
took over meanwhile inherited the state), or to the request's own when the
router is no longer served; with no ROUTER set and one router, that one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from routelang.runtime.model import Target

from . import plan

# The version the current request (task) is routed by; None: the only router served.
ROUTER: ContextVar[plan.Loaded | None] = ContextVar("routelang_router", default=None)


@contextmanager
def about(router: plan.Loaded) -> Iterator[None]:
    """Calls in this block are about `router` (for code outside a request: /routing, /metrics)."""
    token = ROUTER.set(router)
    try:
        yield
    finally:
        ROUTER.reset(token)


class State(Protocol):
    def bind(self, loaded: plan.Loaded, previous: plan.Loaded | None) -> None:
        """A new config version of router `loaded.name` takes over (or the router is
        new: `previous` None); state of targets that stay carries over."""

    def unbind(self, router: str) -> None:
        """Router `router` is no longer served (undeployed, deleted)."""

    def record(self, target: Target, ok: bool, latency_ms: float | None, tokens: int | None) -> None:
        """One attempt's outcome (feeds the breaker and the ranking statistics)."""

    def admits(self, target: Target) -> bool:
        """Does the target's breaker let a request through now?"""

    def claim(self, target: Target) -> None:
        """A request is about to go to `target` outside the runtime's pick (a half-open probe)."""

    def breaker(self, target: Target) -> str | None:
        """"closed", "open", "half_open", or None without a breaker."""

    def healthy(self, key: tuple) -> bool:
        """False only while the target's health check fails."""

    def any_unhealthy(self) -> bool: ...

    def set_health(self, key: tuple, healthy: bool, detail: str | None) -> None: ...

    def view(self, target: Target) -> dict[str, Any]:
        """What /routing shows of a target: breaker, health, statistics."""


class InProcessState:
    def __init__(self) -> None:
        self.routers: dict[str, plan.Loaded] = {}
        self._health: dict[tuple, tuple[bool, str | None]] = {}
        self._unhealthy = 0

    def bind(self, loaded: plan.Loaded, previous: plan.Loaded | None) -> None:
        if previous is not None:
            plan.carry_over(previous, loaded)
            if previous.name != loaded.name:
                self.routers.pop(previous.name, None)  # a file whose router was renamed
        self.routers[loaded.name] = loaded
        self._forget_health()

    def unbind(self, router: str) -> None:
        self.routers.pop(router, None)
        self._forget_health()

    def _forget_health(self) -> None:
        """Keep the health of targets some router still checks."""
        checked = set().union(*(r.health_checks for r in self.routers.values()))
        self._health = {k: v for k, v in self._health.items() if k in checked}
        self._unhealthy = sum(not ok for ok, _ in self._health.values())

    @property
    def loaded(self) -> plan.Loaded:
        """The current version of the router this call is about (`ROUTER`)."""
        routed = ROUTER.get()
        if routed is None:
            if len(self.routers) != 1:
                raise LookupError(f"which router? {len(self.routers)} are served and no request names one")
            return next(iter(self.routers.values()))
        return self.routers.get(routed.name, routed)

    def record(self, target: Target, ok: bool, latency_ms: float | None, tokens: int | None) -> None:
        plan.observe(self.loaded, target, ok, latency_ms, tokens)

    def admits(self, target: Target) -> bool:
        return plan.admits(self.loaded, target)

    def claim(self, target: Target) -> None:
        plan.claim(self.loaded, target)

    def breaker(self, target: Target) -> str | None:
        return plan.breaker_state(self.loaded, target)

    def healthy(self, key: tuple) -> bool:
        entry = self._health.get(key)
        return entry is None or entry[0]

    def any_unhealthy(self) -> bool:
        return self._unhealthy > 0

    def set_health(self, key: tuple, healthy: bool, detail: str | None) -> None:
        self._health[key] = (healthy, detail)
        self._unhealthy = sum(not ok for ok, _ in self._health.values())

    def view(self, target: Target) -> dict[str, Any]:
        out = plan.target_view(self.loaded, target)
        entry = self._health.get(target.key)
        out["healthy"] = None if entry is None else entry[0]
        out["health_detail"] = None if entry is None else entry[1]
        return out
