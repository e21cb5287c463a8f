"""OpenTelemetry traces (routelang/gateway/tracing.py), exported over OTLP/HTTP to a
real receiver on loopback (otlp_sink.py) that decodes the protobuf."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openai
import pytest
from gateway_fakes import ROOT, Served, chat_answer, chunk, config, http, rule, target, wait_for
from otlp_sink import OtlpSink

from routelang.gateway import tracing
from routelang.gateway.adapters import Usage
from routelang.runtime.model import Target

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
CHAT = "/v1/chat/completions"
CHAT_BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


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
    answer = tracing.Answer()
    answer.read(b'{"id": "chatcmpl-9", "model": "gpt-4o-2024-08-06", '
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
    assert not request.is_recording()
    sent = tr.propagate(request, {"traceparent": "the client's"})
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


# ---- through the gateway ------------------------------------------------------------------

def exported(tr: tracing.Tracing, sink: OtlpSink, servers: int = 1, clients: int = 0) -> tuple[dict, list[dict]]:
    """The request's span and its attempts' spans, once exported."""
    def arrived() -> bool:
        tr.provider.force_flush()
        return len(sink.of_kind("server")) >= servers and len(sink.of_kind("client")) >= clients
    assert wait_for(arrived)
    server = sink.of_kind("server")[-1]
    attempts = [s for s in sink.of_kind("client") if s["parent_span_id"] == server["span_id"]]
    return server, sorted(attempts, key=lambda s: s["attributes"]["routelang.attempt"])


@pytest.fixture
def traced(sink):
    made = []

    def make() -> tracing.Tracing:
        tr = tracer_for(sink)
        made.append(tr)
        return tr

    yield make
    for tr in made:
        tr.shutdown()


def test_a_failover_is_one_request_span_with_a_span_per_attempt(upstreams, gateway, sink, traced):
    a, b = upstreams("a"), upstreams("b")
    a.default = {"status": 503, "body": {"error": {"message": "busy", "type": "server_error"}}}
    b.default = {"body": chat_answer("mb-2024", text="from b", prompt_tokens=8, completion_tokens=3)}
    tr = traced()
    gw = gateway(config(rule("chain", [target(a, "ma"), target(b, "mb")], strategy="fallback"), name="chat"),
                 tracing=tr)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="auto", max_tokens=30, messages=[{"role": "user", "content": "my secret"}],
        extra_headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    assert reply.choices[0].message.content == "from b"
    server, (first, second) = exported(tr, sink, clients=2)
    assert server["name"] == "chat auto" and server["parent_span_id"] == CLIENT_SPAN
    attributes = server["attributes"]
    assert {k: attributes.get(k) for k in (
        "routelang.router", "routelang.router.version", "routelang.rule", "routelang.target", "routelang.attempts",
        "http.response.status_code", "gen_ai.provider.name", "gen_ai.response.model", "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons")} == {
        "routelang.router": "chat", "routelang.router.version": 1, "routelang.rule": "chain",
        "routelang.target": "mb", "routelang.attempts": 2, "http.response.status_code": 200,
        "gen_ai.provider.name": "openai", "gen_ai.response.model": "mb-2024", "gen_ai.usage.input_tokens": 8,
        "gen_ai.usage.output_tokens": 3, "gen_ai.response.finish_reasons": ["stop"]}
    assert (first["name"], first["status"], first["attributes"]["error.type"]) == ("chat ma", "error", "503")
    assert (second["name"], second["status"]) == ("chat mb", "unset")
    assert second["attributes"]["server.address"] == "127.0.0.1"
    assert second["attributes"]["gen_ai.request.max_tokens"] == 30
    # Each upstream saw its own attempt's span as the parent.
    assert a.received[0]["headers"]["traceparent"] == f"00-{TRACE_ID}-{first['span_id']}-01"
    assert b.received[0]["headers"]["traceparent"] == f"00-{TRACE_ID}-{second['span_id']}-01"
    assert "my secret" not in str(sink.spans)


def test_a_stream_span_has_the_streamed_answers_model_and_finish_reason(upstreams, gateway, sink, traced):
    up = upstreams("s")
    up.default = {"stream": [chunk("m-2024", "hel"), chunk("m-2024", "lo"), chunk("m-2024", finish="length"),
                             {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m-2024",
                              "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                                       "total_tokens": 7}}, "[DONE]"]}
    tr = traced()
    gw = gateway(config(rule("all", [target(up, "m")])), tracing=tr)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="auto", stream=True, messages=[{"role": "user", "content": "Hi"}]) if c.choices)
    assert text == "hello"
    server, (attempt,) = exported(tr, sink, clients=1)
    for span in (server, attempt):
        assert span["attributes"]["gen_ai.response.model"] == "m-2024"
        assert span["attributes"]["gen_ai.response.finish_reasons"] == ["length"]
        assert span["attributes"]["gen_ai.usage.output_tokens"] == 2
    # Without a client traceparent the request starts the trace, and the upstream joins it.
    assert server["parent_span_id"] is None
    version, trace_id, span_id, flags = up.received[0]["headers"]["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", server["trace_id"], attempt["span_id"])
    assert int(flags, 16) & 1   # sampled (the SDK also sets Trace Context 2's random-trace-id flag, 0x02)


def test_a_split_arm_and_a_refused_request_are_on_the_span(upstreams, gateway, sink, traced):
    a = upstreams("a")
    tr = traced()
    gw = gateway(config(rule("ab", [target(a, "ma", weight=1.0, label="treatment")], strategy="split")),
                 tracing=tr)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    server, (attempt,) = exported(tr, sink, clients=1)
    assert server["attributes"]["routelang.split.label"] == "treatment"
    assert attempt["attributes"]["routelang.split.label"] == "treatment"
    assert http("POST", gw.url + "/v1/chat/completions", b"{not json").status_code == 400
    refused, attempts = exported(tr, sink, servers=2)
    assert attempts == [] and refused["status"] == "unset"   # a client's mistake is not the server's error
    assert refused["attributes"]["error.type"] == "invalid_json"


def test_without_tracing_the_clients_traceparent_goes_upstream_as_it_came(upstreams, gateway):
    up = upstreams("plain")
    gw = gateway(config(rule("all", [target(up)])))
    assert gw.gateway.tracing is None
    header = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
    openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Hi"}], extra_headers={"traceparent": header})
    assert up.received[0]["headers"]["traceparent"] == header


# ---- routelang serve ------------------------------------------------------------------------

WITHOUT_OTEL = (  # `python -c` as if the otel extra were not installed
    "import sys, importlib.abc\n"
    "class NoOtel(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] == 'opentelemetry':\n"
    "            raise ImportError(f'No module named {name!r}')\n"
    "sys.meta_path.insert(0, NoOtel())\n"
    "from routelang.cli import main\n"
    "main(prog_name='routelang')\n")


def run_serve(args: list[str], env: dict[str, str], code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code, "serve"] if code else [sys.executable, "-m", "routelang", "serve"]
    return subprocess.run([*command, *args, "--port", "0"], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_serve_exports_a_span_per_request_from_every_worker(upstreams, sink, tmp_path):
    up = upstreams()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(up, "m")]), name="served")))
    log = tmp_path / "log.jsonl"
    served = Served(str(path), "--workers", "2", "--log-file", str(log), env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": "edge-gateway"})
    try:
        # Both workers up (a worker still starting when SIGTERM comes dies of it, exit status 3).
        assert wait_for(lambda: log.read_text().count('"event":"start"') == 2)
        for _ in range(6):
            assert http("POST", served.url + "/v1/chat/completions", CHAT_BODY).status_code == 200
    finally:
        assert served.stop() == 0   # each worker exports what it still holds as it stops
    servers = sink.of_kind("server")
    assert len(servers) == 6 and len(sink.of_kind("client")) == 6
    assert {s["resource"]["service.name"] for s in servers} == {"edge-gateway"}
    assert {s["attributes"]["routelang.router"] for s in servers} == {"served"}


def test_serve_otlp_endpoint_flag(upstreams, sink, tmp_path):
    up = upstreams()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(up, "m")]))))
    served = Served(str(path), "--otlp-endpoint", sink.url + "/")
    try:
        assert http("POST", served.url + "/v1/chat/completions", CHAT_BODY).status_code == 200
    finally:
        assert served.stop() == 0
    assert len(sink.of_kind("server")) == 1 and sink.paths == ["/v1/traces"]
    assert sink.spans[0]["resource"]["service.name"] == "routelang"


def test_serve_refuses_tracing_it_cannot_do(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [{"provider": "openai", "model_name": "m",
                                                    "endpoint": "http://127.0.0.1:9/v1"}]))))
    missing = run_serve([str(path), "--otlp-endpoint", "http://127.0.0.1:4318"], {}, WITHOUT_OTEL)
    assert missing.returncode == 2
    assert "tracing needs the `otel` extra: pip install 'routelang[otel]'" in missing.stderr
    bad = run_serve([str(path), "--otlp-endpoint", "collector:4318"], {})
    assert bad.returncode == 2 and "is not an http(s) URL" in bad.stderr
    grpc = run_serve([str(path), "--otlp-endpoint", "http://c:4317"], {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert grpc.returncode == 2 and "'grpc' is not supported" in grpc.stderr
    for proc in (missing, bad, grpc):
        assert "Traceback" not in proc.stderr


def test_serve_only_warns_when_the_environment_asks_for_traces_it_cannot_export(tmp_path):
    path = tmp_path / "bad.route"
    path.write_text("router r\nrule x { route nowhere }\n")   # exits once the warning is out
    proc = run_serve([str(path)], {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, WITHOUT_OTEL)
    assert "warning: the OTEL_EXPORTER_OTLP_* variables ask for traces, but tracing needs the `otel` extra" \
        in proc.stderr
    assert proc.returncode == 1 and "error[" in proc.stderr   # the file's own problem, as without the variable


def test_a_shadow_call_has_its_own_span(upstreams, gateway, sink, traced):
    main, copy = upstreams("main"), upstreams("copy")
    tr = traced()
    gw = gateway(config(rule("mirror", [target(main, "m"), target(copy, "shadow-m", is_shadow=True)],
                             strategy="shadow")), tracing=tr)
    openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Hi"}])
    assert wait_for(lambda: len(copy.received) == 1)
    server, spans = exported(tr, sink, clients=2)
    (shadow,) = [s for s in spans if s["attributes"].get("routelang.shadow")]
    (attempt,) = [s for s in spans if not s["attributes"].get("routelang.shadow")]
    assert (shadow["name"], shadow["attributes"]["routelang.attempt"]) == ("chat shadow-m", 0)
    assert shadow["attributes"]["routelang.outcome"] == "ok" and attempt["name"] == "chat m"
    assert copy.received[0]["headers"]["traceparent"].split("-")[2] == shadow["span_id"]
    assert server["attributes"]["routelang.attempts"] == 1   # the shadow is not an attempt
