"""The gateway's answers: a response with the x-routelang headers of its
Exchange, and the gateway's own errors in OpenAI's shape (errors.py)."""

from __future__ import annotations

from aiohttp import web

from . import auth, errors
from .exchange import Exchange

JSON = "application/json"


def respond(ex: Exchange, status: int, body: bytes, extra: dict[str, str] | None = None) -> web.Response:
    """The answer with the x-routelang headers; `extra` (a dict the caller made for it, taken
    over) adds headers, which the gateway's own override."""
    ex.status = status
    headers = ex.headers()
    if extra:
        extra.update(headers)
        headers = extra
    return web.Response(status=status, body=body, content_type=JSON, headers=headers)


def error(ex: Exchange, kind: errors.Kind, message: str, retry_after_s: int | None = None) -> web.Response:
    ex.error = kind.code
    extra = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return respond(ex, kind.status, errors.error_bytes(kind, message), extra)


def refusal(refused: auth.Refused) -> web.Response:
    """A request without a valid client key (before any Exchange exists)."""
    return web.Response(status=refused.kind.status, body=errors.error_bytes(refused.kind, refused.message),
                        content_type=JSON)
