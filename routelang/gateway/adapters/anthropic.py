"""Anthropic's Messages API, translated to and from OpenAI chat completions,
streaming included. Only `/chat/completions` exists there."""

from __future__ import annotations

import time
from typing import Any

import orjson

from routelang.runtime.model import Target

from . import Unsupported, Usage

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter"}


# ---- requests -------------------------------------------------------------------

def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image(url: str) -> dict:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                blocks.append(_image(url))
    return blocks


def _append(messages: list[dict], role: str, blocks: list[dict]) -> None:
    """Anthropic wants alternating roles: consecutive messages of one role merge."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _tool_choice(choice: Any) -> dict | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    return None


def messages_request(body: dict, model: str, stream: bool) -> dict:
    system: list[str] = []
    messages: list[dict] = []
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append(_text(content))
        elif role == "tool":
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"),
                                        "content": _text(content)}])
        elif role == "assistant":
            blocks = _blocks(content)
            for call in m.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    arguments = orjson.loads(function.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    arguments = {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                               "input": arguments})
            _append(messages, "assistant", blocks)
        else:
            _append(messages, "user", _blocks(content))
    out: dict[str, Any] = {"model": model, "messages": messages,
                           "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens")
                           or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [{"name": f.get("name"), "description": f.get("description", ""),
                         "input_schema": f.get("parameters") or {"type": "object"}}
                        for t in tools if isinstance(t, dict) and isinstance(f := t.get("function"), dict)]
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        out["tool_choice"] = choice
    if stream:
        out["stream"] = True
    return out


# ---- responses ------------------------------------------------------------------

def chat_completion(message: dict) -> tuple[dict, Usage]:
    text, calls = [], []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    raw_usage = message.get("usage") or {}
    usage = Usage(raw_usage.get("input_tokens") or 0, raw_usage.get("output_tokens") or 0)
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": message.get("id"), "object": "chat.completion", "created": int(time.time()),
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": FINISH_REASONS.get(message.get("stop_reason"), "stop")}],
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.total},
    }, usage


def error_object(status: int, data: bytes) -> dict:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    inner = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(inner, dict):
        return {"error": {"message": str(inner.get("message", "")), "type": inner.get("type"),
                          "param": None, "code": None}}
    text = data[:500].decode("utf-8", "replace") if data else ""
    return {"error": {"message": f"upstream returned HTTP {status}" + (f": {text}" if text else ""),
                      "type": "upstream_error", "param": None, "code": None}}


class AnthropicAdapter:
    passthrough = False

    def refuses(self, path: str) -> str | None:
        if path != "/chat/completions":
            return f"an anthropic target serves only /v1/chat/completions, not /v1{path}"
        return None

    def request(self, target: Target, path: str, body: dict, stream: bool) -> tuple[str, dict, dict[str, str]]:
        if (reason := self.refuses(path)) is not None:
            raise Unsupported(reason)   # (callers ask `refuses` first)
        return (target.endpoint.rstrip("/") + "/messages", messages_request(body, target.model_name, stream),
                {"anthropic-version": API_VERSION})

    def response(self, data: bytes, path: str) -> tuple[bytes, Usage | None]:
        completion, usage = chat_completion(orjson.loads(data))
        return orjson.dumps(completion), usage

    def error(self, status: int, data: bytes) -> dict:
        return error_object(status, data)

    def stream(self, path: str, client_wants_usage: bool) -> MessagesStream:
        return MessagesStream(client_wants_usage)


class MessagesStream:
    """Anthropic's stream events -> OpenAI chat.completion.chunk frames."""

    def __init__(self, client_wants_usage: bool):
        self.client_wants_usage = client_wants_usage
        self.done = False
        self.usage: Usage | None = None
        self.error: dict | None = None
        self._id = self._model = None
        self._created = int(time.time())
        self._finish: str | None = None
        self._tools: dict[int, int] = {}   # content block index -> tool call index

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        chunk = {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def feed(self, line: bytes) -> list[bytes]:
        if not line.startswith(b"data:"):
            return []
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            return []
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id, self._model = message.get("id"), message.get("model")
            self.usage = Usage((message.get("usage") or {}).get("input_tokens") or 0, 0)
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tools[event.get("index", 0)] = len(self._tools)
                return [self._chunk({"tool_calls": [{"index": index, "id": block.get("id"), "type": "function",
                                                     "function": {"name": block.get("name"), "arguments": ""}}]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self._tools.get(event.get("index", 0), 0)
                return [self._chunk({"tool_calls": [{"index": index,
                                                     "function": {"arguments": delta.get("partial_json", "")}}]})]
            return []
        if kind == "message_delta":
            self._finish = FINISH_REASONS.get((event.get("delta") or {}).get("stop_reason"), "stop")
            output = (event.get("usage") or {}).get("output_tokens")
            if self.usage is not None and isinstance(output, int):
                self.usage.completion_tokens = output
            return []
        if kind == "message_stop":
            self.done = True
            frames = [self._chunk({}, self._finish or "stop")]
            if self.client_wants_usage and self.usage is not None:
                usage = {"prompt_tokens": self.usage.prompt_tokens,
                         "completion_tokens": self.usage.completion_tokens, "total_tokens": self.usage.total}
                frames.append(b"data: " + orjson.dumps({"id": self._id, "object": "chat.completion.chunk",
                                                        "created": self._created, "model": self._model,
                                                        "choices": [], "usage": usage}) + b"\n\n")
            frames.append(b"data: [DONE]\n\n")
            return frames
        if kind == "error":
            inner = event.get("error") or {}
            self.error = {"error": {"message": str(inner.get("message", "")), "type": inner.get("type"),
                                    "param": None, "code": None}}
        return []
