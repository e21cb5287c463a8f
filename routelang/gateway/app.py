"""The HTTP surface: aiohttp handlers for the OpenAI endpoints, /routing,
/health and /metrics. Handlers parse, decide (through `plan`), hand over to
the executor, and write the headers, the metrics and the one log line."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from time import perf_counter

import orjson
from aiohttp import web

from . import auth, errors, plan
from .executor import Exchange, Executor, Settings
from .health import HealthChecker
from .logs import JsonLog
from .metrics import CONTENT_TYPE, Metrics
from .reload import Reloader
from .request import KINDS, NOT_FORWARDED, document
from .state import InProcessState, State

JSON = "application/json"
MAX_BODY = 32 * 1024 * 1024  # images in chat messages make bodies large


class Gateway:
    def __init__(self, path: str, settings: Settings | None = None, state: State | None = None,
                 api_keys: frozenset[str] | None = None, log: JsonLog | None = None,
                 reload_interval_s: float = 1.0, admin_keys: frozenset[str] | None = None, store=None):
        self.path = path
        self.loaded = plan.load(path)          # raises plan.LoadError: nothing to serve
        self.state = state or InProcessState()
        self.state.bind(self.loaded, None)
        self.api_keys = api_keys
        self.log = log or JsonLog()
        self.metrics = Metrics()
        self.metrics.config_version.set(self.loaded.version)
        self.executor = Executor(self, settings or Settings())
        self.health = HealthChecker(self)
        self.reloader = Reloader(self, reload_interval_s)
        self.started = time.time()
        self.store = store                      # the registry Store; None: serving a file
        self.admin_keys = admin_keys            # None: no admin API (/api does not exist)

    def loaded_for(self, name: str | None) -> plan.Loaded | None:
        """The Loaded serving router `name` now (None: the default router); None when not served."""
        if name is None or name == self.loaded.name:
            return self.loaded
        return None

    # ---- lifecycle --------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        for path in KINDS:
            app.router.add_post("/v1" + path, self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.liveness)
        app.router.add_get("/health/ready", self.readiness)
        app.router.add_get("/routing", self.routing)
        app.router.add_post("/routing/decide", self.decide)
        app.router.add_get("/metrics", self.prometheus)
        if self.admin_keys is not None:
            from .admin import Admin

            app.add_subapp("/api", Admin(self).application())
        app.router.add_route("*", "/{tail:.*}", self.unknown)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        await self.executor.start()
        self.health.sync(self.loaded)
        self.reloader.start()
        self.log.write("start", pid=os.getpid(), router=self.loaded.name, version=self.loaded.version,
                       sha256=self.loaded.sha256)

    async def _cleanup(self, _app: web.Application) -> None:
        await self.reloader.close()
        await self.health.close()
        await self.executor.close()
        self.log.write("stop", pid=os.getpid())
        self.log.close()

    # ---- responses ----------------------------------------------------------------

    def respond(self, ex: Exchange, status: int, body: bytes, extra: dict[str, str] | None = None) -> web.Response:
        ex.status = status
        headers = ex.headers()
        if extra:
            headers = {**extra, **headers}
        return web.Response(status=status, body=body, content_type=JSON, headers=headers)

    def error(self, ex: Exchange, kind: errors.Kind, message: str, retry_after_s: int | None = None) -> web.Response:
        ex.error = kind.code
        extra = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
        return self.respond(ex, kind.status, errors.error_bytes(kind, message), extra)

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.api_keys is None:
            return None
        problem = auth.check(request.headers.get("Authorization"), self.api_keys)
        if problem is None:
            return None
        kind, message = problem
        return web.Response(status=kind.status, body=errors.error_bytes(kind, message), content_type=JSON)

    # ---- the OpenAI endpoints -----------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        start = perf_counter()
        ex = Exchange(id=request.headers.get("x-request-id") or os.urandom(12).hex(), path=request.path,
                      start=start)
        response: web.StreamResponse | None = None
        try:
            response = self._refused(request) or await self._complete(request, ex)
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
            response = self.error(ex, errors.INTERNAL, f"internal error ({type(exc).__name__}); see the gateway log")
            return response
        finally:
            self._account(ex, response)

    async def _complete(self, request: web.Request, ex: Exchange) -> web.StreamResponse:
        try:
            body = orjson.loads(await self._body(request))
        except orjson.JSONDecodeError as exc:
            return self.error(ex, errors.INVALID_JSON, f"the body is not valid JSON: {exc}")
        except web.HTTPRequestEntityTooLarge:
            return self.error(ex, errors.TOO_LARGE, f"the body is larger than {MAX_BODY} bytes")
        except TimeoutError:
            return await self._body_timed_out(request, ex)
        if not isinstance(body, dict):
            return self.error(ex, errors.INVALID_REQUEST, "the body must be a JSON object")
        doc = document(body, request.headers.items(), request.path)
        ex.stream = doc["request"]["stream"] and request.path != "/v1/embeddings"
        if ex.stream:
            options = body.get("stream_options")
            ex.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        loaded = self.loaded  # this request runs on this version, whatever reloads meanwhile
        decision = plan.decide(loaded, doc, self.state)
        if decision.rule is None:
            return self.error(ex, errors.NO_MATCHING_RULE, f"no routing rule matches this request "
                                                           f"(router {loaded.name!r}); see POST /routing/decide")
        ex.rule = decision.rule.name
        if decision.unavailable:
            return self.error(ex, errors.TARGETS_UNAVAILABLE, f"every target of rule {ex.rule!r} is unavailable: "
                                                              f"{decision.reason}", decision.retry_after_s)
        forward = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        for target in decision.shadows:
            self.executor.shadow(ex, target, body, forward)
        return await self.executor.run(request, ex, decision, body, forward)

    async def _body(self, request: web.Request) -> bytes:
        """The request body; a client that sends it too slowly raises TimeoutError, so a
        stalled upload does not hold the handler forever. A body that came with the headers
        (the usual case) is read without arming a timer."""
        if request.content.is_eof():
            return await request.read()
        async with asyncio.timeout(self.executor.settings.body_timeout_s):
            return await request.read()

    async def _body_timed_out(self, request: web.Request, ex: Exchange) -> web.Response:
        """A 408, sent at once, then the connection closes: the rest of a stalled body is not
        waited for (aiohttp would linger reading it for up to 10 s after the answer)."""
        response = self.error(ex, errors.REQUEST_TIMEOUT, f"the request body did not arrive within "
                                                          f"{self.executor.settings.body_timeout_s:g} s")
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()  # the answer is written; the transport flushes it, then closes
        return response

    def _account(self, ex: Exchange, response: web.StreamResponse | None) -> None:
        """The request's metrics and its one log line."""
        total = perf_counter() - ex.start
        status = ex.status or (response.status if response is not None else 0)
        target = plan.target_name(ex.target) if ex.target is not None else "-"
        m = self.metrics
        m.request(ex.path, ex.rule, target, status, total)
        if ex.overhead_s is not None:
            m.overhead.observe(ex.overhead_s)
        if ex.ttft_s is not None:
            m.first_token(ex.rule, target, ex.ttft_s)
        cost = None
        usage = ex.usage
        if usage is not None and ex.target is not None:
            if ex.target.cost_per_1k_tokens is not None:
                cost = usage.total * ex.target.cost_per_1k_tokens / 1000
            m.usage(target, usage.prompt_tokens, usage.completion_tokens, cost)
        self.log.write(
            "request", id=ex.id, path=ex.path, stream=ex.stream, rule=ex.rule, target=target, status=status,
            error=ex.error, attempts=ex.attempts, ms=round(total * 1000, 3),
            overhead_ms=None if ex.overhead_s is None else round(ex.overhead_s * 1000, 3),
            ttft_ms=None if ex.ttft_s is None else round(ex.ttft_s * 1000, 3),
            prompt_tokens=None if usage is None else usage.prompt_tokens,
            completion_tokens=None if usage is None else usage.completion_tokens, cost=cost)

    async def models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        created = int(self.started)
        data = [{"id": name, "object": "model", "created": created, "owned_by": "routelang"}
                for name in self.loaded.models]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON)

    # ---- operations ---------------------------------------------------------------

    async def liveness(self, _request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    async def readiness(self, _request: web.Request) -> web.Response:
        loaded = self.loaded
        healthy = [t for t in loaded.targets.values() if self.state.healthy(t.key)]
        ready = bool(healthy)
        body = {"status": "ready" if ready else "not_ready", "version": loaded.version,
                "healthy_targets": len(healthy), "targets": len(loaded.targets)}
        if not ready:
            body["error"] = errors.error_body(errors.NOT_READY, "no target is healthy")["error"]
        return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=JSON)

    async def routing(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        loaded = self.loaded
        rules = [{"name": r.name, "priority": r.priority, "strategy": r.strategy, "description": r.description,
                  "targets": [plan.target_name(t) for t in r.targets]} for r in loaded.router.plan.order]
        targets = [{"name": plan.target_name(t), "provider": t.provider, "model": t.model_name,
                    "endpoint": t.endpoint, **self.state.view(t)} for t in loaded.targets.values()]
        body = {"router": loaded.name, "file": loaded.path, "version": loaded.version, "sha256": loaded.sha256,
                "rules": rules, "targets": targets, "last_reload_error": self.reloader.last_error,
                "shadow_in_flight": len(self.executor.shadow_tasks)}
        return web.Response(body=orjson.dumps(body), content_type=JSON)

    async def decide(self, request: web.Request) -> web.Response:
        """The document and the decision for a request body, without calling any upstream.
        `?path=/v1/completions` (default /v1/chat/completions) sets the endpoint it is decided for."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        ex = Exchange(id=os.urandom(12).hex(), path=request.path, start=perf_counter())
        try:
            body = orjson.loads(await self._body(request))
        except orjson.JSONDecodeError as exc:
            return self.error(ex, errors.INVALID_JSON, f"the body is not valid JSON: {exc}")
        except TimeoutError:
            return await self._body_timed_out(request, ex)
        if not isinstance(body, dict):
            return self.error(ex, errors.INVALID_REQUEST, "the body must be a JSON object")
        path = request.query.get("path", "/v1/chat/completions")
        if path.removeprefix("/v1") not in KINDS:
            return self.error(ex, errors.INVALID_REQUEST, f"unknown endpoint path {path!r}")
        doc = document(body, request.headers.items(), path)
        loaded = self.loaded
        decision = plan.decide(loaded, doc, self.state)
        out: dict = {"document": doc, "rule": None, "reason": decision.reason, "attempts": [], "shadows": []}
        if decision.rule is not None:
            rows = plan.candidates(loaded, decision.rule, self.state)
            winner = decision.attempts[0] if decision.attempts else None
            why = plan.why_winner(decision.rule, rows, winner)
            out.update(rule=decision.rule.name, strategy=decision.rule.strategy,
                       reason=decision.reason + (f"; {why}" if why else ""), candidates=rows,
                       attempts=[_target_json(t) for t in decision.attempts],
                       shadows=[_target_json(t) for t in decision.shadows],
                       unavailable=decision.unavailable, retry_after_s=decision.retry_after_s)
        return web.Response(body=orjson.dumps(out), content_type=JSON)

    async def prometheus(self, _request: web.Request) -> web.Response:
        for target in self.loaded.targets.values():  # a cooldown may have ended since the last attempt
            if target.circuit_breaker is not None:
                self.metrics.breaker_state(plan.target_name(target), self.state.breaker(target))
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def unknown(self, request: web.Request) -> web.Response:
        ex = Exchange(id=os.urandom(12).hex(), path=request.path, start=perf_counter())
        known = request.path in ("/v1" + p for p in KINDS) or request.path in (
            "/v1/models", "/health", "/health/ready", "/routing", "/routing/decide", "/metrics")
        if known:
            return self.error(ex, errors.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}")
        return self.error(ex, errors.NOT_FOUND, f"no endpoint {request.method} {request.path}")


def _target_json(target) -> dict:
    """A target for /routing/decide: never its headers (they hold secrets)."""
    out = target.to_dict()
    out["headers"] = sorted(target.headers) if target.headers else None
    out["name"] = plan.target_name(target)
    return out
