"""OpenTelemetry traces (routelang/gateway/tracing.py), exported over OTLP/HTTP to a
real receiver on loopback (otlp_sink.py) that decodes the protobuf."""

from __future__ import annotations

import pytest
from otlp_sink import OtlpSink

from routelang.gateway import tracing
from routelang.gateway.adapters import Usage
from routelang.runtime.model import Target

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
CHAT = "/v1/chat/completions"


@pytest.fixture
def sink():
    receiver = OtlpSink()
    yield receiver
    receiver.close()


def tracer_for(sink: OtlpSink) -> tracing.Tracing:
    made = tracing.from_options(sink.url, {})
    assert made is not None
    return made


def test_tracing_is_off_unless_asked_for():
    assert tracing.from_options(None, {}) is None
    assert tracing.wanted(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.wanted(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.wanted("http://c:4318", {"OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})


def test_bad_options_are_refused_with_a_reason():
    with pytest.raises(tracing.TracingUnavailable, match="'grpc' is not supported"):
        tracing.from_options("http://c:4317", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(tracing.TracingUnavailable, match="is not an http"):
        tracing.from_options("collector:4318", {})


def test_a_request_and_its_attempts_export_with_the_genai_conventions(sink):
    tr = tracer_for(sink)
    target = Target("azure", "gpt-4o-prod", "https://contoso.openai.azure.com:8443", name="prod", label="variant")
    request = tr.request_span({"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "tracestate": "vendor=1"}, CHAT)
    tr.named(request, CHAT, {"model": "auto", "messages": [{"role": "user", "content": "secret prompt"}]})
    failed = tr.attempt_span(request, target, CHAT, {"max_tokens": 20, "temperature": 0.5}, "ab", 1, 0)
    tr.end_attempt(failed, request, outcome="http_503", status=503, usage=None)
    attempt = tr.attempt_span(request, target, CHAT, {"max_tokens": 20, "temperature": 0.5}, "ab", 2, 1)
    sent = tr.inject(attempt, {"Traceparent": "client's", "x-team": "ml"})
    answer = tracing.Answer.of_body(b'{"id": "chatcmpl-9", "model": "gpt-4o-2024-08-06", '
                                    b'"choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]}')
    tr.end_attempt(attempt, request, outcome="ok", status=200, usage=Usage(11, 4), answer=answer)
    tr.end_request(request, status=200, error=None, router="chat", version=3, rule="ab", target=target,
                   attempts=2, split_label="variant", usage=Usage(11, 4))
    tr.shutdown()

    server = sink.of_kind("server")
    clients = sink.of_kind("client")
    assert len(server) == 1 and len(clients) == 2
    server = server[0]
    assert server["name"] == "chat auto"
    assert (server["trace_id"], server["parent_span_id"]) == (TRACE_ID, CLIENT_SPAN)
    assert server["attributes"] == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "auto", "http.request.method": "POST",
        "url.path": CHAT, "http.response.status_code": 200, "routelang.rule": "ab", "routelang.attempts": 2,
        "routelang.router": "chat", "routelang.router.version": 3, "routelang.target": "prod",
        "gen_ai.provider.name": "azure.ai.openai", "routelang.split.label": "variant",
        "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 4,
        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.response.id": "chatcmpl-9",
        "gen_ai.response.finish_reasons": ["stop", "length"]}
    assert server["status"] == "unset" and server["resource"]["service.name"] == "routelang"
    first, second = sorted(clients, key=lambda s: s["attributes"]["routelang.attempt"])
    for span in (first, second):
        assert span["name"] == "chat gpt-4o-prod"
        assert (span["trace_id"], span["parent_span_id"]) == (TRACE_ID, server["span_id"])
        assert {k: span["attributes"][k] for k in (
            "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "server.address",
            "server.port", "routelang.target", "routelang.rule", "routelang.split.label",
            "gen_ai.request.max_tokens", "gen_ai.request.temperature")} == {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "azure.ai.openai",
            "gen_ai.request.model": "gpt-4o-prod", "server.address": "contoso.openai.azure.com",
            "server.port": 8443, "routelang.target": "prod", "routelang.rule": "ab",
            "routelang.split.label": "variant", "gen_ai.request.max_tokens": 20, "gen_ai.request.temperature": 0.5}
    assert (first["attributes"]["error.type"], first["attributes"]["http.response.status_code"]) == ("503", 503)
    assert first["status"] == "error" and first["attributes"]["routelang.try"] == 0
    assert second["status"] == "unset" and "error.type" not in second["attributes"]
    assert second["attributes"]["gen_ai.response.finish_reasons"] == ["stop", "length"]
    assert (second["attributes"]["gen_ai.usage.input_tokens"], second["attributes"]["gen_ai.usage.output_tokens"]) \
        == (11, 4)
    # The upstream gets the attempt's own context, not the client's header.
    assert sent == {"x-team": "ml", "traceparent": f"00-{TRACE_ID}-{second['span_id']}-01",
                    "tracestate": "vendor=1"}
    assert not any("secret prompt" in str(v) for s in sink.spans for v in s["attributes"].values())
    assert set(sink.paths) == {"/v1/traces"} and set(sink.content_types) == {"application/x-protobuf"}


def test_an_unsampled_client_trace_is_followed_and_passed_on_without_exporting(sink):
    tr = tracer_for(sink)
    request = tr.request_span({"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-00"}, CHAT)
    attempt = tr.attempt_span(request, Target("openai", "m", "http://127.0.0.1:9/v1"), CHAT, {}, "r", 1, 0)
    sent = tr.inject(attempt, {})
    tr.end_attempt(attempt, request, outcome="ok", status=200, usage=None)
    tr.end_request(request, status=200, error=None, router="r", version=1, rule="r", target=None, attempts=1,
                   split_label=None, usage=None)
    tr.shutdown()
    trace_id, span_id, flags = sent["traceparent"].split("-")[1:]
    assert (trace_id, flags) == (TRACE_ID, "00") and span_id not in (CLIENT_SPAN, "0" * 16)
    assert sink.spans == []


@pytest.mark.parametrize("header", [
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",   # zero trace id
    f"00-{TRACE_ID}-0000000000000000-01",                        # zero span id
    f"ff-{TRACE_ID}-{CLIENT_SPAN}-01",                           # the forbidden version
    f"00-{TRACE_ID.upper()}-{CLIENT_SPAN}-01",                   # upper-case hex
    f"00-{TRACE_ID}-{CLIENT_SPAN}-01-extra",                     # version 00 has nothing after the flags
    "garbage",
])
def test_an_invalid_traceparent_starts_a_new_trace(sink, header):
    tr = tracer_for(sink)
    request = tr.request_span({"traceparent": header}, CHAT)
    tr.end_request(request, status=200, error=None, router=None, version=None, rule="-", target=None,
                   attempts=0, split_label=None, usage=None)
    tr.shutdown()
    (span,) = sink.spans
    assert span["parent_span_id"] is None and span["trace_id"] != TRACE_ID


def test_a_later_version_of_traceparent_is_read_by_its_known_fields(sink):
    tr = tracer_for(sink)
    request = tr.request_span({"traceparent": f"01-{TRACE_ID}-{CLIENT_SPAN}-01-future"}, CHAT)
    tr.end_request(request, status=502, error="all_targets_failed", router="r", version=1, rule="x",
                   target=None, attempts=2, split_label=None, usage=None)
    tr.shutdown()
    (span,) = sink.spans
    assert (span["trace_id"], span["parent_span_id"]) == (TRACE_ID, CLIENT_SPAN)
    assert span["status"] == "error" and span["attributes"]["error.type"] == "all_targets_failed"


def test_a_stream_answer_is_read_from_its_frames():
    answer = tracing.Answer()
    answer.see([b'data: {"id":"c1","model":"m-2024","choices":[{"delta":{"content":"hi"},"finish_reason":null}]}\n\n'])
    answer.see([b'data: {"id":"c1","model":"m-2024","choices":[{"delta":{},"finish_reason":"stop"}]}\n\n',
                b"data: [DONE]\n\n"])
    assert (answer.model, answer.id, answer.finish_reasons) == ("m-2024", "c1", ["stop"])
