"""`routelang.Router`: the Mixtrain Router SDK's interface over a local
registry file or a remote gateway's admin API.

    router = routelang.Router("image-gen-router")            # lazy: nothing is read yet
    result = router.route({"user": {"tier": "premium"}})    # decided here, recorded in the history
    router.update(rules=[...]); router.deploy(version=2)
    remote = routelang.Router("image-gen-router", url="http://gw:8080", api_key="...")   # the same, over HTTP

`Router` is the interface; a transport does the work: `LocalRegistry` (the
file; decisions made in this process by the active version, compiled once per
version and looked up again at most once a second, so a deploy from another
process is picked up within a second) or `RemoteGateway` (the gateway's
`/api`, urllib, decisions made by the gateway with `POST /api/route`).
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ..runtime.engine import RouteResult
from . import history
from .store import RegistryError, Store

RECHECK_ACTIVE_S = 1.0
REMOTE_TIMEOUT_S = 30.0


class Router:
    """A router in a registry: the local file `registry` (default: `default_path()`),
    or, given `url` (and `api_key`, an admin key), the registry of the gateway there.

    For compatibility, `Router(plan, ...)` with a runtime Plan still builds the
    runtime's router (`routelang.LoadedRouter`), as `routelang.Router` did before."""

    def __new__(cls, name=None, *args, **kwargs):
        from ..runtime.model import Plan

        if isinstance(name, Plan):
            from ..runtime.engine import Router as LoadedRouter

            return LoadedRouter(name, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, name: str, registry: str | Path | None = None, backend: str = "python",
                 record: bool = True, url: str | None = None, api_key: str | None = None,
                 timeout_s: float = REMOTE_TIMEOUT_S):
        if not isinstance(name, str) or not name:
            raise TypeError("Router(name): name must be a non-empty str")
        if url is not None and registry is not None:
            raise TypeError("Router(name): give `registry` (a local file) or `url` (a gateway), not both")
        self.name = name
        self._transport: LocalRegistry | RemoteGateway = (
            RemoteGateway(name, url, api_key, record, timeout_s) if url is not None
            else LocalRegistry(name, registry, backend, record))
        self._config: dict | None = None

    def __repr__(self) -> str:
        return f"Router({self.name!r})"

    def close(self) -> None:
        """Write the history still queued and close the registry file (local)."""
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- properties --------------------------------------------------------------------

    @property
    def config(self) -> dict:
        """The active version's compiled config (the latest version's before any deploy); cached, and
        each access a copy: editing what it returns (say, to pass to `update`) never edits the cache."""
        if self._config is None:
            self._config = self._transport.config()
        return copy.deepcopy(self._config)

    @property
    def rules(self) -> list[dict]:
        return self.config.get("rules", [])

    @property
    def versions(self) -> list[dict]:
        """Each version's router, number, content hash, message, time, and whether it is active."""
        return self._transport.versions()

    @property
    def active_version(self) -> int | None:
        return self._transport.active_version()

    # ---- routing and history ----------------------------------------------------------

    def route(self, data: dict) -> RouteResult:
        """The active version's decision for `data`, recorded in the history
        (rule, targets, hash of the sticky key; never the request itself)."""
        return self._transport.route(data)

    def list_requests(self, limit: int = 100, source: str | None = None) -> list[dict]:
        """The newest first (what this process recorded is written first); 1 <= limit <= 10,000,
        checked here so that a local file and a gateway refuse the same limits. `source`: only
        the rows of "gateway" (requests served) or "sdk" (decisions); None: every row."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= history.MAX_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {history.MAX_LIMIT}, not {limit!r}")
        return self._transport.list_requests(limit, history.check_source(source))

    def get_request(self, request_id: str) -> dict:
        found = self._transport.get_request(request_id)
        if found is None or found["router"] != self.name:
            raise RegistryError(f"router {self.name!r} has no request {request_id!r}")
        return found

    # ---- changes -------------------------------------------------------------------------

    def update(self, rules: list | None = None, **kwargs) -> int:
        """A new version: the current config with `rules` and the other top-level
        fields given replaced, checked like a pushed file (raises RegistryError
        with the diagnostics when it does not check clean). Not deployed; returns
        its number (an existing one when nothing changed)."""
        config = self.config
        if rules is not None:
            config["rules"] = rules
        config.update(kwargs)
        config.setdefault("name", self.name)
        version = self._transport.push_config(config)
        self.refresh()
        return version

    def deploy(self, version: int) -> None:
        self._transport.deploy(version)
        self.refresh()

    def delete(self) -> None:
        self._transport.delete()
        self.refresh()

    def refresh(self) -> None:
        """Forget cached data: the next access reads the registry again."""
        self._config = None
        self._transport.forget()


class LocalRegistry:
    """The SDK over a registry file: decisions made here, history written by this process."""

    def __init__(self, name: str, path: str | Path | None, backend: str, record: bool):
        self.name = name
        self._path = path
        self._backend = backend
        self._record = record
        self._store: Store | None = None
        self._writer: history.HistoryWriter | None = None
        self._loaded: tuple[tuple, Any] | None = None  # ((version, content hash), runtime router)
        self._active_checked = (0.0, None)             # (monotonic time, (active version, content hash))

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self._path, create=False)
        return self._store

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def forget(self) -> None:
        self._loaded = None
        self._active_checked = (0.0, None)

    def config(self) -> dict:
        return self.store.version(self.name).compiled

    def versions(self) -> list[dict]:
        active = self.active_version()
        return [{**v, "active": v["version"] == active} for v in self.store.versions(self.name)]

    def active_version(self) -> int | None:
        return self.store.active_version(self.name)

    def route(self, data: dict) -> RouteResult:
        version, runtime = self._runtime()
        started = time.perf_counter()   # the decision's latency: not the lookup or compiling of a version
        result = runtime.route(data)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if self._record:
            self._history().record(history_record(self.name, version, data, result, elapsed_ms))
        return result

    def _runtime(self) -> tuple[int, Any]:
        """(the active version, its runtime router). The active version and its content hash are looked
        up again at most once a second: a router deleted and pushed again elsewhere is version 1 again."""
        now = time.monotonic()
        checked_at, active = self._active_checked
        if self._loaded is None or now - checked_at >= RECHECK_ACTIVE_S:
            number = self.active_version()
            digest = next((v["content_hash"] for v in self.store.versions(self.name) if v["version"] == number), None)
            active = None if number is None else (number, digest)
            self._active_checked = (now, active)
        if active is None:
            raise RegistryError(f"router {self.name!r} has no deployed version (routelang deploy {self.name} N)")
        if self._loaded is None or self._loaded[0] != active:
            from ..loader import make_router, plan_for_deciding
            from ..runtime.model import ConfigError

            try:   # deciding needs no upstream secret: an unset ${VAR} stays as written
                plan = plan_for_deciding(self.store.version(self.name, active[0]).compiled)
            except ConfigError as exc:   # the words of the admin API's 422, as remotely
                raise RegistryError(f"router {self.name!r} version {active[0]} does not load here: {exc}") from None
            self._loaded = (active, make_router(plan, backend=self._backend))
        return active[0], self._loaded[1]

    def _history(self) -> history.HistoryWriter:
        if self._writer is None:
            self._writer = history.shared_writer(self.store.path)
        return self._writer

    def list_requests(self, limit: int, source: str | None) -> list[dict]:
        if self._writer is not None:
            self._writer.flush()
        return history.list_requests(self.store.conn, self.name, limit, source)

    def get_request(self, request_id: str) -> dict | None:
        if self._writer is not None:
            self._writer.flush()
        return history.get_request(self.store.conn, request_id)

    def push_config(self, config: dict) -> int:
        from ..importers.mixtrain import ImportProblem
        from .artifacts import build_config

        try:
            built = build_config(config, self.name)
        except ImportProblem as exc:
            raise RegistryError(f"the updated router is not a valid config: {exc}") from None
        if not built.ok:
            raise RegistryError("the updated router does not check clean:\n" + built.result.render(built.problems))
        version, _new = self.store.push(self.name, built.entry, built.sources, built.compiled, "update()",
                                         from_config=True)
        return version.version

    def deploy(self, version: int) -> None:
        self.store.deploy(self.name, version)

    def delete(self) -> None:
        self.store.delete(self.name)


@dataclass(frozen=True, slots=True)
class DecidedRule:
    """The matched rule of a remote decision: what the gateway says of it."""

    name: str
    priority: int
    strategy: str


class RemoteGateway:
    """The SDK over a gateway's admin API (`routelang serve ... --admin-keys`): every call is one
    HTTP request (stdlib urllib); an error answer is a RegistryError with the gateway's message."""

    def __init__(self, name: str, url: str, api_key: str | None, record: bool, timeout_s: float):
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        # urllib would also open file:// and ftp:// addresses, and report a bare host as "unknown url type".
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"Router(url=...): the gateway's address, http(s)://host:port, not {url!r}")
        self.name = name
        self._base = url.rstrip("/") + "/api"
        self._key = api_key
        self._record = record
        self._timeout_s = timeout_s

    def close(self) -> None:
        """Nothing is held open between calls."""

    def forget(self) -> None:
        """Nothing is cached here: the gateway answers every call."""

    def _call(self, method: str, path: str, body: Any = None, missing_ok: bool = False) -> Any:
        """The answer's JSON; `missing_ok`: None for a 404 (any other error raises)."""
        headers = {"Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self._base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            raise RegistryError(_error_message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(f"cannot reach the gateway at {self._base}: {reason}") from None

    def _router_path(self, tail: str = "") -> str:
        return f"/routers/{urllib.parse.quote(self.name, safe='')}{tail}"

    def config(self) -> dict:
        return self._call("GET", self._router_path())["config"]

    def versions(self) -> list[dict]:
        return self._call("GET", self._router_path("/versions"))["data"]

    def active_version(self) -> int | None:
        return self._call("GET", self._router_path())["active_version"]

    def route(self, data: dict) -> RouteResult:
        from ..runtime.model import Target
        from ..runtime.strategies import Selection

        answer = self._call("POST", "/route", {"router": self.name, "data": data, "record": self._record})
        rule = answer["matched_rule"]
        matched = None if rule is None else DecidedRule(rule["name"], rule["priority"], rule["strategy"])

        def target(t: dict) -> Target:   # header values never leave the gateway
            return Target(**{k: v for k, v in t.items() if k != "headers"})

        shadows = tuple(target(t) for t in answer["shadows"])
        attempts = tuple(target(t) for t in answer["selected_targets"][:len(answer["selected_targets"]) - len(shadows)])
        return RouteResult(matched, Selection(attempts, shadows), answer["reason"])

    def list_requests(self, limit: int, source: str | None) -> list[dict]:
        query = urllib.parse.urlencode({"limit": int(limit), **({"source": source} if source else {})})
        return self._call("GET", self._router_path(f"/requests?{query}"))["data"]

    def get_request(self, request_id: str) -> dict | None:
        return self._call("GET", f"/requests/{urllib.parse.quote(request_id, safe='')}", missing_ok=True)

    def push_config(self, config: dict) -> int:
        return self._call("POST", self._router_path("/versions"), {"config": config, "message": "update()"})["version"]

    def deploy(self, version: int) -> None:
        self._call("POST", self._router_path("/deploy"), {"version": version})

    def delete(self) -> None:
        self._call("DELETE", self._router_path())


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"the gateway answered HTTP {exc.code}"


def history_record(name: str, version: int | None, data: Any, result: RouteResult,
                   elapsed_ms: float) -> history.RequestRecord:
    """The history row of one decision (the SDK's and the admin API's `POST /api/route`)."""
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
                                 latency_ms=elapsed_ms, split_label=split_label, sticky_key_hash=sticky,
                                 source=history.SDK)
