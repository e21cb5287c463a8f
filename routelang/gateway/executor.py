"""Sending one client request upstream: attempts, retries, fallback, streaming, shadows.

The policy (docs/gateway.md states it for users):
- targets are tried in the decision's order; each gets 1 + `retries` attempts;
- an attempt fails retryably on a connect error, a timeout, HTTP 408, 409, 429
  or 5xx (an upstream `x-should-retry` header overrides the status); the next
  try of the same target waits `retry-after-ms`, else `Retry-After`, else
  min(base * 2**n, max) minus up to 25% jitter; a wait longer than
  `max_retry_after_s` moves on to the next target instead;
- a 429 whose error type or code is `insufficient_quota` is never retried:
  the next target is tried;
- any other 4xx goes back to the client as it is (no retry, no fallback);
- a stream fails over only until its first frame reached the client; after
  that an upstream failure becomes an in-band `data: {"error": ...}` event
  and the stream closes without `[DONE]`.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from routelang.runtime.model import Target

from . import errors, upstream
from .adapters import Adapter, Usage, adapter_for, error_code, error_type, fit
from .exchange import Exchange
from .logs import JsonLog, ms
from .plan import Decision, target_name
from .responses import error, respond
from .tracing import Answer

if TYPE_CHECKING:
    from .metrics import Metrics
    from .state import State
    from .tracing import Tracing

RETRYABLE_STATUS = frozenset({408, 409, 429})
# Upstream response headers not passed on to the client.
NOT_RETURNED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                          "content-type", "date", "server", "set-cookie", "upgrade", "trailer", "te"})


@dataclass(frozen=True)
class Settings:
    timeout_s: float = 600.0             # one attempt, when the target sets no `timeout`
    first_token_timeout_s: float = 60.0  # a stream's first byte, and any silence after it
    connect_timeout_s: float = 10.0
    # A client's request: its head, from the connection's start (or the previous answer) to its
    # last header, and its body, from its head to its last byte (`serve --request-read-timeout`).
    request_read_timeout_s: float = 30.0
    retry_base_s: float = 0.5
    retry_max_s: float = 8.0
    max_retry_after_s: float = 60.0
    shadow_limit: int = 64               # shadow calls in flight; more are dropped and counted


@dataclass(slots=True)
class Failure:
    outcome: str            # connect_error, timeout, http_503, insufficient_quota, stream_error, ...
    retryable: bool
    message: str
    retry_after_s: float | None = None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, else `Retry-After` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None and (value := _number(millis)) is not None:
        return max(0.0, value / 1000)
    text = headers.get("retry-after")
    if text is None:
        return None
    if (value := _number(text)) is not None:
        return max(0.0, value)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def call_outcome(exc: BaseException) -> str:
    """The outcome of a call that raised (TimeoutError or upstream.UpstreamError), as attempts,
    shadows and the log name it."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "connect_error" if isinstance(exc, upstream.ConnectError) else "upstream_error"


def _should_retry(status: int, headers: Any) -> bool:
    forced = headers.get("x-should-retry")
    if forced == "true":
        return True
    if forced == "false":
        return False
    return status in RETRYABLE_STATUS or status >= 500


