"""What every adapter is and gives: the `Adapter` interface, a stream translator,
the usage it reads, and the error for an endpoint a wire format does not have."""

from __future__ import annotations

from typing import Protocol

from routelang.runtime.model import Target


class Unsupported(Exception):
    """This wire format has no such endpoint (e.g. embeddings on Anthropic)."""


class Usage:
    __slots__ = ("completion_tokens", "prompt_tokens")

    def __init__(self, prompt_tokens: int = 0, completion_tokens: int = 0):
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class StreamTranslator(Protocol):
    done: bool                          # the upstream ended the stream properly
    usage: Usage | None
    error: dict | None                  # an in-band error event from the upstream (OpenAI's shape)

    def feed(self, line: bytes) -> list[bytes]:
        """One line of the upstream's SSE stream -> the frames to send the client."""


class Adapter(Protocol):
    passthrough: bool  # the upstream already speaks OpenAI's format: its error bodies go back as they are

    def refuses(self, path: str) -> str | None:
        """Why this wire format has no endpoint `path` (below /v1); None when it has."""

    def request(self, target: Target, path: str, body: dict, stream: bool) -> tuple[str, dict, dict[str, str]]:
        """(URL, body to send, headers of the wire format) for an endpoint path below /v1.
        Raises Unsupported."""

    def response(self, data: bytes, path: str) -> tuple[bytes, Usage | None]:
        """A successful upstream body -> (the OpenAI body for the client, usage)."""

    def error(self, status: int, data: bytes) -> dict:
        """An upstream error body -> OpenAI's error object (`{"error": {...}}`)."""

    def stream(self, path: str, client_wants_usage: bool) -> StreamTranslator: ...
