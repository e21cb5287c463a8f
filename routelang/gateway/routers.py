"""Where the gateway's routers come from: one config file (`serve FILE`) or
the deployed routers of a registry (`serve --registry PATH`).

Both hand out `plan.Loaded` versions; a request takes the version current
when it starts and keeps it to its end, so a reload or a deploy never
disturbs a request in flight. When a router gets a new version, the state of
the targets that stay carries over (`State.bind`), and `on_change` (given by
the composition root, wiring.py) is called: the health checker follows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Protocol

from . import plan
from .reload import Every, stamp

if TYPE_CHECKING:
    from collections.abc import Callable

    from routelang.registry.store import Store

    from .logs import JsonLog
    from .metrics import Metrics
    from .state import State

# How often a registry gateway looks for deploys and rollbacks: a change is served within a second.
POLL_S = 0.25


class Source(Protocol):
    def get(self, name: str | None) -> plan.Loaded | None:
        """The current version of router `name` (None: the default router), None when not served."""

    def all(self) -> list[plan.Loaded]:
        """Every router served, by name."""

    def default_problem(self) -> str:
        """Why there is no default router (the message of a request that names none)."""

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def reload(self, trigger: str) -> bool:
        """Look for a new version now (SIGHUP); True when one is now served."""

    @property
    def last_error(self) -> dict | None:
        """The last version that could not be loaded, while it is not served."""


class FileSource:
    """One router from a config file, reloaded when it or a file it imports changes
    (polled every `reload_interval_s`), or on `reload()` (SIGHUP)."""

    def __init__(self, path: str, reload_interval_s: float, state: State, metrics: Metrics, log: JsonLog,
                 on_change: Callable[[], None], loaded: plan.Loaded | None = None):
        self.path = path
        self.loaded = plan.load(path) if loaded is None else loaded   # raises plan.LoadError: nothing to serve
        self.state = state
        self.metrics = metrics
        self.log = log
        self.on_change = on_change
        self.last_error: dict | None = None
        self._lock = asyncio.Lock()
        self._seen = stamp(self.loaded.files)
        self._polling = Every(reload_interval_s, self._check)
        state.bind(self.loaded, None)
        metrics.config_version.set(self.loaded.version)

    def get(self, name: str | None) -> plan.Loaded | None:
        loaded = self.loaded
        return loaded if name is None or name == loaded.name else None

    def all(self) -> list[plan.Loaded]:
        return [self.loaded]

    def default_problem(self) -> str:
        return ""  # the file's router is always the default

    def start(self) -> None:
        self._polling.start()

    async def close(self) -> None:
        await self._polling.close()

    async def _check(self) -> None:
        seen = stamp(self.loaded.files)
        if seen != self._seen and seen[0] is not None:  # (a missing import is a load error to show)
            self._seen = seen
            await self.reload("file changed")

    async def reload(self, trigger: str) -> bool:
        """Load the file again; True when a new version is now served."""
        async with self._lock:
            current = self.loaded
            try:
                new = await asyncio.get_running_loop().run_in_executor(None, plan.load, self.path)
            except plan.LoadError as exc:
                self.last_error = {"at": round(time.time(), 3), "trigger": trigger, "message": str(exc)}
                self.metrics.reloads.labels("error").inc()
                self.log.write("reload", trigger=trigger, result="error", version=current.version,
                               diagnostics=str(exc))
                return False
            self.last_error = None
            if new.sha256 == current.sha256:
                return False
            if new.files != current.files:  # an import added or removed: watch what it imports now
                self._seen = stamp(new.files)
            new.version = current.version + 1
            self.state.bind(new, current)
            self.loaded = new
            self.on_change()
            self.metrics.reloads.labels("ok").inc()
            self.metrics.config_version.set(new.version)
            self.log.write("reload", trigger=trigger, result="ok", version=new.version, sha256=new.sha256)
            return True


class RegistrySource:
    """Every deployed router of a registry, each at its active version (compiled
    once when it becomes active). A cheap query on the routers table every
    `poll_s` notices deploys, rollbacks and deletions made by any process; on
    Postgres, a deploy is also announced (LISTEN/NOTIFY) and served at once
    by every replica, the poll staying as the fallback."""

    def __init__(self, store: Store, state: State, metrics: Metrics, log: JsonLog, on_change: Callable[[], None],
                 default: str | None = None, poll_s: float = POLL_S):
        self.store = store
        self.state = state
        self.metrics = metrics
        self.log = log
        self.on_change = on_change
        self.default = default
        self.poll_s = poll_s
        self.routers: dict[str, plan.Loaded] = {}
        self.errors: dict[str, dict] = {}     # router -> the active version that does not load
        self._lock = asyncio.Lock()
        self._polling = Every(poll_s, self._check)
        self._watching: threading.Thread | None = None
        self._stop_watching = threading.Event()
        self._checks: set[asyncio.Task] = set()
        for name, version in self._active().items():   # before serving: what is deployed now
            self._apply(name, version, self._load(name, version), "start")

    # ---- what requests see ------------------------------------------------------

    def get(self, name: str | None) -> plan.Loaded | None:
        if name is None:
            if self.default is not None:
                return self.routers.get(self.default)
            if len(self.routers) == 1:
                return next(iter(self.routers.values()))
            return None
        return self.routers.get(name)

    def all(self) -> list[plan.Loaded]:
        return [self.routers[name] for name in sorted(self.routers)]

    def default_problem(self) -> str:
        served = ", ".join(sorted(self.routers)) or "none is deployed"
        if self.default is not None:
            return f"the default router {self.default!r} is not deployed (routers: {served})"
        return (f"name a router: /r/NAME/v1/... or the header x-routelang-router: NAME "
                f"(routers: {served})")

    @property
    def last_error(self) -> dict | None:
        return max(self.errors.values(), key=lambda e: e["at"]) if self.errors else None

    # ---- following the registry ---------------------------------------------------

    def start(self) -> None:
        self._polling.start()
        if self.store.notifies:
            loop = asyncio.get_running_loop()
            self._watching = threading.Thread(
                target=self.store.watch, args=(lambda: loop.call_soon_threadsafe(self._notified),
                                               self._stop_watching),
                name="routelang-registry-watch", daemon=True)
            self._watching.start()

    def _notified(self) -> None:
        task = asyncio.get_running_loop().create_task(self._check())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def close(self) -> None:
        await self._polling.close()
        self._stop_watching.set()
        if self._watching is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._watching.join, 5)
        for task in list(self._checks):
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)

    async def _check(self) -> None:
        try:
            await self.reload("registry changed")
        except Exception as exc:  # noqa: BLE001 (a locked or broken file must not stop the polling)
            self.log.write("reload", trigger="registry", result="error",
                           diagnostics=f"{type(exc).__name__}: {exc}")

    def _active(self) -> dict[str, int]:
        return self.store.active_versions()

    def _load(self, name: str, version: int) -> plan.Loaded | plan.LoadError:
        stored = self.store.version(name, version)
        try:
            loaded = plan.from_config(stored.compiled, f"{self.store.shown}#{name}@{version}", stored.content_hash)
        except plan.LoadError as exc:
            return exc
        loaded.version = version
        return loaded

    async def reload(self, trigger: str) -> bool:
        """Serve what the registry has deployed now: True when something changed."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            active = await loop.run_in_executor(None, self._active)   # (a database on the network: off the loop)
            changed = False
            for name in [n for n in self.routers if n not in active]:
                self.state.unbind(name)
                del self.routers[name]
                self.log.write("reload", trigger=trigger, result="ok", router=name, version=None)
                changed = True
            self.errors = {n: e for n, e in self.errors.items() if active.get(n) == e["version"]}
            for name, version in active.items():
                current = self.routers.get(name)
                if (current is not None and current.version == version) or \
                        self.errors.get(name, {}).get("version") == version:
                    continue
                new = await loop.run_in_executor(None, self._load, name, version)
                changed |= self._apply(name, version, new, trigger)
            if changed:
                self.on_change()
            return changed

    def _apply(self, name: str, version: int, new: plan.Loaded | plan.LoadError, trigger: str) -> bool:
        if isinstance(new, plan.LoadError):
            self.errors[name] = {"at": round(time.time(), 3), "trigger": trigger, "router": name,
                                 "version": version, "message": str(new)}
            self.metrics.reloads.labels("error").inc()
            self.log.write("reload", trigger=trigger, result="error", router=name, version=version,
                           diagnostics=str(new))
            return False
        previous = self.routers.get(name)
        self.state.bind(new, previous)
        self.routers[name] = new
        self.metrics.reloads.labels("ok").inc()
        self.log.write("reload", trigger=trigger, result="ok", router=name, version=version, sha256=new.sha256,
                       previous=None if previous is None else previous.version)
        return True
