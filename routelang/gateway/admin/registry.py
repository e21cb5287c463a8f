"""The admin handlers of the registry: routers, versions, push, deploy,
rollback, rules, export and import. Each runs its work on the registry worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ...registry.errors import RegistryError, StorageError
from .. import errors
from .common import AdminError, Context, active_version, integer, stored_version
from .models import (
    Deleted,
    Deployed,
    Deployment,
    DiffSummary,
    ExportAnswer,
    ExportDocument,
    ExportedDeployment,
    ExportedRouter,
    ExportedVersion,
    Imported,
    ImportedRouter,
    Pushed,
    RolledBack,
    RouterDetail,
    RouterList,
    RouterSummary,
    RuleList,
    VersionDetail,
    VersionList,
    VersionSummary,
)

if TYPE_CHECKING:
    from ...registry.store import Store
    from .models import DeployBody, PushBody


async def list_routers(ctx: Context, _request, _body) -> tuple[int, BaseModel]:
    rows = await ctx.in_registry(lambda store: store.routers())
    return 200, RouterList(data=[RouterSummary(name=r["name"], active_version=r["active_version"],
                                               latest_version=r["latest"], served=ctx.served(r["name"]))
                                 for r in rows])


async def get_router(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    name = request.match_info["name"]

    def work(store: Store) -> RouterDetail:
        active = active_version(store, name)
        versions = store.versions(name)
        return RouterDetail(name=name, active_version=active, latest_version=versions[-1]["version"],
                            served=False, versions=len(versions),
                            deployments=[Deployment(**d) for d in store.deployments(name)],
                            config=store.version(name).compiled)

    detail = await ctx.in_registry(work)
    detail.served = ctx.served(name)
    return 200, detail


async def delete_router(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    name = request.match_info["name"]

    def work(store: Store) -> None:
        active_version(store, name)
        store.delete(name)

    await ctx.in_registry(work)
    return 200, Deleted(router=name)


async def list_versions(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    name = request.match_info["name"]

    def work(store: Store) -> VersionList:
        active = active_version(store, name)
        return VersionList(router=name, active_version=active,
                           data=[VersionSummary(**v, active=v["version"] == active)
                                 for v in store.versions(name)])

    return 200, await ctx.in_registry(work)


async def get_version(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    name, number = request.match_info["name"], integer(request.match_info["version"], "version")

    def work(store: Store) -> VersionDetail:
        active = active_version(store, name)
        v = stored_version(store, name, number)
        return VersionDetail(**v.summary(), active=v.version == active, entry=v.entry, sources=v.sources,
                             compiled=v.compiled)

    return 200, await ctx.in_registry(work)


async def push(ctx: Context, request, body: PushBody) -> tuple[int, BaseModel]:
    """Checked exactly as `routelang push` checks a file (artifacts._finish): errors stop it (422,
    the diagnostics in the error), warnings are returned with the new version."""
    from ...registry.artifacts import build_text
    from ...registry.store import check_name

    name = request.match_info["name"]

    def work(store: Store) -> Pushed:
        try:
            check_name(name)
        except RegistryError as exc:
            raise AdminError(errors.INVALID_REQUEST, exc.message, "name") from None
        entry = body.filename or f"{name}.route"
        if body.source is not None:
            built = build_text(body.source, entry)
        else:
            built = _built_from_config(body.config, name)
        rendered = built.result.render(built.problems) if built.problems else ""
        found = [d.to_json() for d in built.problems]
        if not built.ok:
            raise AdminError(errors.DOES_NOT_CHECK, f"not pushed: the router does not check clean\n{rendered}",
                             diagnostics=found)
        version, created = store.push(name, built.entry, built.sources, built.compiled, body.message,
                                      from_config=body.config is not None)
        active = store.active_version(name)
        return Pushed(**version.summary(), active=version.version == active, created=created, warnings=found,
                      warnings_text=rendered)

    pushed = await ctx.in_registry(work)
    return (201 if pushed.created else 200), pushed


async def deploy(ctx: Context, request, body: DeployBody) -> tuple[int, BaseModel]:
    name = request.match_info["name"]

    def work(store: Store) -> Deployed:
        active = active_version(store, name)
        target = stored_version(store, name, body.version)
        if active == body.version:
            return Deployed(router=name, version=body.version, previous_version=active, deployed=False,
                            diff=None)
        summary = None if active is None else _diff(store.version(name, active), target)
        if not body.dry_run:
            store.deploy(name, body.version)
        return Deployed(router=name, version=body.version, previous_version=active,
                        deployed=not body.dry_run, diff=summary)

    return 200, await ctx.in_registry(work)


async def rollback(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    name = request.match_info["name"]

    def work(store: Store) -> RolledBack:
        active_version(store, name)
        try:
            current, previous = store.rollback(name)
        except StorageError:
            raise   # the database failed: a 503, not the state of the router
        except RegistryError as exc:
            raise AdminError(errors.NOTHING_TO_ROLL_BACK, exc.message) from None
        return RolledBack(router=name, from_version=current, to_version=previous)

    return 200, await ctx.in_registry(work)


async def rules(ctx: Context, request, _body) -> tuple[int, BaseModel]:
    name = request.match_info["name"]

    def work(store: Store) -> RuleList:
        active_version(store, name)
        v = store.version(name)
        return RuleList(router=name, version=v.version, data=list(v.compiled.get("rules", [])))

    return 200, await ctx.in_registry(work)


async def export(ctx: Context, _request, _body) -> tuple[int, BaseModel]:
    def work(store: Store) -> ExportAnswer:
        routers = []
        for r in store.routers():
            versions = [store.version(r["name"], v["version"]) for v in store.versions(r["name"])]
            routers.append(ExportedRouter(
                name=r["name"], active_version=r["active_version"],
                versions=[ExportedVersion(version=v.version, content_hash=v.content_hash, message=v.message,
                                          created_at=v.created_at, entry=v.entry, sources=v.sources,
                                          compiled=v.compiled) for v in versions],
                deployments=[ExportedDeployment(version=d["version"], deployed_at=d["deployed_at"],
                                                rolled_back=bool(d["rolled_back"]))   # stored 0 or 1
                             for d in store.deployments(r["name"])]))
        return ExportAnswer(exported_at=time.time(), routers=routers)

    return 200, await ctx.in_registry(work)


async def import_(ctx: Context, _request, body: ExportDocument) -> tuple[int, BaseModel]:
    """Every version is checked again like a push before anything is written; then pushed (content
    already there is matched, not duplicated) and the exported active version deployed unless it is
    active already. Importing the same document twice changes nothing the second time."""
    from ...registry.artifacts import build_stored
    from ...registry.store import check_name

    def work(store: Store) -> Imported:
        builds = []
        for r in body.routers:
            try:
                check_name(r.name)
            except RegistryError as exc:
                raise AdminError(errors.INVALID_REQUEST, exc.message, "routers") from None
            for v in sorted(r.versions, key=lambda v: v.version):
                if v.entry not in v.sources:
                    raise AdminError(errors.INVALID_REQUEST, f"router {r.name!r} version {v.version}: its "
                                                             f"entry {v.entry!r} is not among its sources")
                built = _safe_build(lambda v=v: build_stored(v.entry, v.sources))
                if not built.ok:
                    raise AdminError(errors.DOES_NOT_CHECK,
                                     f"not imported: router {r.name!r} version {v.version} does not check "
                                     f"clean\n{built.result.render(built.problems)}",
                                     diagnostics=[d.to_json() for d in built.problems])
                builds.append((r, v, built))
        local: dict[tuple[str, int], int] = {}
        created: dict[str, list[int]] = {r.name: [] for r in body.routers}
        existing: dict[str, list[int]] = {r.name: [] for r in body.routers}
        for r, v, built in builds:
            version, new = store.push(r.name, built.entry, built.sources, built.compiled, v.message)
            local[(r.name, v.version)] = version.version
            (created if new else existing)[r.name].append(version.version)
        out = []
        for r in body.routers:
            deployed = False
            active = store.active_version(r.name) if r.versions else None
            if r.active_version is not None:
                wanted = local[(r.name, r.active_version)]
                if active != wanted:
                    store.deploy(r.name, wanted)
                    active, deployed = wanted, True
            out.append(ImportedRouter(name=r.name, created_versions=created[r.name],
                                      existing_versions=existing[r.name], active_version=active,
                                      deployed=deployed))
        return Imported(routers=out)

    return 200, await ctx.in_registry(work)


# ---- helpers --------------------------------------------------------------------------

def _safe_build(build: Callable[[], Any]):
    """A build whose input cannot be read as a router (an unreadable import, say) is a 422, not a 500."""
    from ...source import SourceError

    try:
        return build()
    except SourceError as exc:
        raise AdminError(errors.DOES_NOT_CHECK, f"not checked: {exc}") from None


def _built_from_config(config: dict, name: str):
    from ...importers.common import ImportProblem
    from ...registry.artifacts import build_config

    config = {"name": name, **config}
    try:
        return build_config(config, name)
    except ImportProblem as exc:
        raise AdminError(errors.DOES_NOT_CHECK, f"not pushed: not a valid config: {exc}", "config",
                         diagnostics=[{"path": list(map(str, p)), "message": m}
                                      for p, m in getattr(exc, "problems", [])]) from None


def _diff(old, new) -> DiffSummary:
    """The semantic diff between two stored versions (as `routelang deploy` prints it)."""
    from ...diff import diff, render_json, render_text
    from ...registry.artifacts import compile_stored

    before, after = compile_stored(old.entry, old.sources), compile_stored(new.entry, new.sources)
    for v, result in ((old, before), (new, after)):
        if not result.ok:  # a routelang upgrade may reject what an older one accepted
            raise AdminError(errors.DOES_NOT_CHECK, f"version {v.version} no longer compiles:\n{result.render()}",
                             diagnostics=[d.to_json() for d in result.diagnostics])
    outcome = diff(before.router, after.router)
    return DiffSummary(text=render_text(outcome), **json.loads(render_json(outcome)))
