"""The admin handlers of a served router's targets: drain, undrain, and
health pushed from outside. They act on the gateway's State, on the event loop."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from .. import errors, plan
from .common import AdminError, Context
from .models import HealthBody, TargetState


def _target_of(ctx: Context, request: web.Request) -> tuple[plan.Loaded, Any]:
    router, name = request.match_info["router"], request.match_info["target"]
    loaded = ctx.routers.get(router)
    if loaded is None:
        raise AdminError(errors.NOT_SERVED, f"this gateway does not serve a router {router!r}", "router")
    for target in loaded.targets.values():
        if plan.target_name(target) == name:
            return loaded, target
    known = ", ".join(sorted(plan.target_name(t) for t in loaded.targets.values()))
    raise AdminError(errors.NOT_FOUND_TARGET, f"router {router!r} has no target {name!r} (its targets: {known})",
                     "target")


def _target_state(ctx: Context, loaded: plan.Loaded, target) -> TargetState:
    state = ctx.state
    view = state.view(target)
    return TargetState(router=loaded.name, target=plan.target_name(target), drained=state.drained(target.key),
                       healthy=view["healthy"], health_detail=view["health_detail"],
                       selectable=state.healthy(target.key))


def _set_drained(ctx: Context, request: web.Request, drained: bool) -> TargetState:
    loaded, target = _target_of(ctx, request)
    ctx.state.set_drained(target.key, drained)
    ctx.metrics.drained.labels(plan.target_name(target)).set(1 if drained else 0)
    ctx.log.write("drain" if drained else "undrain", router=loaded.name, target=plan.target_name(target))
    return _target_state(ctx, loaded, target)


async def drain(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    return 200, _set_drained(ctx, request, True)


async def undrain(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    return 200, _set_drained(ctx, request, False)


async def push_health(ctx: Context, request, body: HealthBody) -> tuple[int, BaseModel]:
    loaded, target = _target_of(ctx, request)
    ctx.state.set_health(target.key, body.healthy, body.detail, pushed=True)
    ctx.metrics.healthy.labels(plan.target_name(target)).set(1 if body.healthy else 0)
    ctx.log.write("health", router=loaded.name, target=plan.target_name(target), healthy=body.healthy,
                 detail=body.detail, pushed=True)
    return 200, _target_state(ctx, loaded, target)
