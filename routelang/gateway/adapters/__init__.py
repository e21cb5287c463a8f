"""One module per upstream wire format. An adapter turns the client's OpenAI
request into the upstream's, and the upstream's answer (whole, streamed, or an
error) back into OpenAI's shape. Adding a wire format is one module with the
`Adapter` interface and one line in `ADAPTERS`.

Every provider not listed speaks OpenAI's format (openai, vllm, custom, modal,
fal, any OpenAI-compatible server) and is passed through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

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


def adapter_for(provider: str) -> Adapter:
    return ADAPTERS.get(provider, DEFAULT)


@dataclass(slots=True)
class EndpointFit:
    """Which of a request's targets can serve its endpoint (`fit`)."""

    servable: list[Target]
    refused: list[tuple[Target, str]]    # the others, each with why

    @property
    def refusal(self) -> str | None:
        """When no target can: the message the request is refused with (400
        unsupported_by_targets, the last target's reason); else None."""
        return self.refused[-1][1] if self.refused and not self.servable else None


def fit(targets: Iterable[Target], path: str) -> EndpointFit:
    """Split `targets` by whether their wire format has endpoint `path` (below /v1). The executor
    and POST /routing/decide both decide by it, so the decision shown is the request's."""
    servable, refused = [], []
    for target in targets:
        reason = adapter_for(target.provider).refuses(path)
        if reason is None:
            servable.append(target)
        else:
            refused.append((target, reason))
    return EndpointFit(servable, refused)


def error_type(error: dict) -> str | None:
    inner = error.get("error") if isinstance(error, dict) else None
    return inner.get("type") if isinstance(inner, dict) else None


def error_code(error: dict) -> Any:
    inner = error.get("error") if isinstance(error, dict) else None
    return inner.get("code") if isinstance(inner, dict) else None


from . import anthropic, azure, openai

DEFAULT: Adapter = openai.OpenAIAdapter()
ADAPTERS: dict[str, Adapter] = {"anthropic": anthropic.AnthropicAdapter(), "azure": azure.AzureAdapter()}
