"""Polling for changes: `Every` awaits a step at an interval (the config file's
watcher and the registry's poller), `FileStamp` says whether any of a
router's files (the file and what it imports) was edited, replaced or removed.

Hot reload itself (routers.py): on a change of the config file or of a file it
imports (polled) or on SIGHUP, compile and check the new version in a worker
thread; serve it only if it loads. A version with errors leaves the old one in
service: the diagnostics are logged, counted
(`routelang_reloads_total{result="error"}`) and shown in /routing. Requests
already running finish on the version they started with; breaker and latency
state of targets that stay carries over."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


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


def stamp(files: tuple[str, ...]) -> tuple:
    """What changes when one of `files` is edited, replaced or removed (None for a missing one)."""
    out = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)
