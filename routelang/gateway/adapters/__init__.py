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
from typing import Any

from routelang.runtime.model import Target

from . import anthropic, azure, openai
from .base import Adapter, StreamTranslator, Unsupported, Usage

__all__ = ["Adapter", "EndpointFit", "StreamTranslator", "Unsupported", "Usage", "adapter_for", "error_code",
           "error_type", "fit"]


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


DEFAULT: Adapter = openai.OpenAIAdapter()
ADAPTERS: dict[str, Adapter] = {"anthropic": anthropic.AnthropicAdapter(), "azure": azure.AzureAdapter()}
