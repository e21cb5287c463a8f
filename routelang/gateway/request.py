"""The request document a rule sees, built once per HTTP request. Its shape
is defined in vocab/request_document.py, which the analysis reads too.

`routelang test FILE --http BODY.json` and `POST /routing/decide` build the
same document through `document()`; docs/gateway.md is the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..vocab.request_document import HEADERS, KINDS, REQUEST, SECRET_HEADERS, request_object

# Names the router a request is for (docs/gateway.md); meant for this gateway, not the upstream.
ROUTER_HEADER = "x-routelang-router"
# Hop-by-hop headers (RFC 9110 7.6.1), those the gateway sets itself for each upstream call, and its own.
NOT_FORWARDED = SECRET_HEADERS | frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "host", "content-length", "content-type", "accept-encoding", "expect", ROUTER_HEADER,
})

CHARS_PER_TOKEN = 4


def estimate_tokens(body: Mapping[str, Any], kind: str) -> int:
    """ceil(characters / 4) over the prompt's text: for chat, every message's
    string content and the text parts of multi-part content; for completions
    `prompt`; for embeddings `input` (strings, or lists of them; token-id
    lists count one token per id)."""
    if kind == "chat":
        chars = 0
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if not isinstance(message, dict):
                    continue
                content = message.get("content")
                if isinstance(content, str):
                    chars += len(content)
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            chars += len(part["text"])
        return -(-chars // CHARS_PER_TOKEN)
    return _text_tokens(body.get("prompt" if kind == "completion" else "input"))


def _text_tokens(value: Any) -> int:
    if isinstance(value, str):
        return -(-len(value) // CHARS_PER_TOKEN)
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, int) and not isinstance(item, bool):
                total += 1
            else:
                total += _text_tokens(item)
        return total
    return 0


def rule_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`headers.<name>` of the document: lower-case names, credentials left out;
    a repeated header keeps its first value."""
    out: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name not in SECRET_HEADERS and name not in out:
            out[name] = value
    return out


def document(body: dict, headers: Iterable[tuple[str, str]], path: str) -> dict:
    """The document rules are evaluated on. The gateway's own keys (`headers`,
    `request`) take the place of body fields of the same name."""
    kind = KINDS.get(path.removeprefix("/v1"), "chat")
    doc = dict(body)
    doc[HEADERS] = rule_headers(headers)
    doc[REQUEST] = request_object(body, kind, path, estimate_tokens(body, kind))
    return doc
