"""The admin handlers that decide without sending anything: POST /api/route
and POST /api/routing/test. A router this gateway serves is decided through
`plan` and the gateway's State (breakers, health, drains), on the event loop;
another deployed router of the registry by its active version's runtime."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ...runtime.engine import RouteResult
from ...runtime.operators import RequestError
from ...runtime.strategies import Selection
from .. import errors, plan
from ..state import about
from .common import AdminError, Context, active_version
from .models import ConditionOut, MatchedRule, Routed, RoutingTested, RuleReport, TargetOut

if TYPE_CHECKING:
    from ...registry.store import Store
    from .models import RouteBody, RoutingTestBody


async def _decider(ctx: Context, name: str | None) -> tuple[str, int | None, Any, plan.Loaded | None]:
    """(router name, version, runtime router, the Loaded when this gateway serves it). A registry
    router this gateway does not serve is decided by its active version, as the SDK decides locally."""
    loaded = ctx.routers.get(name)
    if loaded is not None:
        return loaded.name, loaded.version, loaded.router, loaded
    if name is None or ctx.store is None:
        raise AdminError(errors.NOT_SERVED, f"this gateway does not serve a router {name!r}", "router")

    def work(store: Store) -> tuple[int, Any]:
        active = active_version(store, name)
        if active is None:
            raise AdminError(errors.NOT_DEPLOYED, f"router {name!r} has no deployed version "
                                                  f"(POST /api/routers/{name}/deploy)", "router")
        digest = next(v["content_hash"] for v in store.versions(name) if v["version"] == active)
        runtime = ctx.runtimes.get(digest)
        if runtime is None:
            from ...loader import make_router, plan_for_deciding
            from ...runtime.model import ConfigError

            try:   # decided here, never sent: as the SDK decides locally, with no upstream secret
                runtime = make_router(plan_for_deciding(store.version(name, active).compiled))
            except ConfigError as exc:
                raise AdminError(errors.DOES_NOT_CHECK, f"router {name!r} version {active} does not load "
                                                        f"here: {exc}", "router") from None
            ctx.runtimes[digest] = runtime
        return active, runtime

    version, runtime = await ctx.in_registry(work)
    return name, version, runtime, None


def _decide(ctx: Context, runtime, loaded: plan.Loaded | None, data: dict) -> tuple[RouteResult, list, bool]:
    """(the SDK's RouteResult, the gateway's attempt order, unavailable). Served: through `plan`
    and the gateway's State (breakers, health, drains); otherwise the runtime alone."""
    try:
        if loaded is None:
            result = runtime.route(data)
            return result, list(result.attempts), False
        with about(loaded):  # the State calls are about this router (a gateway may serve several)
            decision = plan.decide(loaded, data, ctx.state)
    except RequestError as exc:
        raise AdminError(errors.INVALID_REQUEST, f"the request cannot be routed: {exc}", "data") from None
    # attempts[:picked] are the strategy's pick; the rest is the failover the gateway adds.
    picked = decision.attempts[:max(decision.picked, 1)]
    result = RouteResult(decision.rule, Selection(tuple(picked), tuple(decision.shadows)), decision.reason)
    return result, decision.attempts, decision.unavailable


async def route(ctx: Context, _request, body: RouteBody) -> tuple[int, BaseModel]:
    return 200, await _routed(ctx, body.router, body.data, body.record, Routed)


async def routing_test(ctx: Context, _request, body: RoutingTestBody) -> tuple[int, BaseModel]:
    answer = await _routed(ctx, body.router, body.data, False, RoutingTested, expected=body.expected_rule)
    return 200, answer


async def _routed(ctx: Context, router: str | None, data: dict, record: bool, model: type[Routed],
                  expected: str | None = None) -> Routed:
    from ...registry import history
    from ...registry.sdk import history_record

    name, version, runtime, loaded = await _decider(ctx, router)
    started = time.perf_counter()   # the decision's latency: not the lookup or compiling of a version
    result, attempts, unavailable = _decide(ctx, runtime, loaded, data)
    elapsed_ms = (time.perf_counter() - started) * 1000
    request_id = None
    store = ctx.store
    if record and store is not None:
        row = history_record(name, version, data, result, elapsed_ms)
        history.shared_writer(store.path).record(row)
        request_id = row.id
    rule = result.matched_rule
    fields: dict[str, Any] = {
        "router": name, "version": version, "reason": result.explanation, "unavailable": unavailable,
        "matched_rule": None if rule is None else MatchedRule(name=rule.name, priority=rule.priority,
                                                           strategy=rule.strategy),
        "selected_targets": [_target(t) for t in result.selected_targets],
        "attempts": [_target(t) for t in attempts], "shadows": [_target(t) for t in result.shadows],
        "request_id": request_id}
    if model is RoutingTested:
        fields.update(rules=_rule_reports(runtime, data, rule), expected_rule=expected,
                      passed=None if expected is None else rule is not None and rule.name == expected)
    return model(**fields)


def _target(target) -> TargetOut:
    """A target as the admin API shows it: never its header values (they hold secrets)."""
    data = target.to_dict()
    data["headers"] = sorted(target.headers) if target.headers else None
    return TargetOut(**data)


def _rule_reports(runtime, data: dict, selected) -> list[RuleReport]:
    """Each enabled rule, in evaluation order: whether it matches, and each of its conditions with
    `routelang explain`'s words, the request's value and whether it held."""
    from ... import ir
    from ...explain import compare_words
    from ...runtime.operators import evaluate
    from ...runtime.testing import jsonable

    out = []
    for rule in runtime.plan.order:
        conditions = [ConditionOut(field=leaf["field"], operator=leaf["operator"], value=leaf.get("value"),
                                   words=compare_words(ir.Compare(field=leaf["field"], operator=leaf["operator"],
                                                                  value=leaf.get("value"),
                                                                  description=leaf.get("description"))),
                                   actual=jsonable(actual), held=held)
                      for leaf, actual, held in runtime.condition_report(rule, data)]
        out.append(RuleReport(name=rule.name, priority=rule.priority, matched=evaluate(rule.when, data),
                              selected=selected is not None and rule.name == selected.name, conditions=conditions))
    return out
