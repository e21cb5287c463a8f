"""Streaming rules (fail over before the first byte, in-band error after it,
first-token timeout) and client disconnects cancelling upstream calls."""

from __future__ import annotations

import socket

import openai
import pytest
from gateway_fakes import FAST, chunk, config, http, rule, target, wait_for

from routelang.gateway.executor import Settings

STREAM = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def events(reply) -> list[str]:
    return [line[6:] for line in reply.text.split("\n") if line.startswith("data: ")]


def test_a_stream_fails_over_while_nothing_reached_the_client(upstreams, gateway):
    a, b, c = upstreams("a"), upstreams("b"), upstreams("c")
    a.default = {"status": 500, "body": {"error": {"message": "down"}}}
    b.default = {"stream": [chunk("mb", "x")], "cut_after": 0}  # closes before any event
    gw = gateway(config(rule("chain", [target(a, "ma"), target(b, "mb"), target(c, "mc")], strategy="fallback")))
    reply = http("POST", gw.url + "/v1/chat/completions", STREAM)
    assert reply.status_code == 200 and reply.headers["x-routelang-target"] == "mc"
    assert reply.headers["x-routelang-attempts"] == "3"
    assert events(reply)[-1] == "[DONE]"
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**STREAM) if c.choices)
    assert text == "hello"


def test_after_the_first_byte_a_failure_is_an_in_band_error_without_done(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = {"stream": [chunk("ma", "one"), chunk("ma", "two"), "[DONE]"], "cut_after": 1}
    gw = gateway(config(rule("chain", [target(a, "ma"), target(b, "mb")], strategy="fallback")))
    reply = http("POST", gw.url + "/v1/chat/completions", STREAM)
    data = events(reply)
    assert reply.status_code == 200
    assert '"one"' in data[0] and "[DONE]" not in data
    assert '"code":"stream_interrupted"' in data[-1]
    assert b.received == []  # no failover once the client had bytes
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(**STREAM):
            pass
    line = gw.log_lines()[-1]
    assert line["error"] == "stream_interrupted" and line["attempts"][0]["outcome"] == "stream_interrupted"


def test_first_token_timeout_fails_over_and_total_timeout_ends_a_slow_stream(upstreams, gateway):
    stall, slow, ok = upstreams("stall"), upstreams("slow"), upstreams("ok")
    stall.default = {"stream": [chunk("s", "never")], "stall_after": 0}
    slow.default = {"stream": [chunk("x", str(i)) for i in range(50)] + ["[DONE]"], "event_delay": 0.1}
    settings = Settings(**{**FAST.__dict__, "first_token_timeout_s": 0.3})
    gw = gateway(config(
        rule("slow_rule", [target(slow, "slow", timeout_ms=1500)], priority=5,
             conditions=[{"field": "metadata.kind", "operator": "equals", "value": "slow"}]),
        rule("chain", [target(stall, "stall"), target(ok, "ok")], strategy="fallback")), settings=settings)
    reply = http("POST", gw.url + "/v1/chat/completions", STREAM)
    assert reply.headers["x-routelang-target"] == "ok" and events(reply)[-1] == "[DONE]"
    assert wait_for(lambda: stall.cancelled == 1)
    # Every event comes within the first-token timeout, but the whole (5 s) exceeds the target's 1.5 s.
    reply = http("POST", gw.url + "/v1/chat/completions", {**STREAM, "metadata": {"kind": "slow"}})
    data = events(reply)
    assert 1 < len(data) < 50 and '"stream_interrupted"' in data[-1]


def _raw_request(url: str, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return sock


def test_a_client_disconnect_cancels_the_upstream_call(upstreams, gateway):
    up = upstreams()
    up.default = {"hang": True}
    gw = gateway(config(rule("one", [target(up)])))
    sock = _raw_request(gw.url, b'{"model":"x","messages":[]}')
    assert wait_for(lambda: len(up.received) == 1)
    sock.close()
    assert wait_for(lambda: up.cancelled == 1)
    assert wait_for(lambda: any(line["status"] == 499 for line in gw.log_lines()))


def test_a_client_disconnect_mid_stream_cancels_the_upstream_stream(upstreams, gateway):
    up = upstreams()
    up.default = {"stream": [chunk("m", "first"), chunk("m", "second")], "stall_after": 1}
    gw = gateway(config(rule("one", [target(up)])))
    sock = _raw_request(gw.url, b'{"model":"x","messages":[],"stream":true}')
    received = b""
    while b"first" not in received:
        received += sock.recv(65536)
    sock.close()
    assert wait_for(lambda: up.cancelled == 1)
    line = next(iter(gw.log_lines()))
    assert line["status"] == 499 and line["error"] == "client_disconnected"


def test_streaming_ttft_and_tokens_are_measured(upstreams, gateway):
    up = upstreams()
    gw = gateway(config(rule("one", [target(up, "m", **{"x-routelang": {"cost_per_1k_tokens": 10.0}})])))
    reply = http("POST", gw.url + "/v1/chat/completions", STREAM)
    assert reply.status_code == 200
    line = gw.log_lines()[-1]
    assert line["ttft_ms"] > 0 and line["prompt_tokens"] == 5 and line["completion_tokens"] == 2
    assert line["cost"] == pytest.approx(0.07)
    metrics = http("GET", gw.url + "/metrics").text
    assert 'routelang_tokens_total{kind="completion",router="test-router",target="m"} 2.0' in metrics
    assert 'routelang_time_to_first_token_seconds_count{router="test-router",rule="one",target="m"} 1.0' in metrics


def test_an_upstream_refusing_stream_options_is_called_again_without_them(upstreams, gateway):
    up = upstreams()
    refusal = {"status": 400, "body": {"error": {"message": "Unrecognized request argument supplied: stream_options",
                                                 "type": "invalid_request_error"}}}
    up.default = lambda body: refusal if "stream_options" in body else {"stream": [chunk("m", "ok"), "[DONE]"]}
    gw = gateway(config(rule("one", [target(up)])))
    reply = http("POST", gw.url + "/v1/chat/completions", STREAM)
    assert reply.status_code == 200 and events(reply)[-1] == "[DONE]"
    assert ["stream_options" in r["body"] for r in up.received] == [True, False]
    # A client that asked for usage itself gets the refusal as it is.
    reply = http("POST", gw.url + "/v1/chat/completions", {**STREAM, "stream_options": {"include_usage": True}})
    assert reply.status_code == 400 and "stream_options" in reply.json()["error"]["message"]
