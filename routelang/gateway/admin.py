"""The admin API: an aiohttp sub-application at /api, mounted only when
`routelang serve` is given `--admin-keys FILE` (docs/registry.md#the-admin-api).

Every endpoint is one row of ENDPOINTS: its method and path, the pydantic
models of its body and of its answer, and the error statuses it can give.
The routes and the OpenAPI document (`GET /api/openapi.json`) are both built
from that table, and every body is validated and every answer serialised
through those models, so the document cannot drift from the code.

Registry work (SQLite, compiling a push, the semantic diff of a deploy) runs
in one worker thread with its own connection to the registry file; routing
decisions and target state run on the event loop, where the gateway's
`State` lives.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..registry.history import MAX_LIMIT
from ..registry.store import RegistryError
from ..runtime.engine import RouteResult
from ..runtime.operators import RequestError
from ..runtime.strategies import Selection
from . import auth, errors, plan
from .state import about

if TYPE_CHECKING:
    from ..registry.store import Store
    from .app import Gateway

JSON = "application/json"
ROUTER_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"   # store.ROUTER_NAME, as an OpenAPI pattern
EXPORT_FORMAT = "routelang-registry"
STDLIB_NAME = re.compile(r"<std(\.[A-Za-z_][A-Za-z0-9_]*)+>")


def _relative(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and "\\" not in name and ":" not in name and \
        all(p not in ("", ".", "..") for p in parts)


class AdminError(Exception):
    def __init__(self, kind: errors.Kind, message: str, param: str | None = None, **extra: Any):
        super().__init__(message)
        self.kind, self.message, self.param, self.extra = kind, message, param, extra


# ---- the models: request bodies --------------------------------------------------------

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PushBody(Body):
    """A new version: `.route` source text, or a Mixtrain-schema JSON config (exactly one)."""

    source: str | None = Field(None, description="`.route` text; it may import the standard library only")
    config: dict[str, Any] | None = Field(None, description="a Mixtrain-schema config, imported to `.route`")
    filename: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.route$",
                                 description="with `source`: the entry file's name (default NAME.route)")
    message: str = ""

    @model_validator(mode="after")
    def _one_input(self) -> PushBody:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` and `config`")
        return self


class DeployBody(Body):
    version: int = Field(ge=1)
    dry_run: bool = Field(False, description="only compute the semantic diff; deploy nothing")


class RouteBody(Body):
    router: str | None = Field(None, description="the router's name (default: the gateway's default router)")
    data: dict[str, Any] = Field(description="the request, as the SDK's `route(data)` takes it")
    record: bool = Field(True, description="record the decision in the request history")


class RoutingTestBody(Body):
    router: str | None = None
    data: dict[str, Any]
    expected_rule: str | None = None


class HealthBody(Body):
    healthy: bool
    detail: str | None = None


class ExportedVersion(Body):
    version: int = Field(ge=1)
    content_hash: str
    message: str
    created_at: float
    entry: str
    sources: dict[str, str]
    compiled: dict[str, Any]

    @field_validator("sources")
    @classmethod
    def _relative_names(cls, sources: dict[str, str]) -> dict[str, str]:
        """They are written to a temporary directory to be checked: never outside it."""
        for name in sources:
            if not (STDLIB_NAME.fullmatch(name) or _relative(name)):
                raise ValueError(f"{name!r} is not a source file's name: a relative path without `..`, "
                                 "or a standard-library module `<std.name>`")
        return sources


class ExportedDeployment(Body):
    version: int = Field(ge=1)
    deployed_at: float
    rolled_back: bool


class ExportedRouter(Body):
    name: str = Field(pattern=f"^{ROUTER_NAME}$")
    active_version: int | None
    versions: list[ExportedVersion]
    deployments: list[ExportedDeployment] = []

    @model_validator(mode="after")
    def _active_is_exported(self) -> ExportedRouter:
        if self.active_version is not None and self.active_version not in {v.version for v in self.versions}:
            raise ValueError(f"active_version {self.active_version} is not among the exported versions")
        return self


class ExportDocument(Body):
    format: Literal["routelang-registry"] = EXPORT_FORMAT
    format_version: Literal[1] = 1
    exported_at: float | None = None
    routers: list[ExportedRouter]


# ---- the models: answers ----------------------------------------------------------------

class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Answer):
    message: str
    type: str
    param: str | None
    code: str
    diagnostics: list[dict[str, Any]] | None = Field(None, description="the checker's findings (push, import)")


class ErrorBody(Answer):
    error: ErrorDetail


class RouterSummary(Answer):
    name: str
    active_version: int | None
    latest_version: int | None
    served: bool = Field(description="this gateway serves the router now")


class RouterList(Answer):
    object: Literal["list"] = "list"
    data: list[RouterSummary]


class Deployment(Answer):
    version: int
    deployed_at: float
    rolled_back: bool


class RouterDetail(RouterSummary):
    versions: int
    deployments: list[Deployment]
    config: dict[str, Any] = Field(description="the active version's compiled config (the latest's before a deploy)")


class VersionSummary(Answer):
    router: str
    version: int
    content_hash: str
    message: str
    created_at: float
    active: bool


class VersionList(Answer):
    object: Literal["list"] = "list"
    router: str
    active_version: int | None
    data: list[VersionSummary]


class VersionDetail(VersionSummary):
    entry: str
    sources: dict[str, str]
    compiled: dict[str, Any]


class Pushed(VersionSummary):
    created: bool = Field(description="false: identical content was already this version")
    warnings: list[dict[str, Any]]
    warnings_text: str


class DiffSummary(Answer):
    text: str
    changes: list[dict[str, Any]]
    more_changes: list[dict[str, Any]]
    exact: bool
    caveats: list[str]


class Deployed(Answer):
    router: str
    version: int
    previous_version: int | None
    deployed: bool = Field(description="false: a dry run, or the version was already active")
    diff: DiffSummary | None = Field(description="from the previous active version; null when there was none")


class RolledBack(Answer):
    router: str
    from_version: int
    to_version: int


class Deleted(Answer):
    router: str
    deleted: Literal[True] = True


class RuleList(Answer):
    object: Literal["list"] = "list"
    router: str
    version: int
    data: list[dict[str, Any]]


class TargetOut(Answer):
    provider: str
    model_name: str
    endpoint: str
    weight: float
    label: str | None
    timeout_ms: int | None
    retry_count: int | None
    function_name: str | None
    request_class: str | None
    headers: list[str] | None = Field(description="the names of the target's headers; never their values")
    is_shadow: bool
    name: str | None = Field(None, description="the target's name in the .route file; null when it has none")


class MatchedRule(Answer):
    name: str
    priority: int
    strategy: str


class Routed(Answer):
    router: str
    version: int | None
    matched_rule: MatchedRule | None
    selected_targets: list[TargetOut] = Field(description="what the strategy picked, then the shadows "
                                                          "(the SDK's `selected_targets`)")
    attempts: list[TargetOut] = Field(description="the order the gateway would try targets in, failover included")
    shadows: list[TargetOut]
    reason: str
    unavailable: bool = Field(description="the rule matched but no target may be tried (breakers, health, drain)")
    request_id: str | None = Field(description="the history row recorded for this decision")


class ConditionOut(Answer):
    field: str
    operator: str
    value: Any = None
    words: str = Field(description="the condition as `routelang explain` words it")
    actual: Any = None
    held: bool


class RuleReport(Answer):
    name: str
    priority: int
    matched: bool = Field(description="the rule's whole condition holds for the request")
    selected: bool = Field(description="the rule that routes the request (the first matching, by priority)")
    conditions: list[ConditionOut]


class RoutingTested(Routed):
    rules: list[RuleReport] = Field(description="every enabled rule in evaluation order")
    expected_rule: str | None
    passed: bool | None


class RequestRow(Answer):
    id: str
    time: float
    router: str
    version: int | None
    rule: str | None
    targets: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    status: str
    latency_ms: float | None
    ttft_ms: float | None
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None
    split_label: str | None
    sticky_key_hash: str | None
    client_key_id: str | None
    http_status: int | None = Field(None, description="served by the gateway: the HTTP status of its answer")
    error: str | None = Field(None, description="served by the gateway: its error code, if any")
    matched_rule: str | None
    selected_target: str | None


class RequestList(Answer):
    object: Literal["list"] = "list"
    router: str
    data: list[RequestRow]


class ImportedRouter(Answer):
    name: str
    created_versions: list[int]
    existing_versions: list[int]
    active_version: int | None
    deployed: bool


class Imported(Answer):
    routers: list[ImportedRouter]


class TargetState(Answer):
    router: str
    target: str
    drained: bool
    healthy: bool | None = Field(description="the last probe or pushed report; null before any")
    health_detail: str | None
    selectable: bool = Field(description="neither drained nor unhealthy")


class ExportAnswer(ExportDocument):
    """The export as answered (the same document POST /api/import takes)."""


# ---- the table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str                       # aiohttp's form, below /api: /routers/{name}
    handler: str                    # the Admin method
    summary: str
    answer: type[BaseModel]
    body: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()    # beyond 400, 401, 403 and 503 (the registry unusable), which every one may give
    query: tuple[str, ...] = ()


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/routers", "list_routers", "Every router of the registry", RouterList, errors=(409,)),
    Endpoint("GET", "/routers/{name}", "get_router", "A router: its versions, deployments and config",
             RouterDetail, errors=(404, 409)),
    Endpoint("DELETE", "/routers/{name}", "delete_router",
             "Delete a router: every version, deployment and its request history", Deleted, errors=(404, 409)),
    Endpoint("GET", "/routers/{name}/versions", "list_versions", "The versions of a router", VersionList,
             errors=(404, 409)),
    Endpoint("POST", "/routers/{name}/versions", "push", "Push a new version (checked as `routelang push`)",
             Pushed, body=PushBody, status=201, errors=(409, 413, 422)),
    Endpoint("GET", "/routers/{name}/versions/{version}", "get_version", "One stored version", VersionDetail,
             errors=(404, 409)),
    Endpoint("POST", "/routers/{name}/deploy", "deploy", "Deploy a version; the answer has the semantic diff",
             Deployed, body=DeployBody, errors=(404, 409, 422)),
    Endpoint("POST", "/routers/{name}/rollback", "rollback", "Make the previously deployed version active again",
             RolledBack, errors=(404, 409)),
    Endpoint("GET", "/routers/{name}/rules", "rules", "The rules of the active (else latest) version", RuleList,
             errors=(404, 409)),
    Endpoint("GET", "/routers/{name}/requests", "list_requests", "The request history, newest first",
             RequestList, errors=(404, 409), query=("limit",)),
    Endpoint("GET", "/requests/{id}", "get_request", "One request of the history", RequestRow, errors=(404, 409)),
    Endpoint("POST", "/route", "route", "The routing decision for a request (nothing is sent upstream)", Routed,
             body=RouteBody, errors=(404, 409, 413, 422)),
    Endpoint("POST", "/routing/test", "routing_test", "The decision with each condition of each rule",
             RoutingTested, body=RoutingTestBody, errors=(404, 409, 413, 422)),
    Endpoint("GET", "/export", "export", "The whole registry: every router, version and deployment",
             ExportAnswer, errors=(409,)),
    Endpoint("POST", "/import", "import_", "Import an export (idempotent: versions are matched by content)",
             Imported, body=ExportDocument, errors=(409, 413, 422)),
    Endpoint("POST", "/targets/{router}/{target}/drain", "drain", "Take a target out of selection by hand",
             TargetState, errors=(404,)),
    Endpoint("POST", "/targets/{router}/{target}/undrain", "undrain", "Put a drained target back", TargetState,
             errors=(404,)),
    Endpoint("POST", "/targets/{router}/{target}/health", "push_health", "Report a target's health from outside",
             TargetState, body=HealthBody, errors=(404,)),
)

PARAMETERS = {
    "name": {"type": "string", "pattern": f"^{ROUTER_NAME}$"},
    "router": {"type": "string", "pattern": f"^{ROUTER_NAME}$"},
    "version": {"type": "integer", "minimum": 1},
    "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "target": {"type": "string", "minLength": 1},
}
QUERY = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}}


def _regex(path: str) -> re.Pattern:
    return re.compile("^/api" + re.sub(r"\{[a-z]+\}", "[^/]+", path) + "$")


PATTERNS = [(_regex(e.path), e.method) for e in ENDPOINTS] + [(re.compile("^/api/openapi.json$"), "GET")]


# ---- the handlers ------------------------------------------------------------------------

Handler = Callable[[web.Request, Any], Awaitable[tuple[int, BaseModel]]]


class Admin:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routelang-admin")
        self._store: Store | None = None     # the worker thread's own connection
        # Runtime routers of registry routers not served here, by content hash (a router deleted and pushed
        # again elsewhere starts at version 1 again: its number says nothing).
        self._runtimes: dict[str, Any] = {}
        self._openapi = orjson.dumps(openapi())

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        for e in ENDPOINTS:
            app.router.add_route(e.method, e.path, self._endpoint(e))
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_route("*", "/{tail:.*}", self.unknown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, _app: web.Application) -> None:
        if self._store is not None:
            await self._in_registry(lambda store: store.close())
        self._pool.shutdown(wait=True)

    # ---- the plumbing ---------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Admin key first; then every failure is an OpenAI-shaped error, a bug a logged 500."""
        try:
            if request.path != "/api/openapi.json":
                self._authorise(request)
            return await handler(request)
        except AdminError as exc:
            return _error(exc.kind, exc.message, exc.param, **exc.extra)
        except RegistryError as exc:  # the database locked past its timeout, down, unreadable, too new
            return _error(errors.REGISTRY_UNAVAILABLE, f"the registry cannot be used now: {exc}")
        except Exception as exc:  # noqa: BLE001 (a bug must still get an answer, and a log line to find it)
            self.gateway.log.write("bug", path=request.path, error=f"{type(exc).__name__}: {exc}",
                                   traceback=traceback.format_exc(limit=8))
            return _error(errors.INTERNAL, f"internal error ({type(exc).__name__}); see the gateway log")

    def _authorise(self, request: web.Request) -> None:
        """401 without a valid key; 403 for a client key (--api-keys) that is not an admin key."""
        header = request.headers.get("Authorization")
        problem = auth.check(header, self.gateway.admin_keys)
        if problem is None:
            return
        clients = self.gateway.api_keys
        if problem[0] is errors.INVALID_API_KEY and clients is not None and auth.check(header, clients) is None:
            raise AdminError(errors.NOT_ADMIN, "this endpoint needs an admin key (--admin-keys); "
                                               "a client key is not one")
        raise AdminError(*problem)

    def _endpoint(self, e: Endpoint):
        method: Handler = getattr(self, e.handler)

        async def handle(request: web.Request) -> web.Response:
            body = None
            if e.body is not None:
                body = await _parse(request, e.body)
            status, answer = await method(request, body)
            return web.Response(status=status, body=orjson.dumps(answer.model_dump(mode="json")),
                                content_type=JSON)

        return handle

    async def _in_registry(self, work: Callable[[Store], Any]) -> Any:
        """`work(store)` in the worker thread, on its own connection to the gateway's registry."""
        if self.gateway.store is None:
            raise AdminError(errors.NO_REGISTRY, "this gateway serves a file, not a registry: the registry "
                                                 "endpoints need `routelang serve --registry PATH`")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, work)

    def _run(self, work: Callable[[Store], Any]) -> Any:
        from ..registry.store import Store

        if self._store is None:
            self._store = Store(self.gateway.store.location)
        return work(self._store)

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type=JSON)

    async def unknown(self, request: web.Request) -> web.Response:
        if any(p.match(request.path) for p, _m in PATTERNS):
            return _error(errors.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}")
        return _error(errors.NOT_FOUND, f"no endpoint {request.method} {request.path}")

    # ---- routers and versions -------------------------------------------------------------

    def _served(self, name: str) -> bool:
        return self.gateway.loaded_for(name) is not None

    async def list_routers(self, _request, _body) -> tuple[int, BaseModel]:
        rows = await self._in_registry(lambda store: store.routers())
        return 200, RouterList(data=[RouterSummary(name=r["name"], active_version=r["active_version"],
                                                   latest_version=r["latest"], served=self._served(r["name"]))
                                     for r in rows])

    async def get_router(self, request, _body) -> tuple[int, BaseModel]:
        name = request.match_info["name"]

        def work(store: Store) -> RouterDetail:
            active = _active(store, name)
            versions = store.versions(name)
            return RouterDetail(name=name, active_version=active, latest_version=versions[-1]["version"],
                                served=False, versions=len(versions),
                                deployments=[Deployment(**d) for d in store.deployments(name)],
                                config=store.version(name).compiled)

        detail = await self._in_registry(work)
        detail.served = self._served(name)
        return 200, detail

    async def delete_router(self, request, _body) -> tuple[int, BaseModel]:
        name = request.match_info["name"]

        def work(store: Store) -> None:
            _active(store, name)
            store.delete(name)

        await self._in_registry(work)
        return 200, Deleted(router=name)

    async def list_versions(self, request, _body) -> tuple[int, BaseModel]:
        name = request.match_info["name"]

        def work(store: Store) -> VersionList:
            active = _active(store, name)
            return VersionList(router=name, active_version=active,
                               data=[VersionSummary(**v, active=v["version"] == active)
                                     for v in store.versions(name)])

        return 200, await self._in_registry(work)

    async def get_version(self, request, _body) -> tuple[int, BaseModel]:
        name, number = request.match_info["name"], _int(request.match_info["version"], "version")

        def work(store: Store) -> VersionDetail:
            active = _active(store, name)
            v = _version(store, name, number)
            return VersionDetail(**v.summary(), active=v.version == active, entry=v.entry, sources=v.sources,
                                 compiled=v.compiled)

        return 200, await self._in_registry(work)

    async def push(self, request, body: PushBody) -> tuple[int, BaseModel]:
        """Checked exactly as `routelang push` checks a file (artifacts._finish): errors stop it (422,
        the diagnostics in the error), warnings are returned with the new version."""
        from ..registry.artifacts import build_text
        from ..registry.store import check_name

        name = request.match_info["name"]

        def work(store: Store) -> Pushed:
            try:
                check_name(name)
            except RegistryError as exc:
                raise AdminError(errors.INVALID_REQUEST, str(exc), "name") from None
            entry = body.filename or f"{name}.route"
            if body.source is not None:
                built = build_text(body.source, entry)
            else:
                built = _built_from_config(body.config, name)
            rendered = built.result.render(built.problems) if built.problems else ""
            found = [d.to_json() for d in built.problems]
            if not built.ok:
                raise AdminError(errors.DOES_NOT_CHECK, f"not pushed: the router does not check clean\n{rendered}",
                                 diagnostics=found)
            version, created = store.push(name, built.entry, built.sources, built.compiled, body.message,
                                          from_config=body.config is not None)
            active = store.active_version(name)
            return Pushed(**version.summary(), active=version.version == active, created=created, warnings=found,
                          warnings_text=rendered)

        pushed = await self._in_registry(work)
        return (201 if pushed.created else 200), pushed

    async def deploy(self, request, body: DeployBody) -> tuple[int, BaseModel]:
        name = request.match_info["name"]

        def work(store: Store) -> Deployed:
            active = _active(store, name)
            target = _version(store, name, body.version)
            if active == body.version:
                return Deployed(router=name, version=body.version, previous_version=active, deployed=False,
                                diff=None)
            summary = None if active is None else _diff(store.version(name, active), target)
            if not body.dry_run:
                store.deploy(name, body.version)
            return Deployed(router=name, version=body.version, previous_version=active,
                            deployed=not body.dry_run, diff=summary)

        return 200, await self._in_registry(work)

    async def rollback(self, request, _body) -> tuple[int, BaseModel]:
        name = request.match_info["name"]

        def work(store: Store) -> RolledBack:
            _active(store, name)
            try:
                current, previous = store.rollback(name)
            except RegistryError as exc:
                raise AdminError(errors.NOTHING_TO_ROLL_BACK, str(exc)) from None
            return RolledBack(router=name, from_version=current, to_version=previous)

        return 200, await self._in_registry(work)

    async def rules(self, request, _body) -> tuple[int, BaseModel]:
        name = request.match_info["name"]

        def work(store: Store) -> RuleList:
            _active(store, name)
            v = store.version(name)
            return RuleList(router=name, version=v.version, data=list(v.compiled.get("rules", [])))

        return 200, await self._in_registry(work)

    # ---- history ----------------------------------------------------------------------------

    async def list_requests(self, request, _body) -> tuple[int, BaseModel]:
        from ..registry import history

        name = request.match_info["name"]
        limit = _int(request.query.get("limit", "100"), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise AdminError(errors.INVALID_REQUEST, f"limit must be from 1 to {MAX_LIMIT}", "limit")

        def work(store: Store) -> RequestList:
            _active(store, name)
            history.shared_writer(store.location).flush()   # what this gateway recorded is listed too
            return RequestList(router=name, data=[RequestRow(**r) for r in store.list_requests(name, limit)])

        return 200, await self._in_registry(work)

    async def get_request(self, request, _body) -> tuple[int, BaseModel]:
        from ..registry import history

        request_id = request.match_info["id"]

        def work(store: Store) -> RequestRow:
            history.shared_writer(store.location).flush()
            found = store.get_request(request_id)
            if found is None:
                raise AdminError(errors.NOT_FOUND_REQUEST, f"no request {request_id!r} in the history", "id")
            found.pop("capture", None)  # captured user text stays in the registry file (`routelang request ID`)
            return RequestRow(**found)

        return 200, await self._in_registry(work)

    # ---- decisions ----------------------------------------------------------------------------

    async def _decider(self, name: str | None) -> tuple[str, int | None, Any, plan.Loaded | None]:
        """(router name, version, runtime router, the Loaded when this gateway serves it). A registry
        router this gateway does not serve is decided by its active version, as the SDK decides locally."""
        loaded = self.gateway.loaded_for(name)
        if loaded is not None:
            return loaded.name, loaded.version, loaded.router, loaded
        if name is None or self.gateway.store is None:
            raise AdminError(errors.NOT_SERVED, f"this gateway does not serve a router {name!r}", "router")

        def work(store: Store) -> tuple[int, Any]:
            active = _active(store, name)
            if active is None:
                raise AdminError(errors.NOT_DEPLOYED, f"router {name!r} has no deployed version "
                                                      f"(POST /api/routers/{name}/deploy)", "router")
            digest = next(v["content_hash"] for v in store.versions(name) if v["version"] == active)
            runtime = self._runtimes.get(digest)
            if runtime is None:
                from ..loader import make_router, plan_from_json
                from ..runtime.model import ConfigError

                try:
                    runtime = make_router(plan_from_json(store.version(name, active).compiled))
                except ConfigError as exc:
                    raise AdminError(errors.DOES_NOT_CHECK, f"router {name!r} version {active} does not load "
                                                            f"here: {exc}", "router") from None
                self._runtimes[digest] = runtime
            return active, runtime

        version, runtime = await self._in_registry(work)
        return name, version, runtime, None

    def _decide(self, runtime, loaded: plan.Loaded | None, data: dict) -> tuple[RouteResult, list, bool]:
        """(the SDK's RouteResult, the gateway's attempt order, unavailable). Served: through `plan`
        and the gateway's State (breakers, health, drains); otherwise the runtime alone."""
        try:
            if loaded is None:
                result = runtime.route(data)
                return result, list(result.attempts), False
            with about(loaded):  # the State calls are about this router (a gateway may serve several)
                decision = plan.decide(loaded, data, self.gateway.state)
        except RequestError as exc:
            raise AdminError(errors.INVALID_REQUEST, f"the request cannot be routed: {exc}", "data") from None
        # attempts[:picked] are the strategy's pick; the rest is the failover the gateway adds.
        picked = decision.attempts[:max(decision.picked, 1)]
        result = RouteResult(decision.rule, Selection(tuple(picked), tuple(decision.shadows)), decision.reason)
        return result, decision.attempts, decision.unavailable

    async def route(self, _request, body: RouteBody) -> tuple[int, BaseModel]:
        return 200, await self._routed(body.router, body.data, body.record, Routed)

    async def routing_test(self, _request, body: RoutingTestBody) -> tuple[int, BaseModel]:
        answer = await self._routed(body.router, body.data, False, RoutingTested, expected=body.expected_rule)
        return 200, answer

    async def _routed(self, router: str | None, data: dict, record: bool, model: type[Routed],
                      expected: str | None = None) -> Routed:
        from ..registry import history
        from ..registry.sdk import history_record

        name, version, runtime, loaded = await self._decider(router)
        started = time.perf_counter()   # the decision's latency: not the lookup or compiling of a version
        result, attempts, unavailable = self._decide(runtime, loaded, data)
        elapsed_ms = (time.perf_counter() - started) * 1000
        request_id = None
        store = self.gateway.store
        if record and store is not None:
            row = history_record(name, version, data, result, elapsed_ms)
            history.shared_writer(store.location).record(row)
            request_id = row.id
        rule = result.matched_rule
        fields: dict[str, Any] = {
            "router": name, "version": version, "reason": result.explanation, "unavailable": unavailable,
            "matched_rule": None if rule is None else MatchedRule(name=rule.name, priority=rule.priority,
                                                               strategy=rule.strategy),
            "selected_targets": [_target(t) for t in result.selected_targets],
            "attempts": [_target(t) for t in attempts], "shadows": [_target(t) for t in result.shadows],
            "request_id": request_id}
        if model is RoutingTested:
            fields.update(rules=_rule_reports(runtime, data, rule), expected_rule=expected,
                          passed=None if expected is None else rule is not None and rule.name == expected)
        return model(**fields)

    # ---- export and import --------------------------------------------------------------------

    async def export(self, _request, _body) -> tuple[int, BaseModel]:
        def work(store: Store) -> ExportAnswer:
            routers = []
            for r in store.routers():
                versions = [store.version(r["name"], v["version"]) for v in store.versions(r["name"])]
                routers.append(ExportedRouter(
                    name=r["name"], active_version=r["active_version"],
                    versions=[ExportedVersion(version=v.version, content_hash=v.content_hash, message=v.message,
                                              created_at=v.created_at, entry=v.entry, sources=v.sources,
                                              compiled=v.compiled) for v in versions],
                    deployments=[ExportedDeployment(**d) for d in store.deployments(r["name"])]))
            return ExportAnswer(exported_at=time.time(), routers=routers)

        return 200, await self._in_registry(work)

    async def import_(self, _request, body: ExportDocument) -> tuple[int, BaseModel]:
        """Every version is checked again like a push before anything is written; then pushed (content
        already there is matched, not duplicated) and the exported active version deployed unless it is
        active already. Importing the same document twice changes nothing the second time."""
        from ..registry.artifacts import build_stored
        from ..registry.store import check_name

        def work(store: Store) -> Imported:
            builds = []
            for r in body.routers:
                try:
                    check_name(r.name)
                except RegistryError as exc:
                    raise AdminError(errors.INVALID_REQUEST, str(exc), "routers") from None
                for v in sorted(r.versions, key=lambda v: v.version):
                    if v.entry not in v.sources:
                        raise AdminError(errors.INVALID_REQUEST, f"router {r.name!r} version {v.version}: its "
                                                                 f"entry {v.entry!r} is not among its sources")
                    built = _safe_build(lambda v=v: build_stored(v.entry, v.sources))
                    if not built.ok:
                        raise AdminError(errors.DOES_NOT_CHECK,
                                         f"not imported: router {r.name!r} version {v.version} does not check "
                                         f"clean\n{built.result.render(built.problems)}",
                                         diagnostics=[d.to_json() for d in built.problems])
                    builds.append((r, v, built))
            local: dict[tuple[str, int], int] = {}
            created: dict[str, list[int]] = {r.name: [] for r in body.routers}
            existing: dict[str, list[int]] = {r.name: [] for r in body.routers}
            for r, v, built in builds:
                version, new = store.push(r.name, built.entry, built.sources, built.compiled, v.message)
                local[(r.name, v.version)] = version.version
                (created if new else existing)[r.name].append(version.version)
            out = []
            for r in body.routers:
                deployed = False
                active = store.active_version(r.name) if r.versions else None
                if r.active_version is not None:
                    wanted = local[(r.name, r.active_version)]
                    if active != wanted:
                        store.deploy(r.name, wanted)
                        active, deployed = wanted, True
                out.append(ImportedRouter(name=r.name, created_versions=created[r.name],
                                          existing_versions=existing[r.name], active_version=active,
                                          deployed=deployed))
            return Imported(routers=out)

        return 200, await self._in_registry(work)

    # ---- targets ------------------------------------------------------------------------------

    def _target_of(self, request: web.Request) -> tuple[plan.Loaded, Any]:
        router, name = request.match_info["router"], request.match_info["target"]
        loaded = self.gateway.loaded_for(router)
        if loaded is None:
            raise AdminError(errors.NOT_SERVED, f"this gateway does not serve a router {router!r}", "router")
        for target in loaded.targets.values():
            if plan.target_name(target) == name:
                return loaded, target
        known = ", ".join(sorted(plan.target_name(t) for t in loaded.targets.values()))
        raise AdminError(errors.NOT_FOUND_TARGET, f"router {router!r} has no target {name!r} (its targets: {known})",
                         "target")

    def _target_state(self, loaded: plan.Loaded, target) -> TargetState:
        state = self.gateway.state
        view = state.view(target)
        return TargetState(router=loaded.name, target=plan.target_name(target), drained=state.drained(target.key),
                           healthy=view["healthy"], health_detail=view["health_detail"],
                           selectable=state.healthy(target.key))

    def _set_drained(self, request: web.Request, drained: bool) -> TargetState:
        loaded, target = self._target_of(request)
        gw = self.gateway
        gw.state.set_drained(target.key, drained)
        gw.metrics.drained.labels(plan.target_name(target)).set(1 if drained else 0)
        gw.log.write("drain" if drained else "undrain", router=loaded.name, target=plan.target_name(target))
        return self._target_state(loaded, target)

    async def drain(self, request, _body) -> tuple[int, BaseModel]:
        return 200, self._set_drained(request, True)

    async def undrain(self, request, _body) -> tuple[int, BaseModel]:
        return 200, self._set_drained(request, False)

    async def push_health(self, request, body: HealthBody) -> tuple[int, BaseModel]:
        loaded, target = self._target_of(request)
        gw = self.gateway
        gw.state.set_health(target.key, body.healthy, body.detail, pushed=True)
        gw.metrics.healthy.labels(plan.target_name(target)).set(1 if body.healthy else 0)
        gw.log.write("health", router=loaded.name, target=plan.target_name(target), healthy=body.healthy,
                     detail=body.detail, pushed=True)
        return 200, self._target_state(loaded, target)


# ---- helpers --------------------------------------------------------------------------------

def _error(kind: errors.Kind, message: str, param: str | None = None, **extra: Any) -> web.Response:
    return web.Response(status=kind.status, body=errors.error_bytes(kind, message, param, **extra),
                        content_type=JSON)


async def _parse(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise AdminError(errors.TOO_LARGE, "the body is too large") from None
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise AdminError(errors.INVALID_JSON, f"the body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise AdminError(errors.INVALID_REQUEST, f"invalid body: {message}", where) from None


def _int(text: str, param: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AdminError(errors.INVALID_REQUEST, f"{param} must be an integer, not {text!r}", param) from None


def _active(store: Store, name: str) -> int | None:
    """The router's active version; 404 when there is no such router."""
    try:
        return store.active_version(name)
    except RegistryError as exc:
        raise AdminError(errors.NOT_FOUND_ROUTER, str(exc), "name") from None


def _version(store: Store, name: str, number: int):
    try:
        return store.version(name, number)
    except RegistryError as exc:
        raise AdminError(errors.NOT_FOUND_VERSION, str(exc), "version") from None


def _safe_build(build: Callable[[], Any]):
    """A build whose input cannot be read as a router (an unreadable import, say) is a 422, not a 500."""
    from ..source import SourceError

    try:
        return build()
    except SourceError as exc:
        raise AdminError(errors.DOES_NOT_CHECK, f"not checked: {exc}") from None


def _built_from_config(config: dict, name: str):
    from ..importer import ImportProblem
    from ..registry.artifacts import build_config

    config = {"name": name, **config}
    try:
        return build_config(config, name)
    except ImportProblem as exc:
        raise AdminError(errors.DOES_NOT_CHECK, f"not pushed: not a valid config: {exc}", "config",
                         diagnostics=[{"path": list(map(str, p)), "message": m}
                                      for p, m in getattr(exc, "problems", [])]) from None


def _diff(old, new) -> DiffSummary:
    """The semantic diff between two stored versions (as `routelang deploy` prints it)."""
    from ..diff import diff, render_json, render_text
    from ..registry.artifacts import compile_stored

    before, after = compile_stored(old.entry, old.sources), compile_stored(new.entry, new.sources)
    for v, result in ((old, before), (new, after)):
        if not result.ok:  # a routelang upgrade may reject what an older one accepted
            raise AdminError(errors.DOES_NOT_CHECK, f"version {v.version} no longer compiles:\n{result.render()}",
                             diagnostics=[d.to_json() for d in result.diagnostics])
    outcome = diff(before.router, after.router)
    return DiffSummary(text=render_text(outcome), **json.loads(render_json(outcome)))


def _target(target) -> TargetOut:
    """A target as the admin API shows it: never its header values (they hold secrets)."""
    data = target.to_dict()
    data["headers"] = sorted(target.headers) if target.headers else None
    return TargetOut(**data)


def _rule_reports(runtime, data: dict, selected) -> list[RuleReport]:
    """Each enabled rule, in evaluation order: whether it matches, and each of its conditions with
    `routelang explain`'s words, the request's value and whether it held."""
    from .. import ir
    from ..explain import compare_words
    from ..runtime.operators import evaluate
    from ..runtime.testing import jsonable

    out = []
    for rule in runtime.plan.order:
        conditions = [ConditionOut(field=leaf["field"], operator=leaf["operator"], value=leaf.get("value"),
                                   words=compare_words(ir.Compare(field=leaf["field"], operator=leaf["operator"],
                                                                  value=leaf.get("value"),
                                                                  description=leaf.get("description"))),
                                   actual=jsonable(actual), held=held)
                      for leaf, actual, held in runtime.condition_report(rule, data)]
        out.append(RuleReport(name=rule.name, priority=rule.priority, matched=evaluate(rule.when, data),
                              selected=selected is not None and rule.name == selected.name, conditions=conditions))
    return out


# ---- the OpenAPI document -----------------------------------------------------------------

def _operation_id(e: Endpoint) -> str:
    return e.handler.rstrip("_")


def openapi() -> dict:
    """OpenAPI 3.1 for ENDPOINTS, the schemas generated from the same pydantic models."""
    bodies = [(e.body, "validation") for e in ENDPOINTS if e.body is not None]
    answers = [(m, "serialization") for m in {e.answer for e in ENDPOINTS} | {ErrorBody}]
    keys, top = models_json_schema(bodies + answers, ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict:
        return keys[(model, mode)]

    def error(description: str) -> dict:
        return {"description": description, "content": {JSON: {"schema": ref(ErrorBody, "serialization")}}}

    paths: dict[str, dict] = {}
    for e in ENDPOINTS:
        path = "/api" + e.path
        op: dict[str, Any] = {"operationId": _operation_id(e), "summary": e.summary, "security": [{"adminKey": []}]}
        params = [{"name": p, "in": "path", "required": True, "schema": PARAMETERS[p]}
                  for p in re.findall(r"\{([a-z]+)\}", e.path)]
        params += [{"name": q, "in": "query", "required": False, "schema": QUERY[q]} for q in e.query]
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(e.body, "validation")}}}
        responses = {str(e.status): {"description": "done", "content": {JSON: {"schema": ref(e.answer,
                                                                                            "serialization")}}}}
        if e.handler == "push":  # identical content: the existing version, 200
            responses["200"] = responses["201"]
        described = {400: "bad parameters or body", 401: "no admin key, or an unknown key",
                     403: "a client key, not an admin key", 404: "no such router, version, request or target",
                     409: "the registry's state does not allow it (no registry, not deployed, nothing to roll "
                          "back to)", 413: "the body is too large", 422: "the router does not check clean",
                     503: "the registry cannot be used now (locked past the busy timeout, unreadable)"}
        for status in (400, 401, 403, *e.errors, 503):
            responses[str(status)] = error(described[status])
        op["responses"] = responses
        paths.setdefault(path, {})[e.method.lower()] = op
    paths["/api/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                          "responses": {"200": {"description": "OpenAPI 3.1",
                                                                "content": {JSON: {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "routelang admin API", "version": __version__,
                 "description": "The registry and the gateway's targets over HTTP (docs/registry.md)."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer",
                                                        "description": "a key of --admin-keys"}}},
    }
