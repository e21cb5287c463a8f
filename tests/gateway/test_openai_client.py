"""Conformance: the official `openai` client against the gateway."""

from __future__ import annotations

import openai
import pytest
from gateway_fakes import config, rule, target


@pytest.fixture
def one(upstreams, gateway):
    up = upstreams("primary")
    gw = gateway(config(rule("all", [target(up, "gpt-real")])))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-secret", max_retries=0, timeout=20)
    return up, gw, client


def test_chat_completion_passes_through_with_the_targets_model(one):
    up, _gw, client = one
    reply = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "from primary"
    assert reply.usage.total_tokens == 7
    sent = up.received[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "gpt-real"
    assert sent["body"]["messages"] == [{"role": "user", "content": "hi"}]
    # The client's key never goes upstream.
    assert "Authorization" not in sent["headers"] and "authorization" not in sent["headers"]


def test_response_headers_name_rule_target_and_attempts(one):
    _up, _gw, client = one
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-routelang-rule"] == "all"
    assert raw.headers["x-routelang-target"] == "gpt-real"
    assert raw.headers["x-routelang-attempts"] == "1"
    assert float(raw.headers["x-routelang-overhead-ms"]) >= 0
    assert raw.headers["x-request-id"]


def test_streaming_chat(one):
    up, _gw, client = one
    stream = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "hello"
    # The gateway asked for usage upstream (to count tokens) though the client did not.
    assert up.received[0]["body"]["stream_options"] == {"include_usage": True}


def test_streaming_usage_is_stripped_unless_asked(one):
    _up, _gw, client = one
    chunks = list(client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True))
    assert all(c.usage is None for c in chunks)
    chunks = list(client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7


def test_completions_and_embeddings(upstreams, gateway):
    up = upstreams()
    up.default = lambda body: {"body": {"object": "list", "model": body["model"],
                                        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                                        "usage": {"prompt_tokens": 3, "total_tokens": 3}}} \
        if "input" in body else {"body": {"id": "c", "object": "text_completion", "created": 1,
                                          "model": body["model"], "choices": [{"index": 0, "text": "done",
                                                                               "finish_reason": "stop",
                                                                               "logprobs": None}]}}
    gw = gateway(config(rule("all", [target(up, "real")])))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    assert client.completions.create(model="auto", prompt="say").choices[0].text == "done"
    emb = client.embeddings.create(model="auto", input="abc")
    assert emb.data[0].embedding == [0.5, 0.25]
    assert [r["path"] for r in up.received] == ["/v1/completions", "/v1/embeddings"]


def test_models_lists_names_rules_route_on_then_target_models(upstreams, gateway):
    up = upstreams()
    gw = gateway(config(
        rule("fast", [target(up, "small-model")], conditions=[{"field": "model", "operator": "in",
                                                                "value": ["fast", "cheap"]}], priority=10),
        rule("rest", [target(up, "big-model")])))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == ["fast", "cheap", "small-model", "big-model"]


def test_no_matching_rule_is_a_bad_request(upstreams, gateway):
    up = upstreams()
    gw = gateway(config(rule("only_fast", [target(up)], conditions=[{"field": "model", "operator": "equals",
                                                                      "value": "fast"}])))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "no_matching_rule"
    assert up.received == []


def test_upstream_client_errors_come_back_as_they_are(one):
    up, _gw, client = one
    up.default = {"status": 400, "body": {"error": {"message": "bad temperature", "type": "invalid_request_error",
                                                    "param": "temperature", "code": None}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}], temperature=9)
    assert info.value.param == "temperature"
    assert "bad temperature" in info.value.message
    assert len(up.received) == 1  # never retried
    up.default = {"status": 401, "body": {"error": {"message": "no key", "type": "invalid_request_error"}}}
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])


def test_every_target_failing_is_a_502(one):
    up, _gw, client = one
    up.default = {"status": 500, "body": {"error": {"message": "boom"}}}
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert info.value.code == "all_targets_failed"
