"""The model-router service's analytics and health endpoints (docs/tenants.md):
`GET /api/analytics/workspaces/{id}`, `/api/analytics/models`,
`/api/metrics/requests`, `/api/health/overview` and `/health/detailed`, in the
service's shapes. The numbers come from the request history through
`tenancy.usage` (the same rows and sums as `routelang usage`); the targets'
health from `health.conditions`, which /health/ready reads too."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections import Counter
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ... import __version__
from ...registry.errors import RegistryError
from ...registry.rows import MAX_LIMIT
from ...tenancy import usage
from ...timetext import iso
from .. import errors, plan
from ..health import conditions
from .common import AdminError, Context, integer, written
from .models import (
    ComponentCheck,
    HealthDetailed,
    HealthOverview,
    ModelAnalytics,
    ModelCounts,
    Performance,
    RequestMetric,
    RequestMetrics,
    RoutingCounts,
    TargetHealth,
    TokenUsage,
    WorkspaceAnalytics,
)

if TYPE_CHECKING:
    from ...registry.store import Store

# The service's time ranges (it refuses any other).
TIME_RANGES = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
DEFAULT_TIME_RANGE = "24h"
NO_AGENT = "unknown"    # the service's key for a request without an agent
REGISTRY_CHECK_S = 2.0  # /health/detailed waits this long for the registry to answer


def _time_range(request) -> tuple[str, float]:
    """(the range as asked, the time it starts)."""
    text = request.query.get("timeRange", DEFAULT_TIME_RANGE)
    if text not in TIME_RANGES:
        raise AdminError(errors.INVALID_REQUEST, f"timeRange must be one of {', '.join(TIME_RANGES)}, not {text!r}",
                         "timeRange")
    return text, time.time() - TIME_RANGES[text]


def _status(status: str) -> str:
    """A row's status in the service's words: `success` for an answered request."""
    return "success" if status == "ok" else status


def _percent(rate: float | None) -> float | None:
    return None if rate is None else rate * 100


def _declared_workspaces(ctx: Context) -> set[str]:
    return {p["name"] for loaded in ctx.routers.all() for p in loaded.router.plan.policies
            if p["kind"] == "workspace"}


async def workspace_analytics(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    workspace = request.match_info["workspace"]
    time_range, since = _time_range(request)
    declared = _declared_workspaces(ctx)

    def work(store: Store) -> WorkspaceAnalytics:
        known = declared | usage.key_workspaces(store)
        if workspace not in known:
            raise AdminError(errors.INVALID_REQUEST, f"no workspace {workspace!r}: no served router declares it and "
                             f"no key was issued for it (workspaces: {', '.join(sorted(known)) or 'none'})",
                             "workspace")
        written(store)
        rows = usage.history_rows(store, since, workspace=workspace)
        totals = usage.Totals.of(rows)
        return WorkspaceAnalytics(
            workspaceId=workspace, timeRange=time_range, totalRequests=totals.requests,
            uniqueAgents=len({row["agent"] for row in rows if row["agent"] is not None}),
            totalTokens=totals.tokens_in + totals.tokens_out, totalCost=round(totals.spend, 9),
            averageLatency=totals.latency_mean(), successRate=_percent(totals.success_rate),
            modelUsage=usage.counts(rows, "first_target", "-"), agentUsage=usage.counts(rows, "agent", NO_AGENT))

    return 200, await ctx.in_registry(work)


def _targets_named(ctx: Context, model: str) -> list[str]:
    """The served routers' targets `model` names: a target name, or every target serving that model."""
    targets = {plan.target_name(t): t.model_name for loaded in ctx.routers.all() for t in loaded.targets.values()}
    named = sorted(name for name, served in targets.items() if model in (name, served))
    if not named:
        known = ", ".join(sorted(set(targets) | set(targets.values()))) or "none"
        raise AdminError(errors.INVALID_REQUEST, f"modelId: no served target or model {model!r} (there are: {known})",
                         "modelId")
    return named


