"""The admin API's aiohttp sub-application: the admin key first, then each
row of the endpoint table routed to its handler, with every failure answered
as an OpenAI-shaped error (a bug: a logged 500)."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from ...registry.store import RegistryError
from .. import auth, errors
from ..responses import JSON, answer_then_close, body_late
from .common import AdminError, Context, error_response, parse
from .endpoints import ENDPOINTS, PATTERNS, Endpoint
from .openapi import openapi
from .worker import RegistryWorker

if TYPE_CHECKING:
    from ...registry.store import Store
    from ..logs import JsonLog
    from ..metrics import Metrics
    from ..routers import Source
    from ..state import State
    from ..tenants import Tenants


class Admin:
    """The admin API of a gateway serving `routers`; `store`: its registry (None: the
    registry endpoints answer 409 no_registry). `admin_keys` may call it; a client key
    (`api_keys`) is told it is not an admin key. A body must arrive within `read_timeout_s`."""

    def __init__(self, routers: Source, state: State, metrics: Metrics, log: JsonLog, store: Store | None,
                 api_keys: auth.Keys | None, admin_keys: auth.Keys, tenants: Tenants | None,
                 read_timeout_s: float):
        worker = None if store is None else RegistryWorker(store.location)
        self.context = Context(routers, state, metrics, log, store, worker, tenants)
        self.read_timeout_s = read_timeout_s   # a body that does not arrive in time: a 408
        self.log = log
        self.api_keys = api_keys
        self.admin_keys = admin_keys
        self._openapi = orjson.dumps(openapi())

    def application(self) -> web.Application:
        """The sub-application to mount at /api."""
        app = web.Application(middlewares=[self._guard])
        for e in ENDPOINTS:
            if e.prefix == "/api":
                app.router.add_route(e.method, e.path, self._endpoint(e))
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_route("*", "/{tail:.*}", self.unknown)
        app.on_cleanup.append(self._cleanup)
        return app

    def root_routes(self) -> list[web.RouteDef]:
        """The endpoints served at the gateway's root (/health/detailed), guarded as the sub-application."""
        routes = []
        for e in ENDPOINTS:
            if e.prefix == "":
                handle = self._endpoint(e)

                async def guarded(request: web.Request, handle=handle) -> web.StreamResponse:
                    return await self._guard(request, handle)

                routes.append(web.route(e.method, e.path, guarded))
        return routes

    async def _cleanup(self, _app: web.Application) -> None:
        if self.context.worker is not None:
            await self.context.worker.close()

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Admin key first; then every failure is an OpenAI-shaped error, a bug a logged 500."""
        try:
            if request.path != "/api/openapi.json":
                self._authorise(request)
            return await handler(request)
        except AdminError as exc:
            return error_response(exc.kind, exc.message, exc.param, **exc.extra)
        except RegistryError as exc:   # the database locked past its timeout, down, unreadable, too new
            return error_response(errors.REGISTRY_UNAVAILABLE, f"the registry cannot be used now: {exc.message}")
        except Exception as exc:  # noqa: BLE001 (a bug must still get an answer, and a log line to find it)
            self.log.write("bug", path=request.path, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc(limit=8))
            return error_response(errors.INTERNAL, f"internal error ({type(exc).__name__}); see the gateway log")

    def _authorise(self, request: web.Request) -> None:
        """401 without a valid key; 403 for a client key (--api-keys) that is not an admin key."""
        header = request.headers.get("Authorization")
        problem = auth.check(header, self.admin_keys)
        if problem is None:
            return
        clients = self.api_keys
        if problem[0] is errors.INVALID_API_KEY and clients is not None and auth.check(header, clients) is None:
            raise AdminError(errors.NOT_ADMIN, "this endpoint needs an admin key (--admin-keys); "
                                               "a client key is not one")
        raise AdminError(*problem)

    def _endpoint(self, e: Endpoint):
        context = self.context

        async def handle(request: web.Request) -> web.Response:
            body = None
            if e.body is not None:
                try:
                    body = await parse(request, e.body, self.read_timeout_s)
                except TimeoutError:
                    return await answer_then_close(request, error_response(
                        errors.REQUEST_TIMEOUT, body_late(self.read_timeout_s)))
            status, answer = await e.handler(context, request, body)
            return web.Response(status=status, body=orjson.dumps(answer.model_dump(mode="json")),
                                content_type=JSON)

        return handle

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type=JSON)

    async def unknown(self, request: web.Request) -> web.Response:
        if any(p.match(request.path) for p, _m in PATTERNS):
            return error_response(errors.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}")
        return error_response(errors.NOT_FOUND, f"no endpoint {request.method} {request.path}")
