"""What every admin handler uses: the parts of the gateway it works on
(`Context`, given by the composition root), its errors, body parsing, and the
registry lookups that turn a missing router or version into a 404."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from ...registry.errors import StorageError
from ...registry.store import RegistryError
from .. import errors
from ..responses import JSON, read_body
from .worker import RegistryWorker

if TYPE_CHECKING:
    from ...registry.store import Store
    from ..logs import JsonLog
    from ..metrics import Metrics
    from ..routers import Source
    from ..state import State
    from ..tenants import Tenants


@dataclass
class Context:
    """The parts of the gateway the admin handlers use."""

    routers: Source
    state: State
    metrics: Metrics
    log: JsonLog
    store: Store | None         # the gateway's registry; None: a file served without one
    worker: RegistryWorker | None   # registry work, off the event loop; None without a registry
    tenants: Tenants | None = None  # tenant keys (serve --tenant-keys); None: tenants are off
    # Runtime routers of registry routers not served here, by content hash (a router deleted and pushed
    # again elsewhere starts at version 1 again: its number says nothing).
    runtimes: dict[str, Any] = field(default_factory=dict)

    def served(self, name: str) -> bool:
        return self.routers.get(name) is not None

    async def in_registry(self, work: Callable[[Store], Any]) -> Any:
        """`work(store)` in the worker thread, on its own connection to the gateway's registry."""
        if self.worker is None:
            raise AdminError(errors.NO_REGISTRY, "this gateway serves a file, not a registry: the registry "
                                                 "endpoints need `routelang serve --registry PATH`")
        return await self.worker.run(work)


# A handler: (context, request, the validated body or None) -> (status, answer).
Handler = Callable[[Context, web.Request, Any], Awaitable[tuple[int, BaseModel]]]


class AdminError(Exception):
    def __init__(self, kind: errors.Kind, message: str, param: str | None = None, **extra: Any):
        super().__init__(message)
        self.kind, self.message, self.param, self.extra = kind, message, param, extra


def error_response(kind: errors.Kind, message: str, param: str | None = None, **extra: Any) -> web.Response:
    return web.Response(status=kind.status, body=errors.error_bytes(kind, message, param, **extra),
                        content_type=JSON)


async def parse(request: web.Request, model: type[BaseModel], read_timeout_s: float) -> BaseModel:
    """The body, validated by `model`. Raises TimeoutError when it does not arrive within
    `read_timeout_s` (the caller answers it and closes the connection)."""
    try:
        raw = await read_body(request, read_timeout_s)
    except web.HTTPRequestEntityTooLarge:
        raise AdminError(errors.TOO_LARGE, "the body is too large") from None
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise AdminError(errors.INVALID_JSON, f"the body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise AdminError(errors.INVALID_REQUEST, f"invalid body: {message}", where) from None


DIGITS = re.compile(r"-?[0-9]+")


def integer(text: str, param: str) -> int:
    """A path or query parameter's number: digits as written (int() would also read `1_0` as 10,
    and ` 1`, `+1` or other scripts' digits as 1)."""
    if not DIGITS.fullmatch(text):
        raise AdminError(errors.INVALID_REQUEST, f"{param} must be an integer, not {text!r}", param)
    return int(text)


def active_version(store: Store, name: str) -> int | None:
    """The router's active version; 404 when there is no such router (a database that fails is not
    that: its StorageError goes on, a 503)."""
    try:
        return store.active_version(name)
    except StorageError:
        raise
    except RegistryError as exc:
        raise AdminError(errors.NOT_FOUND_ROUTER, exc.message, "name") from None


def stored_version(store: Store, name: str, number: int):
    try:
        return store.version(name, number)
    except StorageError:
        raise
    except RegistryError as exc:
        raise AdminError(errors.NOT_FOUND_VERSION, exc.message, "version") from None


FLUSH_S = 2.0   # how long a read of the history waits for this gateway's recorded rows to be written


def written(store: Store) -> None:
    """What this gateway recorded is written before the history is read, so that it counts; a registry
    that does not take it in time cannot be used now (a 503, as when it cannot be read)."""
    from ...registry import history

    try:
        history.shared_writer(store.location).flush(FLUSH_S)
    except TimeoutError as exc:
        raise StorageError(str(exc)) from None
