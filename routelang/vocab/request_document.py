"""The request document `routelang serve` evaluates rules on, defined once: the
gateway builds it (gateway/request.py `document`) and the analysis reasons
about it (`routelang lint --serve`). docs/gateway.md is the reference.

    the JSON body as the client sent it     model, messages, metadata.tier, user, ...
    headers.<lower-case name>               every client header but credentials
    request.type                            "chat" | "completion" | "embedding"
    request.path                            "/v1/chat/completions", ...
    request.stream                          the body's `stream`, as a boolean
    request.model                           the body's `model` (for rules written as request.model)
    request.tokens                          estimated prompt tokens: ceil(characters / 4)

This module imports nothing from routelang.
"""

from __future__ import annotations

from typing import Any

HEADERS, REQUEST = "headers", "request"
# Endpoint path (below /v1) -> request.type.
KINDS = {"/chat/completions": "chat", "/completions": "completion", "/embeddings": "embedding"}
# Headers a rule never sees and an upstream never gets from the client: credentials.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"})

# The fields of `request`, each with what it holds.
REQUEST_FIELDS = {
    "type": "one of " + ", ".join(f'"{kind}"' for kind in KINDS.values()),
    "path": "the endpoint path, a string",
    "stream": "a boolean",
    "model": "the body's `model`",
    "tokens": "a whole number",
}
# request.<field> -> the top-level body field it is a copy of: a rule reading one reads the other.
COPIES = {f"{REQUEST}.model": "model"}

# Fields of an OpenAI request body (chat completions, completions, embeddings) that
# are never an object, with what they are: no field under them ever exists.
# Fields that may be objects (tool_choice, response_format, ...) are not listed.
OPENAI_NOT_OBJECTS = {
    "model": "a string", "user": "a string", "messages": "a list", "prompt": "a string or a list",
    "input": "a string or a list", "stop": "a string or a list", "tools": "a list", "modalities": "a list",
    "stream": "a boolean", "echo": "a boolean", "store": "a boolean", "parallel_tool_calls": "a boolean",
    "logprobs": "a boolean or a number", "temperature": "a number", "top_p": "a number",
    "frequency_penalty": "a number", "presence_penalty": "a number", "n": "a number", "max_tokens": "a number",
    "max_completion_tokens": "a number", "seed": "a number", "top_logprobs": "a number", "best_of": "a number",
    "dimensions": "a number", "suffix": "a string", "service_tier": "a string", "reasoning_effort": "a string",
    "encoding_format": "a string",
}
# An object whose values are strings: `metadata.<key>` exists, nothing under it does.
OPENAI_STRING_MAPS = ("metadata",)


def request_object(body: dict, kind: str, path: str, tokens: int) -> dict[str, Any]:
    """The document's `request`: the field values of REQUEST_FIELDS."""
    return {"type": kind, "path": path, "stream": body.get("stream") is True, "model": body.get("model"),
            "tokens": tokens}


def never_present(path: str) -> str | None:
    """Why a field path can never be present in the gateway's request document
    built from an OpenAI body, or None when it may be."""
    head, _, rest = path.partition(".")
    if head == HEADERS:
        if not rest:
            return None
        name, _, below = rest.partition(".")
        if below:
            return f"`{HEADERS}.{name}` is a header's value, a string: nothing is under it"
        if name != name.lower():
            return f"header names are lower case in the request document: write `{HEADERS}.{name.lower()}`"
        if name in SECRET_HEADERS:
            return f"the `{name}` header is a credential, which rules never see"
        return None
    if head == REQUEST:
        if not rest:
            return None
        name, _, below = rest.partition(".")
        if name not in REQUEST_FIELDS:
            known = ", ".join(f"`{REQUEST}.{f}`" for f in REQUEST_FIELDS)
            return f"the gateway's `{REQUEST}` has only {known} (it replaces a body field `{REQUEST}`)"
        if below:
            return f"`{REQUEST}.{name}` is {REQUEST_FIELDS[name]}: nothing is under it"
        return None
    if rest and head in OPENAI_NOT_OBJECTS:
        return f"`{head}` is {OPENAI_NOT_OBJECTS[head]} in an OpenAI request body: nothing is under it"
    if head in OPENAI_STRING_MAPS and rest.count(".") >= 1:
        key = rest.partition(".")[0]
        return f"`{head}.{key}` is a string in an OpenAI request body: nothing is under it"
    return None


def canonical_field(path: str) -> str:
    """The body field a path reads the same value as (`request.model` -> `model`)."""
    return COPIES.get(path, path)


def with_copies(document: dict) -> dict:
    """A request document with the fields the gateway copies (COPIES) set from
    their source, as in every document the gateway builds (a missing source
    leaves the copy missing, which reads the same as the gateway's null)."""
    out = dict(document)
    for copy, source in COPIES.items():
        head, _, name = copy.partition(".")
        holder = dict(out[head]) if isinstance(out.get(head), dict) else {}
        holder.pop(name, None)
        if source in out:
            holder[name] = out[source]
        if holder or head in out:
            out[head] = holder
    return out
