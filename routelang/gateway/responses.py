"""The gateway's answers: a response with the x-routelang headers of its
Exchange, and the gateway's own errors in OpenAI's shape (errors.py)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import auth, errors
from .exchange import Exchange

JSON = "application/json"


def respond(ex: Exchange, status: int, body: bytes, extra: dict[str, str] | None = None) -> web.Response:
    """The answer with the x-routelang headers; `extra` (a dict the caller made for it, taken
    over) adds headers, which the gateway's own override."""
    ex.status = status
    return web.Response(status=status, body=body, content_type=JSON, headers=ex.headers(extra))


def error(ex: Exchange, kind: errors.Kind, message: str, retry_after_s: int | None = None) -> web.Response:
    ex.error = kind.code
    extra = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return respond(ex, kind.status, errors.error_bytes(kind, message), extra)


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The request body; a client that sends it too slowly raises TimeoutError, so a stalled
    upload does not hold the handler forever. A body that came with the headers (the usual
    case) is read without arming a timer."""
    if request.content.is_eof():
        return await request.read()
    async with asyncio.timeout(timeout_s):
        return await request.read()


def body_late(timeout_s: float) -> str:
    """The message of the 408 that answers a body which did not arrive in time."""
    return f"the request body did not arrive within {timeout_s:g} s"


async def answer_then_close(request: web.Request, response: web.Response) -> web.Response:
    """`response` (to a body that stalled) sent at once, then the connection closes: the rest of
    the body is not waited for (aiohttp would linger reading it for up to 10 s after the answer)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is written; the transport flushes it, then closes
    return response


def refusal(refused: auth.Refused) -> web.Response:
    """A request without a valid client key (before any Exchange exists)."""
    return web.Response(status=refused.kind.status, body=errors.error_bytes(refused.kind, refused.message),
                        content_type=JSON)
