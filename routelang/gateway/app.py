"""The HTTP surface: aiohttp handlers for the OpenAI endpoints, /routing,
/health and /metrics. Handlers parse, decide (through `plan`), hand over to
the executor, and write the headers, the metrics and the one log line.
`Endpoints` receives the parts it uses from the composition root (wiring.py)."""

from __future__ import annotations

import asyncio
import os
import traceback
from time import perf_counter
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from routelang.registry.store import ROUTER_NAME

from ..tenancy.keys import NotCached
from . import auth, errors, plan
from .adapters import fit
from .exchange import Exchange
from .health import conditions
from .logs import JsonLog, ms, now
from .metrics import CONTENT_TYPE, Metrics
from .recording import Recorder, Routed
from .request import KINDS, NOT_FORWARDED, ROUTER_HEADER, document
from .responses import JSON, answer_then_close, body_late, error, read_body, refusal
from .state import ROUTER, State, about
from .tenants import Refused as TenantRefused
from .tenants import Tenants, Ticket, nanos

if TYPE_CHECKING:
    from .executor import Executor
    from .routers import Source
    from .tracing import Tracing

MAX_BODY = 32 * 1024 * 1024  # images in chat messages make bodies large
ROUTER_PREFIX = "/r/{router:" + ROUTER_NAME.pattern + "}"   # /r/NAME/v1/chat/completions
ROUTED_PATHS = frozenset({*("/v1" + p for p in KINDS), "/v1/models", "/routing", "/routing/decide"})


def application(endpoints: Endpoints, admin: web.Application | None = None,
                admin_routes: list[web.RouteDef] = ()) -> web.Application:
    """The gateway's aiohttp application; `admin`: the admin API, mounted at /api, and `admin_routes`:
    its endpoints at the root (/health/detailed)."""
    app = web.Application(client_max_size=MAX_BODY)
    for prefix in ("", ROUTER_PREFIX):
        for path in KINDS:
            app.router.add_post(prefix + "/v1" + path, endpoints.completions)
        app.router.add_get(prefix + "/v1/models", endpoints.models)
        app.router.add_get(prefix + "/routing", endpoints.routing)
        app.router.add_post(prefix + "/routing/decide", endpoints.decide)
    app.router.add_get("/health", endpoints.liveness)
    app.router.add_get("/health/ready", endpoints.readiness)
    app.router.add_get("/metrics", endpoints.prometheus)
    app.router.add_routes(admin_routes)
    if admin is not None:
        app.add_subapp("/api", admin)
    app.router.add_route("*", "/{tail:.*}", endpoints.unknown)
    return app