async def model_analytics(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    time_range, since = _time_range(request)
    model = request.query.get("modelId")
    targets = None if model is None else _targets_named(ctx, model)

    def work(store: Store) -> ModelAnalytics:
        written(store)
        rows = usage.history_rows(store, since, targets=targets)
        totals = usage.Totals.of(rows)
        hours = Counter(f"{datetime.datetime.fromtimestamp(row['time'], datetime.UTC).hour:02d}:00" for row in rows)
        return ModelAnalytics(
            timeRange=time_range, modelId=model or "all", targets=targets or [], totalRequests=totals.requests,
            averageLatency=totals.latency_mean(), successRate=_percent(totals.success_rate),
            totalTokens=totals.tokens_in + totals.tokens_out, totalCost=round(totals.spend, 9),
            requestsByAgent=usage.counts(rows, "agent", NO_AGENT),
            requestsByStatus=dict(Counter(_status(row["status"]) for row in rows).most_common()),
            hourlyDistribution=dict(sorted(hours.items())))

    return 200, await ctx.in_registry(work)


async def request_metrics(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    limit = integer(request.query.get("limit", "100"), "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise AdminError(errors.INVALID_REQUEST, f"limit must be from 1 to {MAX_LIMIT}", "limit")

    def work(store: Store) -> RequestMetrics:
        written(store)
        metrics = [_metric(row) for row in usage.history_rows(store, newest=limit)]
        return RequestMetrics(metrics=metrics, count=len(metrics))

    return 200, await ctx.in_registry(work)


def _metric(row: dict) -> RequestMetric:
    tokens_in, tokens_out = row["tokens_in"], row["tokens_out"]
    total = None if tokens_in is None and tokens_out is None else (tokens_in or 0) + (tokens_out or 0)
    return RequestMetric(
        requestId=row["id"], modelId=row["first_target"], agentType=row["agent"], workspaceId=row["workspace"],
        requestType=None, latency=row["latency_ms"], totalLatency=row["latency_ms"],
        usage=TokenUsage(promptTokens=tokens_in, completionTokens=tokens_out, totalTokens=total, cost=row["cost"]),
        status=_status(row["status"]), timestamp=iso(row["time"], "milliseconds"), router=row["router"], version=row["version"],
        rule=row["rule"])


async def health_overview(ctx: Context, _request, _body) -> tuple[int, BaseModel]:
    now = time.time()
    routers = ctx.routers.all()
    targets = conditions(routers, ctx.state)
    by_condition: dict[str, list[str]] = {"healthy": [], "degraded": [], "unhealthy": [], "drained": []}
    for target in targets:
        by_condition[target.condition].append(target.name)
    rules = sum(len(loaded.router.plan.order) for loaded in routers)
    performance = Performance(requestsLastHour=None, averageLatency=None, successRate=None)
    if ctx.worker is not None:
        def work(store: Store) -> usage.Totals:
            written(store)
            return usage.Totals.of(usage.history_rows(store, now - 3600))

        try:
            totals = await ctx.in_registry(work)
        except RegistryError as exc:   # the registry down: the targets' health is still worth answering
            ctx.log.write("health_overview_without_history", error=exc.message)
        else:
            performance = Performance(requestsLastHour=totals.requests, averageLatency=totals.latency_mean(),
                                      successRate=_percent(totals.success_rate))
    return 200, HealthOverview(
        timestamp=iso(now, "milliseconds"),
        models=ModelCounts(total=len(targets), active=len(targets) - len(by_condition["drained"]),
                           **{k: len(by_condition[k]) for k in ("healthy", "degraded", "unhealthy")}),
        routing=RoutingCounts(totalRules=rules, enabledRules=rules), performance=performance,
        healthyModels=by_condition["healthy"], degradedModels=by_condition["degraded"],
        unhealthyModels=by_condition["unhealthy"], drainedModels=by_condition["drained"])


async def health_detailed(ctx: Context, _request, _body) -> tuple[int, BaseModel]:
    """503 when no router is served or no target is selectable (as /health/ready); `degraded` when the
    gateway serves but a part is not well: a target unhealthy or half-open (a drained one was taken out
    by hand: not a fault), the shared state unreachable, the registry down."""
    routers = ctx.routers.all()
    targets = conditions(routers, ctx.state)
    counted = Counter(t.condition for t in targets)
    state = ctx.state.status()
    checks = {
        "routers": ComponentCheck(status="up" if routers else "down",
                                  detail={"served": {r.name: r.version for r in routers},
                                          "lastReloadError": ctx.routers.last_error}),
        "targets": ComponentCheck(status="down" if not any(t.selectable for t in targets) else
                                  "up" if counted["healthy"] + counted["drained"] == len(targets) else "degraded",
                                  detail={"total": len(targets), **{k: counted[k] for k in
                                                                    ("healthy", "degraded", "unhealthy", "drained")}}),
        "state": ComponentCheck(status="degraded" if state["degraded"] else "up" if state["up"] else "down",
                                detail=state),
        "registry": await _registry_check(ctx),
    }
    if checks["routers"].status == "down" or checks["targets"].status == "down":
        status = "unhealthy"
    else:
        status = "healthy" if all(c.status in ("up", "not_used") for c in checks.values()) else "degraded"
    answer = HealthDetailed(
        status=status, timestamp=iso(time.time(), "milliseconds"), service="routelang", version=__version__, checks=checks,
        targets=[TargetHealth(router=t.router, target=t.name, provider=t.provider, model=t.model,
                              condition=t.condition, breaker=t.breaker) for t in targets])
    return (503 if status == "unhealthy" else 200), answer


async def _registry_check(ctx: Context) -> ComponentCheck:
    if ctx.worker is None:
        return ComponentCheck(status="not_used")
    location = ctx.store.shown
    try:
        await asyncio.wait_for(ctx.in_registry(lambda store: store.active_versions()), REGISTRY_CHECK_S)
    except TimeoutError:
        return ComponentCheck(status="down", detail={"location": location,
                                                     "error": f"no answer within {REGISTRY_CHECK_S:g} s"})
    except RegistryError as exc:   # down, locked past its timeout, unreadable
        return ComponentCheck(status="down", detail={"location": location, "error": exc.message})
    return ComponentCheck(status="up", detail={"location": location})
