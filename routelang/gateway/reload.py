"""Hot reload: on a change of the config file or of a file it imports (polled)
or on SIGHUP, compile
and check the new version in a worker thread; serve it only if it loads.
A version with errors leaves the old one in service: the diagnostics are
logged, counted (`routelang_reloads_total{result="error"}`) and shown in
/routing. Requests already running finish on the version they started
with; breaker and latency state of targets that stay carries over."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

from . import plan

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .app import Gateway
    from .routers import FileSource


class Every:
    """Awaits `step()` every `interval_s` seconds on the running loop, from `start()` until
    `close()` (the file reloader and the registry poller)."""

    def __init__(self, interval_s: float, step: Callable[[], Awaitable[None]]):
        self.interval_s = interval_s
        self.step = step
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.step()


class Reloader:
    def __init__(self, gateway: Gateway, source: FileSource, interval_s: float):
        self.gateway = gateway
        self.source = source
        self.interval_s = interval_s
        self.last_error: dict | None = None
        self._lock = asyncio.Lock()
        self._seen = self._stat(source.loaded.files)
        self._polling = Every(interval_s, self._check)

    @staticmethod
    def _stat(files: tuple[str, ...]) -> tuple:
        """What changes when one of `files` is edited, replaced or removed."""
        out = []
        for path in files:
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
                continue
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def start(self) -> None:
        self._polling.start()

    async def close(self) -> None:
        await self._polling.close()

    async def _check(self) -> None:
        seen = self._stat(self.source.loaded.files)
        if seen != self._seen and seen[0] is not None:  # (a missing import is a load error to show)
            self._seen = seen
            await self.reload("file changed")

    async def reload(self, trigger: str) -> bool:
        """Load the file again; True when a new version is now served."""
        gw = self.gateway
        async with self._lock:
            current = self.source.loaded
            try:
                new = await asyncio.get_running_loop().run_in_executor(None, plan.load, self.source.path)
            except plan.LoadError as exc:
                self.last_error = {"at": round(time.time(), 3), "trigger": trigger, "message": str(exc)}
                gw.metrics.reloads.labels("error").inc()
                gw.log.write("reload", trigger=trigger, result="error", version=current.version,
                             diagnostics=str(exc))
                return False
            self.last_error = None
            if new.sha256 == current.sha256:
                return False
            if new.files != current.files:  # an import added or removed: watch what it imports now
                self._seen = self._stat(new.files)
            new.version = current.version + 1
            gw.state.bind(new, current)
            self.source.loaded = new
            gw.health_sync()
            gw.metrics.reloads.labels("ok").inc()
            gw.metrics.config_version.set(new.version)
            gw.log.write("reload", trigger=trigger, result="ok", version=new.version, sha256=new.sha256)
            return True