class Endpoints:
    """The handlers of one config file's router or of a registry's deployed routers
    (`registry`: its path, shown in /routing). A request names its router by path
    (`/r/NAME/v1/...`) or by the `x-routelang-router` header, else gets the default
    one (docs/gateway.md)."""

    def __init__(self, routers: Source, state: State, executor: Executor, metrics: Metrics, log: JsonLog,
                 recorder: Recorder | None, api_keys: auth.Keys | None, registry: str | None, started: float,
                 tracing: Tracing | None = None, tenants: Tenants | None = None):
        self.routers = routers
        self.state = state
        self.executor = executor
        self.metrics = metrics
        self.log = log
        self.recorder = recorder
        self.api_keys = api_keys
        self.registry = registry
        self.serves_registry = registry is not None
        self.read_timeout_s = executor.settings.request_read_timeout_s
        self.started = started
        self.tracing = tracing   # None: no spans (one check per request)
        self.tenants = tenants

    def _router(self, request: web.Request) -> tuple[plan.Loaded | None, str | None]:
        """The router a request names (path, else header), else the default; and the name asked for."""
        name = request.match_info.get("router") or request.headers.get(ROUTER_HEADER)
        loaded = self.routers.get(name)
        if loaded is not None:
            ROUTER.set(loaded)  # for the State calls this request's task (and its shadows) makes
        return loaded, name

    def _no_router(self, ex: Exchange, name: str | None) -> web.Response:
        if name is None:
            return error(ex, errors.NOT_FOUND_ROUTER, self.routers.default_problem())
        served = ", ".join(r.name for r in self.routers.all()) or "none"
        return error(ex, errors.NOT_FOUND_ROUTER, f"no router {name!r} is served here (routers: {served})")

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.api_keys is None:
            return None
        try:
            auth.identify(request.headers.get("Authorization"), self.api_keys)
        except auth.Refused as refused:
            return refusal(refused)
        return None

    # ---- the OpenAI endpoints -----------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        start = perf_counter()
        ex = Exchange(id=request.headers.get("x-request-id") or os.urandom(12).hex(), path=_endpoint(request),
                      start=start)
        if self.tracing is not None:
            ex.span = self.tracing.request_span(request.headers, ex.path)
        routed = Routed()
        response: web.StreamResponse | None = None
        try:
            if self.api_keys is not None:
                try:
                    routed.client_key_id = auth.identify(request.headers.get("Authorization"), self.api_keys)
                except auth.Refused as refused:
                    response = refusal(refused)
                    return response
            if self.tenants is not None:
                authorization = request.headers.get("Authorization")
                try:
                    try:
                        routed.tenant_key = self.tenants.identify(authorization)
                    except NotCached:
                        routed.tenant_key = await self.tenants.look_up(authorization)
                except auth.Refused as refused:
                    response = refusal(refused)
                    return response
                routed.client_key_id = routed.tenant_key.id
            response = await self._complete(request, ex, routed)
            return response
        except asyncio.CancelledError:
            ex.status, ex.error = 499, "client_disconnected"
            raise
        except ConnectionResetError:
            ex.status, ex.error = 499, "client_disconnected"
            raise
        except Exception as exc:  # noqa: BLE001 (a bug must still get an answer, and a log line to find it)
            ex.error = "internal_error"
            self.log.write("bug", id=ex.id, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc(limit=8))
            response = error(ex, errors.INTERNAL, f"internal error ({type(exc).__name__}); see the gateway log")
            return response
        finally:
            self._account(ex, response, routed)

    async def _complete(self, request: web.Request, ex: Exchange, routed: Routed) -> web.StreamResponse:
        loaded, name = self._router(request)  # this request runs on this version, whatever reloads meanwhile
        if loaded is None:
            return self._no_router(ex, name)
        routed.loaded = loaded
        ex.router, ex.version = loaded.name, loaded.version
        try:
            raw = await read_body(request, self.read_timeout_s)
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return error(ex, errors.INVALID_JSON, f"the body is not valid JSON: {exc}")
        except web.HTTPRequestEntityTooLarge:
            return error(ex, errors.TOO_LARGE, f"the body is larger than {MAX_BODY} bytes")
        except TimeoutError:
            return await self._body_timed_out(request, ex)
        if self.recorder is not None and self.recorder.capture:
            routed.body = raw
            ex.captured = []
        if not isinstance(body, dict):
            return error(ex, errors.INVALID_REQUEST, "the body must be a JSON object")
        if ex.span is not None:
            self.tracing.named(ex.span, ex.path, body)
        doc = document(body, request.headers.items(), ex.path)
        key = routed.tenant_key
        if key is not None:  # the key says who is asking: rules route on workspace.id and agent.id
            doc["workspace"] = {"id": key.workspace}
            if key.agent is not None:
                doc["agent"] = {"id": key.agent}
        ex.stream = doc["request"]["stream"] and ex.path != "/v1/embeddings"
        if ex.stream:
            options = body.get("stream_options")
            ex.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        decision = plan.decide(loaded, doc, self.state)
        routed.decision, routed.doc = decision, doc
        if decision.rule is None:
            return error(ex, errors.NO_MATCHING_RULE, f"no routing rule matches this request "
                                                           f"(router {loaded.name!r}); see POST /routing/decide")
        ex.rule = decision.rule.name
        if decision.unavailable:
            return error(ex, errors.TARGETS_UNAVAILABLE, f"every target of rule {ex.rule!r} is unavailable: "
                                                              f"{decision.reason}", decision.retry_after_s)
        if key is not None:
            admitted = self.tenants.admit(key, loaded, body, doc, decision)
            if type(admitted) is not Ticket:
                if not isinstance(admitted, TenantRefused):   # the ledger on Redis answers later
                    admitted = await admitted
                if isinstance(admitted, TenantRefused):
                    response = error(ex, admitted.kind, admitted.message, admitted.retry_after_s)
                    response.headers.update(admitted.headers or {})
                    return response
            routed.ticket = admitted
            ex.extra_headers = admitted.headers
        forward = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        for target in decision.shadows:
            self.executor.shadow(ex, target, body, forward)
        return await self.executor.run(request, ex, decision, body, forward)

    async def _body_timed_out(self, request: web.Request, ex: Exchange) -> web.Response:
        return await answer_then_close(request, error(ex, errors.REQUEST_TIMEOUT, body_late(self.read_timeout_s)))

    def _account(self, ex: Exchange, response: web.StreamResponse | None, routed: Routed) -> None:
        """The request's metrics, its one log line, and its row in the history."""
        priced = None   # the usage's cost in nano-dollars, once the settle priced it
        if routed.ticket is not None:  # every path ends here: settle or release the request's hold
            try:
                priced = self.tenants.finish(routed.ticket, ex.target, ex.usage, ex.streamed_frames, ex.attempts)
            except Exception as exc:  # noqa: BLE001 (the hold expires; the request's line and row must still be written)
                self.log.write("bug", id=ex.id, error=f"settle: {type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc(limit=8))
        total = perf_counter() - ex.start
        status = ex.status or (response.status if response is not None else 0)
        target = plan.target_name(ex.target) if ex.target is not None else "-"
        m = self.metrics
        m.request(ex.router, ex.path, ex.rule, target, status, total)
        if ex.overhead_s is not None:
            m.overhead.observe(ex.overhead_s)
        if ex.ttft_s is not None:
            m.first_token(ex.router, ex.rule, target, ex.ttft_s)
        cost = None
        usage = ex.usage
        if usage is not None and ex.target is not None:
            if ex.target.cost_per_1k_tokens is not None:
                cost = usage.total * ex.target.cost_per_1k_tokens / 1000
            elif ex.target.input_micros_per_1k is not None or ex.target.output_micros_per_1k is not None:
                if priced is None:
                    priced = nanos(ex.target, usage.prompt_tokens, usage.completion_tokens)
                cost = priced / 1e9   # USD
            m.usage(ex.router, target, usage.prompt_tokens, usage.completion_tokens, cost)
        self.log.record({
            "ts": now(), "event": "request", "id": ex.id, "path": ex.path,
            "router": None if ex.version is None else ex.router, "version": ex.version, "stream": ex.stream, "rule": ex.rule,
            "target": target, "status": status, "error": ex.error, "attempts": ex.attempts, "ms": ms(total),
            "overhead_ms": None if ex.overhead_s is None else ms(ex.overhead_s),
            "ttft_ms": None if ex.ttft_s is None else ms(ex.ttft_s),
            "prompt_tokens": None if usage is None else usage.prompt_tokens,
            "completion_tokens": None if usage is None else usage.completion_tokens, "cost": cost})
        if self.recorder is not None and routed.loaded is not None:
            self.recorder.record(ex, routed, status, total, cost, response)
        if ex.span is not None and ex.span.is_recording():   # (an unsampled span has nothing to end)
            loaded, decision = routed.loaded, routed.decision
            self.tracing.end_request(
                ex.span, status=status, error=ex.error, router=None if loaded is None else loaded.name,
                version=None if loaded is None else loaded.version, rule=ex.rule, target=ex.target,
                attempts=sum(1 for a in ex.attempts if "ms" in a),
                split_label=None if decision is None else decision.split_label, usage=usage)

    async def models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        loaded, name = self._router(request)
        if loaded is None:
            return self._no_router(_exchange(request), name)
        created = int(self.started)
        data = [{"id": model, "object": "model", "created": created, "owned_by": "routelang"}
                for model in loaded.models]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON)

    # ---- operations ---------------------------------------------------------------

    async def liveness(self, _request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    async def readiness(self, _request: web.Request) -> web.Response:
        """Ready: some router is served and at least one of its targets is healthy."""
        routers = self.routers.all()
        targets = conditions(routers, self.state)
        healthy = [t for t in targets if t.selectable]
        ready = bool(healthy)
        body = {"status": "ready" if ready else "not_ready", "healthy_targets": len(healthy),
                "targets": len(targets), "state": self.state.status()}
        if body["state"]["degraded"]:  # still ready: this process serves on its own state meanwhile
            body["degraded"] = True
        if not self.serves_registry:
            body["version"] = routers[0].version
        else:
            body["routers"] = {loaded.name: loaded.version for loaded in routers}
        if not ready:
            problem = "no target is healthy" if routers else "no router is deployed"
            body["error"] = errors.error_body(errors.NOT_READY, problem)["error"]
        return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=JSON)

    def _routing_body(self, loaded: plan.Loaded) -> dict:
        with about(loaded):
            rules = [{"name": r.name, "priority": r.priority, "strategy": r.strategy, "description": r.description,
                      "targets": [plan.target_name(t) for t in r.targets]} for r in loaded.router.plan.order]
            targets = [{"name": plan.target_name(t), "provider": t.provider, "model": t.model_name,
                        "endpoint": t.endpoint, **self.state.view(t)} for t in loaded.targets.values()]
        return {"router": loaded.name, "file": loaded.path, "version": loaded.version, "sha256": loaded.sha256,
                "state": self.state.status(), "rules": rules, "targets": targets}

    async def routing(self, request: web.Request) -> web.Response:
        """One router (file mode; or the one a registry request names); else every router of the registry."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        loaded, name = self._router(request)
        if loaded is None and (name is not None or not self.serves_registry):
            return self._no_router(_exchange(request), name)
        common = {"last_reload_error": self.routers.last_error, "shadow_in_flight": len(self.executor.shadow_tasks)}
        if self.tenants is not None:
            common["ledger"] = self.tenants.ledger.status()
        if name is not None or not self.serves_registry:
            return web.Response(body=orjson.dumps({**self._routing_body(loaded), **common}), content_type=JSON)
        default = self.routers.get(None)
        body = {"registry": self.registry, "default_router": None if default is None else default.name,
                "routers": [self._routing_body(r) for r in self.routers.all()], **common}
        return web.Response(body=orjson.dumps(body), content_type=JSON)

    async def decide(self, request: web.Request) -> web.Response:
        """The document and the decision for a request body, without calling any upstream.
        `?path=/v1/completions` (default /v1/chat/completions) sets the endpoint it is decided for."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        ex = _exchange(request)
        loaded, name = self._router(request)
        if loaded is None:
            return self._no_router(ex, name)
        try:
            body = orjson.loads(await read_body(request, self.read_timeout_s))
        except orjson.JSONDecodeError as exc:
            return error(ex, errors.INVALID_JSON, f"the body is not valid JSON: {exc}")
        except TimeoutError:
            return await self._body_timed_out(request, ex)
        if not isinstance(body, dict):
            return error(ex, errors.INVALID_REQUEST, "the body must be a JSON object")
        path = request.query.get("path", "/v1/chat/completions")
        if path.removeprefix("/v1") not in KINDS:
            return error(ex, errors.INVALID_REQUEST, f"unknown endpoint path {path!r}")
        doc = document(body, request.headers.items(), path)
        decision = plan.decide(loaded, doc, self.state)
        out: dict = {"router": loaded.name, "version": loaded.version, "document": doc, "rule": None,
                     "reason": decision.reason, "attempts": [], "shadows": []}
        if decision.rule is not None:
            rows = plan.candidates(loaded, decision.rule, self.state)
            winner = decision.attempts[0] if decision.attempts else None
            why = plan.why_winner(decision.rule, rows, winner)
            endpoint = fit(decision.attempts, path.removeprefix("/v1"))   # as the executor will
            refused = None
            if endpoint.refusal is not None:
                refused = {"status": errors.UNSUPPORTED.status, **errors.error_body(errors.UNSUPPORTED,
                                                                                    endpoint.refusal)}
            out.update(rule=decision.rule.name, strategy=decision.rule.strategy,
                       reason=decision.reason + (f"; {why}" if why else ""), candidates=rows,
                       attempts=[_target_json(t) for t in endpoint.servable],
                       unsupported=[{"target": plan.target_name(t), "reason": reason}
                                    for t, reason in endpoint.refused],
                       refused=refused, shadows=[_target_json(t) for t in decision.shadows],
                       unavailable=decision.unavailable, retry_after_s=decision.retry_after_s)
        return web.Response(body=orjson.dumps(out), content_type=JSON)

    async def prometheus(self, _request: web.Request) -> web.Response:
        for loaded in self.routers.all():  # a cooldown may have ended since the last attempt
            with about(loaded):
                for target in loaded.targets.values():
                    if target.circuit_breaker is not None:
                        self.metrics.breaker_state(loaded.name, plan.target_name(target),
                                                   self.state.breaker(target))
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def unknown(self, request: web.Request) -> web.Response:
        ex = _exchange(request)
        path = request.path
        if path.startswith("/r/"):  # /r/NAME/ENDPOINT: a routed endpoint of router NAME
            name, _, rest = path[3:].partition("/")
            path = "/" + rest if "/" + rest in ROUTED_PATHS else path
            if path in ROUTED_PATHS and not ROUTER_NAME.fullmatch(name):
                return error(ex, errors.NOT_FOUND_ROUTER, f"{name!r} is not a router name")
        if path in ROUTED_PATHS or path in ("/health", "/health/ready", "/metrics"):
            return error(ex, errors.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}")
        return error(ex, errors.NOT_FOUND, f"no endpoint {request.method} {request.path}")


def _endpoint(request: web.Request) -> str:
    """The endpoint's path: `/v1/chat/completions` also for `/r/NAME/v1/chat/completions`."""
    name = request.match_info.get("router")
    return request.path if name is None else request.path[len("/r/") + len(name):]


def _exchange(request: web.Request) -> Exchange:
    """An Exchange for an answer that is not routed (errors of the other endpoints)."""
    return Exchange(id=os.urandom(12).hex(), path=request.path, start=perf_counter())


def _target_json(target) -> dict:
    """A target for /routing/decide: never its headers (they hold secrets)."""
    out = target.to_dict()
    out["headers"] = sorted(target.headers) if target.headers else None
    out["name"] = plan.target_name(target)
    return out
