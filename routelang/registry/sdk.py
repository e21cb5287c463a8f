"""`routelang.Router`: the Mixtrain Router SDK's interface over a local registry.

    router = routelang.Router("image-gen-router")            # lazy: nothing is read yet
    result = router.route({"user": {"tier": "premium"}})    # decided here, recorded in the history
    router.update(rules=[...]); router.deploy(version=2)

Decisions are made in this process by the active version (compiled once per
version); the active version is looked up again at most once a second, so a
deploy from another process is picked up within a second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Self

from ..runtime.engine import RouteResult
from . import history
from .store import RegistryError, Store

RECHECK_ACTIVE_S = 1.0


class Router:
    """A router in the registry (`registry`: its file; default: `default_path()`).

    For compatibility, `Router(plan, ...)` with a runtime Plan still builds the
    runtime's router (`routelang.LoadedRouter`), as `routelang.Router` did before."""

    def __new__(cls, name=None, *args, **kwargs):
        from ..runtime.model import Plan

        if isinstance(name, Plan):
            from ..runtime.engine import Router as LoadedRouter

            return LoadedRouter(name, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, name: str, registry: str | Path | None = None, backend: str = "python",
                 record: bool = True):
        if not isinstance(name, str) or not name:
            raise TypeError("Router(name): name must be a non-empty str")
        self.name = name
        self._registry = registry
        self._backend = backend
        self._record = record
        self._store: Store | None = None
        self._writer: history.HistoryWriter | None = None
        self._config: dict | None = None
        self._loaded: tuple[int, Any] | None = None    # (version, runtime router)
        self._active_checked = (0.0, None)             # (monotonic time, active version)

    def __repr__(self) -> str:
        return f"Router({self.name!r})"

    # ---- the registry, opened on first use ---------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self._registry, create=False)
        return self._store

    def close(self) -> None:
        """Write the history still queued and close the registry file."""
        if self._writer is not None:
            self._writer.flush()
            self._writer = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- properties --------------------------------------------------------------------

    @property
    def config(self) -> dict:
        """The active version's compiled config (the latest version's before any deploy); cached."""
        if self._config is None:
            self._config = self.store.version(self.name).compiled
        return self._config

    @property
    def rules(self) -> list[dict]:
        return list(self.config.get("rules", []))

    @property
    def versions(self) -> list[dict]:
        active = self.active_version
        return [{**v, "active": v["version"] == active} for v in self.store.versions(self.name)]

    @property
    def active_version(self) -> int | None:
        return self.store.active_version(self.name)

    # ---- routing -------------------------------------------------------------------------

    def route(self, data: dict) -> RouteResult:
        """The active version's decision for `data`, recorded in the history
        (rule, targets, hash of the sticky key; never the request itself)."""
        started = time.perf_counter()
        version, runtime = self._runtime()
        result = runtime.route(data)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if self._record:
            self._history().record(_record(self.name, version, data, result, elapsed_ms))
        return result

    def _runtime(self):
        now = time.monotonic()
        checked_at, active = self._active_checked
        if self._loaded is None or now - checked_at >= RECHECK_ACTIVE_S:
            active = self.active_version
            self._active_checked = (now, active)
        if active is None:
            raise RegistryError(f"router {self.name!r} has no deployed version (routelang deploy {self.name} N)")
        if self._loaded is None or self._loaded[0] != active:
            from ..loader import make_router, plan_from_json

            plan = plan_from_json(self.store.version(self.name, active).compiled)
            self._loaded = (active, make_router(plan, backend=self._backend))
            self._config = None
        return self._loaded

    def _history(self) -> history.HistoryWriter:
        if self._writer is None:
            self._writer = history.shared_writer(self.store.path)
        return self._writer

    def list_requests(self, limit: int = 100) -> list[dict]:
        """The newest first (what this process recorded is written first)."""
        if self._writer is not None:
            self._writer.flush()
        return history.list_requests(self.store.conn, self.name, limit)

    def get_request(self, request_id: str) -> dict:
        if self._writer is not None:
            self._writer.flush()
        found = history.get_request(self.store.conn, request_id)
        if found is None or found["router"] != self.name:
            raise RegistryError(f"router {self.name!r} has no request {request_id!r}")
        return found

    # ---- changes -------------------------------------------------------------------------

    def update(self, rules: list | None = None, **kwargs) -> int:
        """A new version: the current config with `rules` and the other top-level
        fields given replaced, checked like a pushed file (raises RegistryError
        with the diagnostics when it does not check clean). Not deployed; returns
        its number (an existing one when nothing changed)."""
        from .artifacts import build_config

        config = dict(self.config)
        if rules is not None:
            config["rules"] = rules
        config.update(kwargs)
        config.setdefault("name", self.name)
        from ..importer import ImportProblem

        try:
            built = build_config(config, self.name)
        except ImportProblem as exc:
            raise RegistryError(f"the updated router is not a valid config: {exc}") from None
        if not built.ok:
            raise RegistryError("the updated router does not check clean:\n" + built.result.render(built.problems))
        version, _new = self.store.push(self.name, built.entry, built.sources, built.compiled, "update()")
        self.refresh()
        return version.version

    def deploy(self, version: int) -> None:
        self.store.deploy(self.name, version)
        self.refresh()

    def delete(self) -> None:
        self.store.delete(self.name)
        self.refresh()

    def refresh(self) -> None:
        """Forget cached data: the next access reads the registry again."""
        self._config = None
        self._loaded = None
        self._active_checked = (0.0, None)


def _record(name: str, version: int, data: Any, result: RouteResult, elapsed_ms: float) -> history.RequestRecord:
    rule = result.matched_rule
    sticky = None
    # The rule's own (outermost) sticky split buckets the request; nested splits are not recorded.
    sticky_by = None if rule is None else rule.selection.sticky_by
    if sticky_by is not None:
        from ..runtime.operators import lookup

        sticky = history.sticky_hash(lookup(data, sticky_by))
    split_label = None
    if rule is not None and rule.strategy == "split" and result.selected_targets:
        first = result.selected_targets[0]
        split_label = first.label or first.model_name
    return history.RequestRecord(router=name, version=version, rule=None if rule is None else rule.name,
                                 status="routed" if rule is not None else "unmatched",
                                 targets=tuple(result.selected_targets),
                                 latency_ms=elapsed_ms, split_label=split_label, sticky_key_hash=sticky)
