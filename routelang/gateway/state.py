"""The state replicas share: circuit breakers, latency/reliability
statistics, target health (probed, or pushed through the admin API),
drained targets and round-robin turns. The request path reaches it only through `State`.

Breakers, statistics and turns are the runtime's target state
(routelang.runtime.targetstate): each router served gets one TargetState,
which every version of it uses (`bind`), so a reload or a deploy carries on
with them. Health and drains are the gateway's own.

`InProcessState`, the default (`serve --state memory`), keeps it all in this
process; with `--workers N` each worker has its own. `RedisState`
(redisstate.py, `--state redis://...`) shares it through Redis.

One gateway may serve several routers (`serve --registry`). Breakers and
statistics are each router's own; health is the upstream's, shared by every
router that uses it (keyed by the target's key). Which router a call is
about is the request's: its handler sets `ROUTER` to the version it runs on
(a ContextVar, so the executor and the shadow tasks it starts need not pass
it along), and calls go to that router's current version (a version that
took over meanwhile inherited the state), or to the request's own when the
router is no longer served. Outside a request (the admin API), with no
ROUTER set: the only router, else the router the target is of. Drains and
pushed health, like probed health, are the upstream's (keyed by the target's key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from routelang.runtime.model import Target
from routelang.runtime.targetstate import InProcessTargetState

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
    async def start(self) -> None:
        """Connect to the store (when there is one), in the serving process's event loop."""

    async def close(self) -> None: ...

    def status(self) -> dict[str, Any]:
        """Where the state is kept and whether that store answers: {"backend": ..., "up": ...,
        "degraded": ...}; degraded: shared state is unreachable and this process runs on its own."""

    def watch(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(up)` now and whenever the store starts or stops answering."""

    async def probe_lease(self, key: tuple, interval_s: float) -> bool:
        """Should this process probe the health of target `key` now? (With shared state, one
        process of the fleet per interval.)"""

    def bind(self, loaded: plan.Loaded, previous: plan.Loaded | None) -> None:
        """A new config version of router `loaded.name` takes over (or the router is
        new: `previous` None); state of targets that stay carries over."""

    def unbind(self, router: str) -> None:
        """Router `router` is no longer served (undeployed, deleted)."""

    def record(self, target: Target, ok: bool, latency_ms: float | None, tokens: int | None) -> str | None:
        """One attempt's outcome (feeds the breaker and the ranking statistics); the target's
        breaker state after it, as `breaker` gives it (None: no breaker)."""

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
        """The next turn (0, 1, 2, ...) of a round-robin node; `key` is (router name, rule
        name, position of the node in the rule's strategy tree), so turns carry over a reload."""


class InProcessState:
    def __init__(self) -> None:
        self.routers: dict[str, plan.Loaded] = {}
        self.targets: dict[str, InProcessTargetState] = {}   # router name -> its target state
        self._health: dict[tuple, tuple[bool, str | None, bool]] = {}   # key -> (healthy, detail, pushed)
        self._unhealthy = 0
        self._drained: set[tuple] = set()
        self._turns: dict[tuple, int] = {}  # one event loop: no lock needed

    async def start(self) -> None:
        return None  # nothing to connect to

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"backend": "memory", "up": True, "degraded": False}

    def watch(self, callback: Callable[[bool], None]) -> None:
        callback(True)  # this process's memory always answers

    async def probe_lease(self, key: tuple, interval_s: float) -> bool:
        return True  # every process probes for itself

    def bind(self, loaded: plan.Loaded, previous: plan.Loaded | None) -> None:
        if previous is not None and previous.name != loaded.name:  # a file whose router was renamed
            self.routers.pop(previous.name, None)
            if previous.name in self.targets:
                self.targets[loaded.name] = self.targets.pop(previous.name)
                self.targets[loaded.name].router = loaded.name
        self.routers[loaded.name] = loaded
        targets = self.targets.get(loaded.name)
        if targets is None:
            targets = self.targets[loaded.name] = self.target_state(loaded)
        loaded.router.use_state(targets)
        self._forget()

    def target_state(self, loaded: plan.Loaded) -> InProcessTargetState:
        """The target state of a router bound for the first time."""
        return RouterTargets(self, loaded.name)

    def unbind(self, router: str) -> None:
        self.routers.pop(router, None)
        self.targets.pop(router, None)
        self._forget()

    def _forget(self) -> None:
        """A probe's result goes with its health check; pushed health and drains stay with
        the target, while some router served here has it."""
        checked = set().union(*(r.health_checks for r in self.routers.values()))
        targets = set().union(*(r.targets for r in self.routers.values()))
        self._health = {k: v for k, v in self._health.items() if k in checked or (v[2] and k in targets)}
        self._unhealthy = sum(not entry[0] for entry in self._health.values())
        self._drained &= targets

    def _router_of(self, target: Target) -> plan.Loaded:
        """The current version of the router this call is about: the request's (`ROUTER`);
        outside a request (the admin API), the only router, else the one this target is of."""
        routed = ROUTER.get()
        if routed is not None:
            return self.routers.get(routed.name, routed)
        if len(self.routers) == 1:
            return next(iter(self.routers.values()))
        owners = [r for r in self.routers.values() if r.targets.get(target.key) is target] or \
                 [r for r in self.routers.values() if target.key in r.targets]
        if len(owners) != 1:
            raise LookupError(f"which router is target {plan.target_name(target)!r} of? "
                              f"({len(owners)} served here have it; use state.about(loaded))")
        return owners[0]

    def record(self, target: Target, ok: bool, latency_ms: float | None, tokens: int | None) -> str | None:
        return plan.observe(self._router_of(target), target, ok, latency_ms, tokens)

    def admits(self, target: Target) -> bool:
        return plan.admits(self._router_of(target), target)

    def claim(self, target: Target) -> None:
        plan.claim(self._router_of(target), target)

    def breaker(self, target: Target) -> str | None:
        return plan.breaker_state(self._router_of(target), target)

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
        out = plan.target_view(self._router_of(target), target)
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


STATE_SCHEMES = ("redis://", "rediss://", "unix://")


def check_url(url: str) -> str | None:
    """What is wrong with a `--state` value (None: nothing)."""
    if url == "memory" or url.startswith(STATE_SCHEMES):
        return None
    return f"--state takes `memory` or a Redis URL (redis://HOST:PORT/DB), not {url!r}"


class RouterTargets(InProcessTargetState):
    """One router's breakers and statistics in this process; its round-robin turns are the
    State's, under the router's name (two routers' rules of one name do not share turns;
    a new version's do)."""

    def __init__(self, state: State, router: str):
        super().__init__()
        self.state = state
        self.router = router

    def take_turn(self, key: tuple) -> int:
        return self.state.take_turn((self.router, *key))
