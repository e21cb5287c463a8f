"""The admin handlers of tenants (docs/tenants.md): tenant keys, and the
model-router service's workspace and agent endpoints. A POST of a workspace's
config or an agent's preferences writes its block into the router's active
`.route` source, pushes that as a new version, checked like any push (the
restriction proof included: 422 with the diagnostics), deploys it and answers
with the semantic diff (`?dryRun=true`: checked and diffed, nothing stored)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ...compiler import compile_text
from ...diff import diff, render_json, render_text
from ...ir import Policy
from ...registry.artifacts import build_text
from ...tenancy import seed
from ...tenancy.keys import KeyStoreError, allowance, expiry
from .. import errors, plan
from .common import AdminError, Context, active_version
from .models import (
    AgentModels,
    AgentPreferences,
    AgentPreferencesBody,
    DiffSummary,
    KeyBody,
    KeyCreated,
    KeyInfo,
    KeyList,
    PolicyChanged,
    WorkspaceConfig,
    WorkspaceConfigBody,
)
from .registry import _diff

if TYPE_CHECKING:
    from ...registry.store import Store

NO_TENANTS = "tenants are off: serve with `--tenant-keys REGISTRY`"


def _keys(ctx: Context):
    if ctx.tenants is None:
        raise AdminError(errors.NO_REGISTRY, NO_TENANTS)
    return ctx.tenants.keys


async def create_key(ctx: Context, _request, body: KeyBody) -> tuple[int, BaseModel]:
    store, now = _keys(ctx), time.time()
    try:
        budgets, limits = allowance(body.budget, body.limit)
    except KeyStoreError as exc:
        raise AdminError(errors.INVALID_REQUEST, str(exc), exc.field) from None
    try:
        key, secret = store.create(body.workspace, body.agent, None if body.expires is None
                                   else expiry(body.expires, now), now, budgets, limits)
    except KeyStoreError as exc:
        raise AdminError(errors.INVALID_REQUEST, str(exc), "expires") from None
    ctx.log.write("key_created", id=key.id, workspace=key.workspace, agent=key.agent)
    return 201, KeyCreated(**key.to_dict(now), key=secret)


async def list_keys(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    now = time.time()
    keys = _keys(ctx).list(request.query.get("workspace"))
    return 200, KeyList(data=[KeyInfo(**k.to_dict(now)) for k in keys])


async def revoke_key(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    try:
        key = _keys(ctx).revoke(request.match_info["key"])
    except KeyStoreError as exc:
        raise AdminError(errors.NOT_FOUND_KEY, str(exc), "key") from None
    ctx.tenants.key_cache.forget()   # refused from this gateway's next request on, not a second later
    ctx.log.write("key_revoked", id=key.id, workspace=key.workspace)
    return 200, KeyInfo(**key.to_dict(time.time()))


# ---- the model-router service's shapes ---------------------------------------------------------------

def _served(ctx: Context, request) -> plan.Loaded:
    name = request.query.get("router")
    loaded = ctx.routers.get(name)
    if loaded is None:
        raise AdminError(errors.NOT_SERVED, f"this gateway serves no router {name!r}" if name else
                         ctx.routers.default_problem(), "router")
    return loaded


def _policy(ctx: Context, request, kind: str, param: str):
    loaded = _served(ctx, request)
    name = request.match_info[param]
    for data in loaded.router.plan.policies:
        if (data["kind"], data["name"]) == (kind, name):
            return loaded, Policy.model_validate(data)
    raise AdminError(errors.NOT_FOUND_POLICY, f"router {loaded.name!r} declares no {kind} {name!r}", param)


async def get_workspace(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    loaded, policy = _policy(ctx, request, "workspace", "workspace")
    return 200, WorkspaceConfig(router=loaded.name, **seed.workspace_config(policy))


async def get_agent(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    loaded, policy = _policy(ctx, request, "agent", "agent")
    return 200, AgentPreferences(router=loaded.name, **seed.agent_preferences(policy))


async def agent_models(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    loaded, policy = _policy(ctx, request, "agent", "agent")
    models = []
    for target in loaded.targets.values():
        if not policy.refusals(target):
            models.append({"target": plan.target_name(target), "provider": target.provider,
                           "model": target.model_name, "selectable": ctx.state.healthy(target.key)
                           and ctx.state.admits(target)})
    return 200, AgentModels(router=loaded.name, agentType=policy.name, models=models)


def _change(ctx: Context, request, kind: str, param: str, write) -> object:
    """Write the block into the active version's entry file; push, deploy, diff (in the registry worker)."""
    name = _served(ctx, request).name
    policy_name = request.match_info[param]
    dry_run = request.query.get("dryRun", "false").lower() == "true"

    def work(store: Store) -> PolicyChanged:
        active = active_version(store, name)
        base = store.version(name, active)
        text = base.sources[base.entry]
        before = compile_text(text, base.entry).router
        try:
            block = write(before, policy_name, seed.unsaid_lines(text, kind, policy_name))
            new_text = seed.replace_block(text, kind, policy_name, block)
        except seed.SeedProblem as exc:
            raise AdminError(errors.INVALID_REQUEST, str(exc)) from None
        built = build_text(new_text, base.entry)
        if not built.ok:
            raise AdminError(errors.DOES_NOT_CHECK, "not changed: the router would not check clean\n"
                             + built.result.render(built.problems),
                             diagnostics=[d.to_json() for d in built.problems])
        if dry_run:
            outcome = diff(before, built.result.router)
            return PolicyChanged(router=name, version=active, created=False, deployed=False,
                                 diff=DiffSummary(text=render_text(outcome), **json.loads(render_json(outcome))))
        version, created = store.push(name, built.entry, built.sources, built.compiled,
                                      f"{kind} {policy_name} set through the admin API")
        if version.version != active:
            store.deploy(name, version.version)
        summary = _diff(base, version) if version.version != active else None
        return PolicyChanged(router=name, version=version.version, created=created,
                             deployed=version.version != active, diff=summary)

    return ctx.in_registry(work)


async def set_workspace(ctx: Context, request, body: WorkspaceConfigBody) -> tuple[int, BaseModel]:
    config = body.model_dump(mode="json")
    changed = await _change(ctx, request, "workspace", "workspace",
                            lambda router, name, kept: seed.workspace_block(router, name, config, kept))
    return 200, changed


async def set_agent(ctx: Context, request, body: AgentPreferencesBody) -> tuple[int, BaseModel]:
    preferences = body.model_dump(mode="json")
    changed = await _change(ctx, request, "agent", "agent",
                            lambda router, name, kept: seed.agent_block(router, name, preferences, kept))
    return 200, changed

