"""OpenTelemetry traces (`routelang serve --otlp-endpoint URL`): a SERVER span per
routed request and a CLIENT span per upstream attempt, named and described by the
GenAI semantic conventions (`{gen_ai.operation.name} {gen_ai.request.model}`),
with routelang's own attributes under `routelang.*`. The W3C `traceparent` of the
client is the parent of the request's span; each attempt's span is passed on to
the upstream in its own `traceparent`. No prompt or answer text is ever recorded.

Built on opentelemetry-sdk and its OTLP/HTTP exporter, the `otel` extra: imported
only when tracing is on. Spans are batched and exported by the SDK's worker thread.
With tracing off the gateway holds `None` and each request pays one check."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from routelang.runtime.model import Target

    from .adapters import Usage

# The operation of each endpoint (gen_ai.operation.name).
OPERATIONS = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion", "/v1/embeddings": "embeddings"}
# Providers whose gen_ai.provider.name is not routelang's own name for them.
PROVIDER_NAMES = {"azure": "azure.ai.openai"}
# Request parameters recorded on an attempt (no message text).
REQUEST_PARAMETERS = (("max_tokens", "gen_ai.request.max_tokens"),
                      ("max_completion_tokens", "gen_ai.request.max_tokens"),
                      ("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p"))
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"([A-Za-z_]+)"')
INSTALL_HINT = "tracing needs the `otel` extra: pip install 'routelang[otel]'"


class TracingUnavailable(Exception):
    """Tracing was asked for and cannot be set up (the `otel` extra is missing, a variable is wrong)."""


def wanted(otlp_endpoint: str | None, environ: Mapping[str, str]) -> bool:
    """Tracing is on with `--otlp-endpoint`, or with the standard endpoint variables set
    (unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(otlp_endpoint) or any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def from_options(otlp_endpoint: str | None, environ: Mapping[str, str]) -> Tracing | None:
    """The gateway's Tracing, or None when tracing is off. Raises TracingUnavailable."""
    if not wanted(otlp_endpoint, environ):
        return None
    return Tracing(_exporter(otlp_endpoint, environ))


def check(otlp_endpoint: str | None, environ: Mapping[str, str]) -> bool:
    """Whether tracing is on, having checked it can be (before the workers start, which each
    make their own Tracing: the exporter's thread does not survive a fork). Raises
    TracingUnavailable."""
    if not wanted(otlp_endpoint, environ):
        return False
    _exporter(otlp_endpoint, environ).shutdown()
    return True


def _exporter(otlp_endpoint: str | None, environ: Mapping[str, str]) -> Any:
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip()
    if protocol != "http/protobuf":
        raise TracingUnavailable(f"OTLP protocol {protocol!r} is not supported; the gateway exports "
                                 f"http/protobuf (OTLP/HTTP, port 4318 on a collector)")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TracingUnavailable(INSTALL_HINT) from None
    endpoint = None
    if otlp_endpoint:
        parts = urlsplit(otlp_endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TracingUnavailable(f"--otlp-endpoint {otlp_endpoint!r} is not an http(s) URL "
                                     f"(e.g. http://localhost:4318)")
        endpoint = otlp_endpoint.rstrip("/") + "/v1/traces"   # a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is
    return OTLPSpanExporter(endpoint=endpoint)


class Tracing:
    def __init__(self, exporter: Any):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider, sampling
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            SpanKind,
            Status,
            StatusCode,
            TraceFlags,
            TraceState,
            set_span_in_context,
        )

        from routelang import __version__

        # Not the global provider: a process may hold several gateways (the tests do).
        # The sampler comes from OTEL_TRACES_SAMPLER (default: the parent's choice, else sampled),
        # the resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        resource = Resource.create()
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "routelang"}))   # OTEL_SERVICE_NAME unset
        self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("routelang.gateway", __version__)
        self._set_parent = set_span_in_context
        self._unsampled, self._context, self._trace_state = NonRecordingSpan, SpanContext, TraceState
        self._flags = TraceFlags
        # With the default sampler (the parent's choice), a client's unsampled traceparent is
        # followed without asking the SDK (~5 µs). The attribute is the SDK's own; without it
        # (another SDK version, another sampler) every request goes through the sampler.
        self._follow_unsampled_parent = (
            getattr(self.provider.sampler, "_remote_parent_not_sampled", None) is sampling.ALWAYS_OFF)
        self._attempt_attributes: dict[tuple, tuple[str, dict[str, Any]]] = {}   # per (target, path)
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)

    def shutdown(self) -> None:
        """Export what is still queued, then stop the worker."""
        self.provider.shutdown()

    # ---- the request -------------------------------------------------------------------

    def request_span(self, headers: Mapping[str, str], path: str) -> Span:
        """The SERVER span of a routed request, a child of the client's `traceparent` if any.
        Named by its operation until the body says the model (`named`)."""
        parent = self._parent(headers)
        if parent is not None and self._follow_unsampled_parent and not parent.trace_flags.sampled:
            return self._unsampled(parent)
        operation = OPERATIONS.get(path, "chat")
        return self.tracer.start_span(operation, context=None if parent is None else self._set_parent(
            self._unsampled(parent)), kind=self._server, attributes={
                "gen_ai.operation.name": operation, "http.request.method": "POST", "url.path": path})

    def _parent(self, headers: Mapping[str, str]) -> Any:
        """The client's W3C trace context (a SpanContext), None without a valid one."""
        header = headers.get("traceparent")
        if header is None:
            return None
        match = TRACEPARENT.fullmatch(header.strip())
        if match is None:
            return None
        version, trace_id, span_id, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        try:
            state = self._trace_state.from_header([headers["tracestate"]]) if "tracestate" in headers else None
        except ValueError:
            state = None
        return self._context(int(trace_id, 16), int(span_id, 16), True, self._flags(int(flags, 16)), state)

    @staticmethod
    def named(span: Span, path: str, body: dict) -> None:
        model = body.get("model")
        if isinstance(model, str) and span.is_recording():
            span.set_attribute("gen_ai.request.model", model)
            span.update_name(f"{OPERATIONS.get(path, 'chat')} {model}")

    def end_request(self, span: Span, *, status: int, error: str | None, router: str | None,
                    version: int | None, rule: str, target: Target | None, attempts: int,
                    split_label: str | None, usage: Usage | None) -> None:
        if span.is_recording():
            attributes: dict[str, Any] = {"http.response.status_code": status, "routelang.rule": rule,
                                          "routelang.attempts": attempts}
            if router is not None:
                attributes["routelang.router"] = router
                attributes["routelang.router.version"] = version
            if target is not None:
                attributes["routelang.target"] = target_label(target)
                attributes["gen_ai.provider.name"] = provider_name(target.provider)
            if split_label is not None:
                attributes["routelang.split.label"] = split_label
            _result(attributes, usage, None)
            if error is not None or status >= 400:
                attributes["error.type"] = error or str(status)
            if status >= 500:   # a client's mistake (4xx) is not the server span's error
                span.set_status(self._error)
            span.set_attributes(attributes)
        span.end()

    # ---- an attempt ----------------------------------------------------------------------

    def attempt_span(self, parent: Span, target: Target, path: str, body: dict, rule: str, attempt: int,
                     try_no: int) -> Span:
        """The CLIENT span of one call to an upstream, for a recording (sampled) `parent`; its
        attributes are set before it starts, as the conventions ask (a sampler may read them)."""
        name, fixed = self._static_attributes(target, path)
        attributes = {**fixed, "routelang.rule": rule, "routelang.attempt": attempt, "routelang.try": try_no}
        for key, attribute in REQUEST_PARAMETERS:
            value = body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[attribute] = value
        return self.tracer.start_span(name, context=self._set_parent(parent), kind=self._client,
                                      attributes=attributes)

    def _static_attributes(self, target: Target, path: str) -> tuple[str, dict[str, Any]]:
        """A target's span name and attributes for an endpoint (computed once)."""
        key = (target.key, target.name, target.label, path)
        hit = self._attempt_attributes.get(key)
        if hit is None:
            operation = OPERATIONS.get(path, "chat")
            parts = urlsplit(target.endpoint)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": operation, "gen_ai.provider.name": provider_name(target.provider),
                "gen_ai.request.model": target.model_name, "server.address": parts.hostname or "",
                "server.port": parts.port or (443 if parts.scheme == "https" else 80),
                "routelang.target": target_label(target)}
            if target.label is not None:
                attributes["routelang.split.label"] = target.label
            if len(self._attempt_attributes) >= 4096:   # targets of many reloaded versions
                self._attempt_attributes.clear()
            hit = self._attempt_attributes[key] = (f"{operation} {target.model_name}", attributes)
        return hit

    @staticmethod
    def inject(span: Span, headers: dict[str, str]) -> dict[str, str]:
        """The upstream's headers with this attempt's W3C `traceparent` (and `tracestate`),
        replacing the client's."""
        context = span.get_span_context()
        return _with_context(headers, context, context.span_id)

    @staticmethod
    def propagate(parent: Span, headers: dict[str, str]) -> dict[str, str]:
        """The upstream's headers for a call of a request sampled out: no span is made (every
        sampler the SDK offers samples a child of an unsampled span out too), the trace goes on
        with a new span id in `traceparent`."""
        return _with_context(headers, parent.get_span_context(), random.getrandbits(64) or 1)

    def end_attempt(self, span: Span, parent: Span, *, outcome: str, status: int | None,
                    usage: Usage | None, answer: Answer | None = None) -> None:
        """`answer`: what the upstream answered (a successful attempt's model, finish reasons,
        id), which the request's span also gets."""
        if span.is_recording():
            attributes: dict[str, Any] = {"routelang.outcome": outcome}
            if status is not None:
                attributes["http.response.status_code"] = status
            _result(attributes, usage, answer)
            if outcome != "ok":
                attributes["error.type"] = str(status) if outcome.startswith("http_") and status else outcome
                span.set_status(self._error)
            span.set_attributes(attributes)
            if answer is not None and outcome == "ok" and parent.is_recording():
                parent_attributes: dict[str, Any] = {}
                _result(parent_attributes, None, answer)
                parent.set_attributes(parent_attributes)
        span.end()


