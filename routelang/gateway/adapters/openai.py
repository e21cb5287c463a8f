"""OpenAI's wire format: the body passes through with `model` replaced."""

from __future__ import annotations

import orjson

from routelang.runtime.model import Target

from . import Usage


def _usage(data: dict | None) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt, completion = data.get("prompt_tokens"), data.get("completion_tokens")
    return Usage(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


def error_object(status: int, data: bytes) -> dict:
    """The upstream's error as OpenAI's `{"error": {...}}`, wrapping a body that is not one."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        inner = parsed["error"]
        return {"error": {"message": str(inner.get("message", "")), "type": inner.get("type"),
                          "param": inner.get("param"), "code": inner.get("code")}}
    text = data[:500].decode("utf-8", "replace") if data else ""
    return {"error": {"message": f"upstream returned HTTP {status}" + (f": {text}" if text else ""),
                      "type": "upstream_error", "param": None, "code": None}}


class OpenAIAdapter:
    passthrough = True

    def refuses(self, path: str) -> str | None:
        return None   # every endpoint the gateway serves is OpenAI's

    def request(self, target: Target, path: str, body: dict, stream: bool) -> tuple[str, dict, dict[str, str]]:
        out = dict(body)
        out["model"] = target.model_name
        if stream:
            # Ask for the usage chunk to count tokens; stripped again if the client did not ask.
            options = out.get("stream_options")
            out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return target.endpoint.rstrip("/") + path, out, {}

    def response(self, data: bytes, path: str) -> tuple[bytes, Usage | None]:
        usage = None
        if b'"usage"' in data:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                usage = _usage(parsed.get("usage"))
        return data, usage

    def error(self, status: int, data: bytes) -> dict:
        return error_object(status, data)

    def stream(self, path: str, client_wants_usage: bool) -> PassThroughStream:
        return PassThroughStream(client_wants_usage)


class PassThroughStream:
    """OpenAI SSE in, OpenAI SSE out: frames are forwarded as they come; the
    usage chunk is read (and dropped when the client did not ask for it)."""

    __slots__ = ("client_wants_usage", "done", "error", "usage")

    def __init__(self, client_wants_usage: bool):
        self.client_wants_usage = client_wants_usage
        self.done = False
        self.usage: Usage | None = None
        self.error: dict | None = None

    def feed(self, line: bytes) -> list[bytes]:
        if not line.startswith(b"data:"):
            return []  # blank separators, comments (keep-alives), event names
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return [b"data: [DONE]\n\n"]
        if data.startswith(b'{"error"'):
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = {"error": {"message": "malformed error event", "type": "upstream_error"}}
            self.error = parsed
            return []
        if b'"usage"' in data:
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                chunk = None
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                self.usage = _usage(chunk["usage"])
                if not self.client_wants_usage:
                    if not chunk.get("choices"):
                        return []  # the usage-only chunk the gateway asked for
                    chunk.pop("usage")
                    return [b"data: " + orjson.dumps(chunk) + b"\n\n"]
        return [b"data: " + data + b"\n\n"]
