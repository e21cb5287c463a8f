"""The admin handlers of the request history."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from ...registry import rows
from ...registry.rows import MAX_LIMIT
from .. import errors
from .common import AdminError, Context, active_version, integer, written
from .models import RequestList, RequestRow

if TYPE_CHECKING:
    from ...registry.store import Store


async def list_requests(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    name = request.match_info["name"]
    limit = integer(request.query.get("limit", "100"), "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise AdminError(errors.INVALID_REQUEST, f"limit must be from 1 to {MAX_LIMIT}", "limit")
    source = request.query.get("source")
    try:
        rows.check_source(source)
    except ValueError as exc:
        raise AdminError(errors.INVALID_REQUEST, str(exc), "source") from None

    def work(store: Store) -> RequestList:
        active_version(store, name)
        written(store)   # what this gateway recorded is listed too
        return RequestList(router=name, data=[RequestRow(**r) for r in store.list_requests(name, limit, source)])

    return 200, await ctx.in_registry(work)


async def get_request(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    request_id = request.match_info["id"]

    def work(store: Store) -> RequestRow:
        written(store)
        found = store.get_request(request_id)
        if found is None:
            raise AdminError(errors.NOT_FOUND_REQUEST, f"no request {request_id!r} in the history", "id")
        found.pop("capture", None)  # captured user text stays in the registry file (`routelang request ID`)
        return RequestRow(**found)

    return 200, await ctx.in_registry(work)