class Answer:
    """What the spans say of an upstream's answer in OpenAI's shape: read from a whole body
    (`read`) or from a stream's frames as they are sent (`see`). Only for sampled spans."""

    __slots__ = ("finish_reasons", "id", "model")

    def __init__(self):
        self.model: str | None = None
        self.id: str | None = None
        self.finish_reasons: list[str] = []

    def read(self, body: bytes) -> None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(parsed, dict):
            self._identify(parsed)
            self.finish_reasons = [c["finish_reason"] for c in parsed.get("choices") or []
                                   if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)]

    def see(self, frames: Iterable[bytes]) -> None:
        for frame in frames:
            if self.model is None and frame.startswith(b"data: {"):
                try:
                    chunk = orjson.loads(frame[6:])
                except orjson.JSONDecodeError:
                    chunk = None
                if isinstance(chunk, dict):
                    self._identify(chunk)
            self.finish_reasons.extend(m.decode() for m in FINISH_REASON.findall(frame))

    def _identify(self, parsed: dict) -> None:
        model, answer_id = parsed.get("model"), parsed.get("id")
        self.model = model if isinstance(model, str) and model else None
        self.id = answer_id if isinstance(answer_id, str) and answer_id else None


def _with_context(headers: dict[str, str], context: Any, span_id: int) -> dict[str, str]:
    """`headers` with the W3C trace context of `context`'s trace and flags and of span `span_id`."""
    out = {k: v for k, v in headers.items() if k.lower() not in ("traceparent", "tracestate")}
    out["traceparent"] = f"00-{context.trace_id:032x}-{span_id:016x}-{context.trace_flags:02x}"
    if context.trace_state:
        out["tracestate"] = context.trace_state.to_header()
    return out


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def target_label(target: Target) -> str:
    return target.name or target.label or target.model_name


def _result(attributes: dict[str, Any], usage: Usage | None, answer: Answer | None) -> None:
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    if answer is None:
        return
    if answer.model is not None:
        attributes["gen_ai.response.model"] = answer.model
    if answer.id is not None:
        attributes["gen_ai.response.id"] = answer.id
    if answer.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = answer.finish_reasons
