"""The Anthropic adapter: OpenAI chat in, Messages API out, and back, streaming included."""

from __future__ import annotations

import openai
import pytest
from gateway_fakes import config, http, rule, target


def anthropic_target(up, model="claude-x"):
    return target(up, model, provider="anthropic", headers={"x-api-key": "sk-ant-test"})


def message(text="Hi there", stop="end_turn", tools=()):
    content = [{"type": "text", "text": text}] + list(tools)
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": content,
            "stop_reason": stop, "usage": {"input_tokens": 11, "output_tokens": 4}}


@pytest.fixture
def claude(upstreams, gateway):
    up = upstreams("claude")
    gw = gateway(config(rule("all", [anthropic_target(up)])))
    return up, gw, openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


def test_chat_is_translated_to_messages_and_back(claude):
    up, _gw, client = claude
    up.default = {"body": message()}
    reply = client.chat.completions.create(
        model="auto", max_tokens=100, temperature=0.2, stop="END", user="u-1",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                  {"role": "user", "content": [{"type": "text", "text": "again"}]}])
    assert reply.choices[0].message.content == "Hi there" and reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (11, 4, 15)
    sent = up.received[0]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "sk-ant-test" and sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["body"] == {
        "model": "claude-x", "system": "Be brief.", "max_tokens": 100, "temperature": 0.2,
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                                  {"type": "text", "text": "again"}]}]}


def test_tool_calls_round_trip(claude):
    up, _gw, client = claude
    up.default = {"body": message("", "tool_use", [{"type": "tool_use", "id": "tu_1", "name": "weather",
                                                    "input": {"city": "Oslo"}}])}
    reply = client.chat.completions.create(
        model="auto", tools=[{"type": "function", "function": {"name": "weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}], tool_choice="required",
        messages=[{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "tu_0", "type": "function", "function": {"name": "weather", "arguments": '{"city":"X"}'}}]},
                  {"role": "tool", "tool_call_id": "tu_0", "content": "sunny"}])
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, call.function.arguments) == ("tu_1", "weather", '{"city":"Oslo"}')
    body = up.received[0]["body"]
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["name"] == "weather" and body["tools"][0]["input_schema"]["type"] == "object"
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "tu_0", "name": "weather", "input": {"city": "X"}}]}
    assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "tu_0", "content": "sunny"}


def test_streaming_is_translated(claude):
    up, _gw, client = claude
    up.default = {"stream": [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 9}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"}]}
    chunks = list(client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.prompt_tokens == 9 and chunks[-1].usage.completion_tokens == 3
    assert up.received[0]["body"]["stream"] is True


def test_errors_are_translated_and_overloaded_is_retryable(upstreams, gateway):
    claude_up, backup = upstreams("claude"), upstreams("backup")
    claude_up.script = [{"status": 529, "body": {"type": "error", "error": {"type": "overloaded_error",
                                                                             "message": "Overloaded"}}},
                        {"status": 400, "body": {"type": "error", "error": {"type": "invalid_request_error",
                                                                             "message": "max_tokens too big"}}}]
    gw = gateway(config(rule("chain", [anthropic_target(claude_up), target(backup, "gpt")], strategy="fallback")))
    first = http("POST", gw.url + "/v1/chat/completions", {"model": "a", "messages": []})
    assert first.status_code == 200 and first.headers["x-routelang-target"] == "gpt"
    second = http("POST", gw.url + "/v1/chat/completions", {"model": "a", "messages": []})
    assert second.status_code == 400
    assert second.json() == {"error": {"message": "max_tokens too big", "type": "invalid_request_error",
                                       "param": None, "code": None}}


def test_embeddings_skip_an_anthropic_target(upstreams, gateway):
    claude_up, backup = upstreams("claude"), upstreams("backup")
    backup.default = {"body": {"object": "list", "data": [], "model": "e"}}
    gw = gateway(config(rule("chain", [anthropic_target(claude_up), target(backup, "emb")], strategy="fallback")))
    reply = http("POST", gw.url + "/v1/embeddings", {"model": "a", "input": "x"})
    assert reply.status_code == 200 and reply.headers["x-routelang-target"] == "emb"
    assert claude_up.received == []
    only = gateway(config(rule("all", [anthropic_target(claude_up)])))
    reply = http("POST", only.url + "/v1/embeddings", {"model": "a", "input": "x"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "unsupported_by_targets"


def test_decide_for_embeddings_agrees_with_the_real_request(upstreams, gateway):
    """POST /routing/decide?path=/v1/embeddings lists no anthropic target as an attempt, and says the
    request would be refused (400 unsupported_by_targets) when no target has the endpoint."""
    claude_up, backup = upstreams("claude"), upstreams("backup")
    backup.default = {"body": {"object": "list", "data": [], "model": "e"}}
    body = {"model": "a", "input": "x"}
    gw = gateway(config(rule("chain", [anthropic_target(claude_up), target(backup, "emb")], strategy="fallback")))
    decided = http("POST", gw.url + "/routing/decide?path=/v1/embeddings", body).json()
    assert [t["name"] for t in decided["attempts"]] == ["emb"]
    assert decided["unsupported"] == [{"target": "claude-x", "reason": "an anthropic target serves only "
                                                                      "/v1/chat/completions, not /v1/embeddings"}]
    assert decided["refused"] is None and decided["unavailable"] is False
    chat = http("POST", gw.url + "/routing/decide", {"model": "a", "messages": []}).json()
    assert [t["name"] for t in chat["attempts"]] == ["claude-x", "emb"] and chat["unsupported"] == []

    only = gateway(config(rule("all", [anthropic_target(claude_up)])))
    decided = http("POST", only.url + "/routing/decide?path=/v1/embeddings", body).json()
    real = http("POST", only.url + "/v1/embeddings", body)
    assert real.status_code == 400
    assert decided["attempts"] == [] and decided["refused"] == {"status": 400, **real.json()}
    assert decided["refused"]["error"]["code"] == "unsupported_by_targets"
    assert claude_up.received == []


def test_streamed_tool_calls_and_an_in_band_error(claude):
    up, gw, client = claude
    up.default = {"stream": [
        {"type": "message_start", "message": {"id": "msg_2", "model": "claude-x", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "tu_9", "name": "lookup", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"q":'}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '"x"}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"}]}
    chunks = list(client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}],
                                                 stream=True))
    calls = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert calls[0].id == "tu_9" and calls[0].function.name == "lookup"
    assert "".join(c.function.arguments for c in calls) == '{"q":"x"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    up.default = {"stream": [
        {"type": "message_start", "message": {"id": "msg_3", "model": "claude-x", "usage": {"input_tokens": 3}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "par"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]}
    reply = http("POST", gw.url + "/v1/chat/completions", {"model": "a", "messages": [], "stream": True})
    assert '"par"' in reply.text and "Overloaded" in reply.text and "[DONE]" not in reply.text