class Executor:
    """Sends requests (and shadow copies) through `client`; each attempt's outcome goes to
    `state` (breakers, statistics), `metrics` and the Exchange (the log line)."""

    def __init__(self, settings: Settings, client: upstream.Client, state: State, metrics: Metrics, log: JsonLog,
                 tracing: Tracing | None = None):
        self.settings = settings
        self.client = client
        self.state = state
        self.metrics = metrics
        self.log = log
        self.tracing = tracing   # with it, the Exchange of a request has a span (ex.span)
        self.shadow_tasks: set[asyncio.Task] = set()

    async def close(self) -> None:
        """Cancel the shadows in flight (the client is the root's to close)."""
        for task in list(self.shadow_tasks):
            task.cancel()
        if self.shadow_tasks:
            await asyncio.gather(*self.shadow_tasks, return_exceptions=True)

    # ---- the attempt loop ---------------------------------------------------------

    def backoff(self, try_no: int, failure: Failure) -> float | None:
        """Seconds to wait before retrying the same target, None: move on instead."""
        if failure.retry_after_s is not None:
            return failure.retry_after_s if failure.retry_after_s <= self.settings.max_retry_after_s else None
        delay = min(self.settings.retry_base_s * 2 ** try_no, self.settings.retry_max_s)
        return delay * (1 - 0.25 * random.random())

    async def run(self, request: web.Request, ex: Exchange, decision: Decision, body: dict,
                  forward: dict[str, str]) -> web.StreamResponse:
        state, metrics, tracing = self.state, self.metrics, self.tracing
        path = ex.path.removeprefix("/v1")
        calls = 0
        for n, target in enumerate(decision.attempts):
            adapter = adapter_for(target.provider)
            refused = adapter.refuses(path)
            if n >= decision.picked and refused is None:   # (a target never called takes no half-open probe)
                if not state.admits(target):
                    ex.attempts.append({"target": target_name(target), "outcome": "breaker_open"})
                    continue
                state.claim(target)
            if n > 0:
                metrics.fallbacks.labels(ex.router, ex.rule).inc()
            if refused is not None:
                ex.attempts.append({"target": target_name(target), "outcome": "unsupported"})
                continue
            url, payload, wire_headers = adapter.request(target, path, body, ex.stream)
            headers = {**forward, **wire_headers, **(target.headers or {}), "Content-Type": "application/json"}
            data = orjson.dumps(payload)
            timeout_s = target.timeout_ms / 1000 if target.timeout_ms else self.settings.timeout_s
            retries = max(0, target.retry_count or 0)
            try_no = 0
            while True:
                calls += 1
                call = self._stream if ex.stream else self._call
                if ex.span is None:
                    result = await call(request, ex, target, adapter, url, data, headers, timeout_s)
                elif not ex.span.is_recording():   # sampled out: only the trace's id goes on
                    result = await call(request, ex, target, adapter, url, data,
                                        tracing.propagate(ex.span, headers), timeout_s)
                else:
                    span = tracing.attempt_span(ex.span, target, ex.path, body, ex.rule, calls, try_no)
                    recorded = len(ex.attempts)
                    ex.answer = Answer()
                    try:
                        result = await call(request, ex, target, adapter, url, data, tracing.inject(span, headers),
                                            timeout_s)
                    finally:   # (the call's entry in ex.attempts says how it went; none: it raised)
                        entry = ex.attempts[-1] if len(ex.attempts) > recorded else {"outcome": "internal_error"}
                        tracing.end_attempt(span, ex.span, outcome=entry["outcome"], status=entry.get("status"),
                                            usage=ex.usage if entry["outcome"] == "ok" else None, answer=ex.answer)
                        ex.answer = None
                if not isinstance(result, Failure):
                    return result
                if result.outcome == "stream_options_refused":
                    if "stream_options" not in payload:
                        break  # refused again without it: not the option's fault after all
                    # An OpenAI-compatible server that does not know `stream_options` (which the
                    # gateway added): the same call again without it, no retry counted.
                    payload = {k: v for k, v in payload.items() if k != "stream_options"}
                    data = orjson.dumps(payload)
                    continue
                if not result.retryable or try_no == retries:
                    break
                if target.circuit_breaker is not None and not state.admits(target):
                    break  # its breaker opened meanwhile: move on instead of retrying
                wait = self.backoff(try_no, result)
                if wait is None:
                    break
                slept = perf_counter()
                await asyncio.sleep(wait)
                ex.backoff_s += perf_counter() - slept
                try_no += 1
                metrics.retries.labels(ex.router, target_name(target)).inc()
        refusal = fit(decision.attempts, path).refusal
        if refusal is not None:
            return error(ex, errors.UNSUPPORTED, refusal)
        summary = "; ".join(f"{a['target']}: {a['outcome']}" for a in ex.attempts) or "no target was tried"
        return error(ex, errors.ALL_TARGETS_FAILED, f"every target failed ({summary})")

    def _record(self, ex: Exchange, target: Target, outcome: str, seconds: float, ok: bool,
                status: int | None = None, usage: Usage | None = None, latency: bool = True) -> None:
        """One attempt's outcome: the log's attempt list, metrics, and the runtime (breaker, statistics)."""
        name = target_name(target)
        entry: dict[str, Any] = {"target": name, "outcome": outcome, "ms": ms(seconds)}
        if status is not None:
            entry["status"] = status
        ex.attempts.append(entry)
        self.metrics.attempt(ex.router, name, outcome, seconds)
        breaker = self.state.record(target, ok=ok, latency_ms=seconds * 1000 if ok and latency else None,
                                    tokens=usage.total if usage is not None else None)
        self.metrics.breaker_state(ex.router, name, breaker)

    def _failure(self, ex: Exchange, target: Target, seconds: float, exc: BaseException) -> Failure:
        failure = Failure(call_outcome(exc), True, "timed out" if isinstance(exc, TimeoutError) else str(exc))
        self._record(ex, target, failure.outcome, seconds, ok=False)
        return failure

    def _http_failure(self, ex: Exchange, target: Target, adapter: Adapter, seconds: float, status: int,
                      headers: Any, data: bytes) -> Failure | web.Response:
        """A non-2xx upstream answer: a Failure to retry or fail over, or the response for the client."""
        error = adapter.error(status, data)
        if (status in (400, 422) and ex.stream and not ex.client_wants_usage and adapter.passthrough
                and b"stream_options" in data):
            self._record(ex, target, "stream_options_refused", seconds, ok=True, status=status, latency=False)
            return Failure("stream_options_refused", False, error["error"]["message"])
        if status == 429 and "insufficient_quota" in (error_type(error), error_code(error)):
            self._record(ex, target, "insufficient_quota", seconds, ok=False, status=status)
            return Failure("insufficient_quota", False, error["error"]["message"])
        if _should_retry(status, headers):
            self._record(ex, target, f"http_{status}", seconds, ok=False, status=status)
            return Failure(f"http_{status}", True, error["error"]["message"], retry_after(headers))
        # The client's own mistake (400, 401, 404, 422, ...): the target works; the answer goes back as is.
        self._record(ex, target, f"http_{status}", seconds, ok=True, status=status, latency=False)
        ex.target = target
        body = data if adapter.passthrough and data.startswith(b"{") else orjson.dumps(error)
        return respond(ex, status, body, self._returned(headers))

    @staticmethod
    def _returned(headers: Any) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k.lower() not in NOT_RETURNED}

    # ---- one attempt, whole answer ------------------------------------------------

    async def _call(self, request: web.Request, ex: Exchange, target: Target, adapter: Adapter, url: str,
                    data: bytes, headers: dict[str, str], timeout_s: float) -> Failure | web.Response:
        t0 = perf_counter()
        try:
            status, upstream_headers, raw = await self.client.fetch("POST", url, data, headers, timeout_s)
        except asyncio.CancelledError:
            ex.attempts.append({"target": target_name(target), "outcome": "client_disconnected",
                                "ms": ms(perf_counter() - t0)})
            raise
        except (TimeoutError, upstream.UpstreamError) as exc:
            seconds = perf_counter() - t0
            ex.upstream_s += seconds
            return self._failure(ex, target, seconds, exc)
        seconds = perf_counter() - t0
        ex.upstream_s += seconds
        if not 200 <= status < 300:
            return self._http_failure(ex, target, adapter, seconds, status, upstream_headers, raw)
        try:
            out, usage = adapter.response(raw, ex.path.removeprefix("/v1"))
        except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
            self._record(ex, target, "bad_response", seconds, ok=False, status=status)
            return Failure("bad_response", True, "the upstream's answer is not valid JSON of its format")
        self._record(ex, target, "ok", seconds, ok=True, status=status, usage=usage)
        ex.target, ex.usage = target, usage
        if ex.answer is not None:
            ex.answer.read(out)
        return respond(ex, status, out, self._returned(upstream_headers))

    # ---- one attempt, streamed ----------------------------------------------------

    async def _stream(self, request: web.Request, ex: Exchange, target: Target, adapter: Adapter, url: str,
                      data: bytes, headers: dict[str, str], timeout_s: float) -> Failure | web.StreamResponse:
        t0 = perf_counter()
        try:
            resp = await self.client.open_response("POST", url, data, headers, timeout_s,
                                                   min(self.settings.first_token_timeout_s, timeout_s))
        except (TimeoutError, upstream.UpstreamError) as exc:
            seconds = perf_counter() - t0
            ex.upstream_s += seconds
            return self._failure(ex, target, seconds, exc)
        try:
            if resp.status != 200:
                try:
                    raw = await resp.read()
                except (TimeoutError, upstream.UpstreamError) as exc:
                    ex.upstream_s += perf_counter() - t0
                    return self._failure(ex, target, perf_counter() - t0, exc)
                seconds = perf_counter() - t0
                ex.upstream_s += seconds
                return self._http_failure(ex, target, adapter, seconds, resp.status, resp.headers, raw)
            translator = adapter.stream(ex.path.removeprefix("/v1"), ex.client_wants_usage)
            frames: list[bytes] = []
            try:
                while line := await resp.readline():
                    frames = translator.feed(line)
                    if frames or translator.error is not None:
                        break
            except (TimeoutError, upstream.UpstreamError) as exc:
                ex.upstream_s += perf_counter() - t0
                return self._failure(ex, target, perf_counter() - t0, exc)
            if not frames:
                seconds = perf_counter() - t0
                ex.upstream_s += seconds
                outcome = "stream_error" if translator.error is not None else "empty_stream"
                self._record(ex, target, outcome, seconds, ok=False, status=200)
                message = (translator.error or {}).get("error", {}).get("message", "the stream ended before any data")
                return Failure(outcome, True, str(message))
            # First frame: from here on the client has an answer and there is no failing over.
            ex.upstream_s += perf_counter() - t0
            ex.target = target
            ex.ttft_s = perf_counter() - ex.start
            ex.status = 200
            response = web.StreamResponse(status=200, headers=ex.headers(
                {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, running=1))
            await response.prepare(request)
            if ex.captured is not None:
                ex.captured.extend(frames)
            if ex.answer is not None:
                ex.answer.see(frames)
            await response.write(b"".join(frames))
            ex.streamed_frames += len(frames)
            problem = None
            try:
                while not translator.done and translator.error is None:
                    line = await resp.readline()
                    if not line:
                        break
                    frames = translator.feed(line)
                    if frames:
                        if ex.captured is not None:
                            ex.captured.extend(frames)
                        if ex.answer is not None:
                            ex.answer.see(frames)
                        await response.write(b"".join(frames))
                        ex.streamed_frames += len(frames)
            except (TimeoutError, upstream.UpstreamError) as exc:
                problem = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            seconds = perf_counter() - t0
            ex.usage = translator.usage
            if translator.done:
                self._record(ex, target, "ok", seconds, ok=True, status=200, usage=translator.usage)
            else:
                if translator.error is not None:
                    problem = str(translator.error.get("error", {}).get("message", "upstream error"))
                problem = problem or "the upstream closed the stream before it was complete"
                self._record(ex, target, "stream_interrupted", seconds, ok=False, status=200,
                             usage=translator.usage)
                ex.error = errors.STREAM_INTERRUPTED.code
                event = errors.error_bytes(errors.STREAM_INTERRUPTED, f"the upstream stream failed: {problem}")
                await response.write(b"data: " + event + b"\n\n")
                response.force_close()
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            # The client went away (the target is not to blame): closing `resp` cancels the upstream call.
            ex.attempts.append({"target": target_name(target), "outcome": "client_disconnected",
                                "ms": ms(perf_counter() - t0)})
            raise
        finally:
            resp.close()

    # ---- shadows --------------------------------------------------------------------

    def shadow(self, ex: Exchange, target: Target, body: dict, forward: dict[str, str]) -> None:
        """Send a copy to `target` in the background (never streamed); the answer is discarded."""
        name = target_name(target)
        if len(self.shadow_tasks) >= self.settings.shadow_limit:
            self.metrics.shadow_dropped.labels(ex.router, name).inc()
            self.log.write("shadow", id=ex.id, router=ex.router, target=name, outcome="dropped")
            return
        task = asyncio.get_running_loop().create_task(self._shadow(ex.id, ex.router, target, body, forward,
                                                                   ex.path, ex.span, ex.rule))
        self.shadow_tasks.add(task)
        task.add_done_callback(self.shadow_tasks.discard)

    async def _shadow(self, request_id: str, router: str, target: Target, body: dict, forward: dict[str, str],
                      path: str, parent: Any = None, rule: str = "-") -> None:
        """`parent`: the request's span when tracing (the shadow call gets a CLIENT span of its own,
        `routelang.shadow`, attempt 0)."""
        name = target_name(target)
        adapter = adapter_for(target.provider)
        endpoint = path.removeprefix("/v1")
        copy = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        span = None
        if parent is not None and parent.is_recording():
            span = self.tracing.attempt_span(parent, target, path, copy, rule, 0, 0)
            span.set_attribute("routelang.shadow", True)
        t0 = perf_counter()
        status = None
        usage = None
        try:
            if adapter.refuses(endpoint) is not None:
                ok, outcome = True, "unsupported"
            else:
                url, payload, wire_headers = adapter.request(target, endpoint, copy, False)
                headers = {**forward, **wire_headers, **(target.headers or {}), "Content-Type": "application/json"}
                if span is not None:
                    headers = self.tracing.inject(span, headers)
                elif parent is not None:
                    headers = self.tracing.propagate(parent, headers)
                timeout_s = target.timeout_ms / 1000 if target.timeout_ms else self.settings.timeout_s
                status, _headers, raw = await self.client.fetch("POST", url, orjson.dumps(payload), headers,
                                                                timeout_s)
                ok = 200 <= status < 300
                if ok:
                    _out, usage = adapter.response(raw, endpoint)
                outcome = "ok" if ok else f"http_{status}"
        except (TimeoutError, upstream.UpstreamError) as exc:
            ok, outcome = False, call_outcome(exc)
        except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
            ok, outcome = False, "bad_response"
        except asyncio.CancelledError:   # the gateway stops
            if span is not None:
                self.tracing.end_attempt(span, parent, outcome="cancelled", status=None, usage=None)
            raise
        seconds = perf_counter() - t0
        if span is not None:   # (no answer given: the request's span keeps its own answer's)
            self.tracing.end_attempt(span, parent, outcome=outcome, status=status, usage=usage)
        self.metrics.shadow.labels(router, name, outcome).inc()
        if outcome != "unsupported":
            self.state.record(target, ok=ok, latency_ms=seconds * 1000 if ok else None,
                              tokens=usage.total if usage else None)
        self.log.write("shadow", id=request_id, router=router, target=name, outcome=outcome, status=status,
                       ms=ms(seconds), tokens=None if usage is None else usage.total)
