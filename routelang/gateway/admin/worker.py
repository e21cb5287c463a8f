"""The admin API's registry work (the database, compiling a push, the semantic
diff of a deploy) runs in one worker thread with its own connection to the
registry, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ...registry.backends import open_store
from ...registry.store import Store


class RegistryWorker:
    def __init__(self, location: str | Path):
        self.location = location
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routelang-admin")
        self._store: Store | None = None     # the worker thread's own connection

    async def run(self, work: Callable[[Store], Any]) -> Any:
        """`work(store)` in the worker thread, on its own connection to the registry."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._in_thread, work)

    def _in_thread(self, work: Callable[[Store], Any]) -> Any:
        if self._store is None:
            self._store = open_store(self.location)
        return work(self._store)

    async def close(self) -> None:
        if self._store is not None:
            await self.run(lambda store: store.close())
        self._pool.shutdown(wait=True)
