"""Health probes from the targets' `health_check { path interval timeout }`.

Each target with a health check is probed every `interval` with a GET of
`path` on its endpoint's origin (scheme, host and port: `/health` of
`http://gpu-1:8000/v1` is `http://gpu-1:8000/health`, where vLLM and TGI
answer). A 2xx within `timeout` is healthy; anything else makes the target
unhealthy until a later probe succeeds. Until its first probe a target
counts as healthy.

`conditions` is what every health answer reads of the targets: /health/ready,
and the admin API's /api/health/overview and /health/detailed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from routelang.runtime.model import Target

from . import upstream
from .plan import HealthCheck, Loaded, target_name
from .state import about

if TYPE_CHECKING:
    from .logs import JsonLog
    from .metrics import Metrics
    from .state import State


def probe_url(endpoint: str, path: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass(frozen=True)
class Condition:
    """A target of the served routers as the health answers show it."""

    router: str        # the first served router that has it (a target several routers share is one upstream)
    name: str
    provider: str
    model: str
    selectable: bool   # in selection as far as health goes: not drained, its health check (or push) not failing
    drained: bool
    breaker: str | None   # "closed", "open", "half_open"; None without a breaker

    @property
    def condition(self) -> str:
        """"drained"; else "unhealthy" (out of selection, or its breaker open), "degraded" (its
        breaker half-open: one probe request at a time), or "healthy"."""
        if self.drained:
            return "drained"
        if not self.selectable or self.breaker == "open":
            return "unhealthy"
        return "degraded" if self.breaker == "half_open" else "healthy"


def conditions(routers: Iterable[Loaded], state: State) -> list[Condition]:
    """Each distinct target of `routers` (by its upstream key), in the routers' order."""
    seen: dict[tuple, Condition] = {}
    for loaded in routers:
        with about(loaded):
            for key, target in loaded.targets.items():
                if key not in seen:
                    seen[key] = Condition(loaded.name, target_name(target), target.provider, target.model_name,
                                          state.healthy(key), state.drained(key), state.breaker(target))
    return list(seen.values())


class HealthChecker:
    """Probes through `client`; each result goes to `state` and `metrics`, a change to `log`."""

    def __init__(self, client: upstream.Client, state: State, metrics: Metrics, log: JsonLog):
        self.client = client
        self.state = state
        self.metrics = metrics
        self.log = log
        self.tasks: dict[tuple, tuple[HealthCheck, asyncio.Task]] = {}

    def sync(self, routers: Iterable[Loaded]) -> None:
        """Probe what the served routers ask for: start new probes, stop removed or
        changed ones. A target several routers check is probed once (its health is
        the upstream's); when they disagree on how, the first router's check wins."""
        wanted: dict[tuple, tuple[HealthCheck, Target]] = {}
        for loaded in routers:
            for key, check in loaded.health_checks.items():
                wanted.setdefault(key, (check, loaded.targets[key]))
        for key, (check, task) in list(self.tasks.items()):
            if key not in wanted or wanted[key][0] != check:
                task.cancel()
                del self.tasks[key]
        for key, (check, target) in wanted.items():
            if key not in self.tasks:
                task = asyncio.get_running_loop().create_task(self._loop(key, target.endpoint,
                                                                         target_name(target), check))
                self.tasks[key] = (check, task)

    async def close(self) -> None:
        tasks = [task for _check, task in self.tasks.values()]
        for task in tasks:
            task.cancel()
        if tasks:   # bounded: a probe that does not end in time is left behind, so a stop always stops
            await asyncio.wait(tasks, timeout=2.0)
        self.tasks.clear()

    async def _loop(self, key: tuple, endpoint: str, name: str, check: HealthCheck) -> None:
        url = probe_url(endpoint, check.path)
        was = True  # a target counts as healthy until its first probe
        while True:
            if await self.state.probe_lease(key, check.interval_s):  # shared state: one prober for the fleet
                healthy, detail = await self.probe(url, check.timeout_s)
                self.state.set_health(key, healthy, detail)
                self.metrics.healthy.labels(name).set(1 if healthy else 0)
                if was != healthy:  # this probe's last result, not State.healthy (which a drain makes False)
                    self.log.write("health", target=name, healthy=healthy, detail=detail)
                was = healthy
            await asyncio.sleep(check.interval_s)

    async def probe(self, url: str, timeout_s: float) -> tuple[bool, str | None]:
        try:
            status, _headers, _body = await self.client.fetch("GET", url, b"", {}, timeout_s)
        except TimeoutError:
            return False, "timed out"
        except upstream.UpstreamError as exc:
            return False, str(exc)
        if 200 <= status < 300:
            return True, None
        return False, f"HTTP {status}"
