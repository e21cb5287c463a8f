"""The composition root of the serving side: `build` makes every part once,
from the settings, and hands each one what it needs; nothing holds the whole.

    settings, log, metrics     given, or the defaults
    state                      State: breakers, statistics, health, drains, turns (state.py; on Redis:
                               redisstate.py, started and closed with the application)
    client                     the upstream HTTP client (upstream.py), shared by the executor and the probes
    store, recorder            the registry (registry mode, or given for a file's admin API) and the
                               request history written from the requests (recording.py)
    routers                    FileSource or RegistrySource (routers.py); a new version calls
                               `on_change`, which the root points at the health checker
    health                     HealthChecker (health.py)
    executor                   Executor (executor.py)
    tracing                    given (tracing.py), or None: no spans; shut down with the rest

`application` turns the bundle into the aiohttp application (app.py's
endpoints, the admin API when admin keys are given) and starts and stops the
parts with it. server.py is the only caller in production; the tests build a
gateway the same way.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from routelang.registry.backends import open_store
from routelang.registry.history import HistoryWriter, shared_writer
from routelang.registry.rows import Retention
from routelang.registry.store import Store
from routelang.tenancy.ledger import Accounts

from . import app, auth, plan, upstream
from .executor import Executor, Settings
from .health import HealthChecker
from .logs import JsonLog
from .metrics import Metrics
from .recording import Recorder
from .routers import POLL_S, FileSource, RegistrySource, Source
from .state import InProcessState, State, check_url
from .tenants import Quality, Tenants
from .tracing import Tracing


def state_from_url(url: str) -> State:
    """The State a `--state` value asks for: `memory`, or Redis (its client is imported only then)."""
    problem = check_url(url)
    if problem is not None:
        raise ValueError(problem)
    if url == "memory":
        return InProcessState()
    from .redisstate import RedisState

    return RedisState(url)


def ledger_for(state: State, when_down: tuple[str, str]) -> Accounts:
    """The tenants' ledger: on Redis when the state is (the fleet's), else this process's."""
    from .redisstate import RedisState  # (not the Redis client: that is imported when the link opens)

    if not isinstance(state, RedisState):
        from routelang.tenancy.ledger import Ledger

        return Ledger()
    from .redisledger import Policies, RedisLedger

    return RedisLedger(state.link, Policies(*when_down))


def quality_for(state: State) -> Quality:
    """What quality requirements are judged on: the fleet's attempts when the state is on Redis,
    else this process's."""
    from .redisstate import RedisState

    if not isinstance(state, RedisState):
        return Quality()
    from .redisquality import SharedQuality

    return SharedQuality(state)


@dataclass
class Services:
    """Every handle of one gateway process, built once by `build`."""

    settings: Settings
    log: JsonLog
    metrics: Metrics
    state: State
    client: upstream.Client
    routers: Source
    health: HealthChecker
    executor: Executor
    store: Store | None             # the registry; None: a file served without one
    owns_store: bool                # opened here (registry mode), so closed here
    registry: str | None            # the registry served (registry mode), as /routing shows it
    recorder: Recorder | None       # the request history (registry mode, history on)
    api_keys: auth.Keys | None      # None: clients need no key
    admin_keys: auth.Keys | None    # None: no admin API (/api does not exist)
    tenants: Tenants | None         # tenant keys and their ledger (docs/tenants.md); None: no tenants
    started: float
    tracing: Tracing | None = None  # None: no spans


def build(path: str | None = None, settings: Settings | None = None, state: State | None = None,
          api_keys: auth.Keys | None = None, log: JsonLog | None = None, reload_interval_s: float = 1.0,
          admin_keys: auth.Keys | None = None, store: Store | None = None, *,
          registry: str | Path | None = None, default_router: str | None = None,
          history: bool | HistoryWriter = True, retention: Retention | None = None, capture: bool = False,
          poll_s: float = POLL_S, tracing: Tracing | None = None,
          tenant_keys: str | Path | None = None, when_down: tuple[str, str] = ("refuse", "admit"),
          admitted_rate_headers: bool = False, loaded: plan.Loaded | None = None) -> Services:
    """A gateway of one config file (`path`) or of every deployed router of a `registry`.
    `loaded`: the file already loaded (serve loads it before it listens), not loaded again.
    `store`: the registry a file-serving gateway's admin API works on (the caller's to close).
    `tenant_keys`: the file of tenant keys (`routelang keys`, usually the registry's): requests then need one,
    and are admitted by their workspace's and agent's limits and budgets, counted in this process, or on
    Redis when `state` is there (`when_down`: what budgets, then rate limits, do while Redis is down);
    `admitted_rate_headers`: OpenAI's x-ratelimit-* headers on admitted answers too (else on 429s only).
    Raises plan.LoadError (the file does not load) and registry.RegistryError (no registry)."""
    if (path is None) == (registry is None):
        raise TypeError("build: give either a config file `path` or a `registry`")
    settings = settings or Settings()
    log = log or JsonLog()
    metrics = Metrics()
    state = state or InProcessState()
    state.watch(lambda up: metrics.state_backend_up.set(1 if up else 0))
    client = upstream.Client(settings.connect_timeout_s)
    health = HealthChecker(client, state, metrics, log)
    routers: Source

    def follow_routers() -> None:   # a reload or a deploy: probe what the routers served now ask for
        health.sync(routers.all())

    recorder = None
    if registry is None:
        routers = FileSource(path, reload_interval_s, state, metrics, log, follow_routers, loaded)  # raises plan.LoadError
    else:
        store = open_store(registry, create=False)                                              # raises RegistryError
        routers = RegistrySource(store, state, metrics, log, follow_routers, default_router, poll_s)
        if history is not False:
            writer = history if isinstance(history, HistoryWriter) else shared_writer(store.location, retention)
            recorder = Recorder(writer, capture, metrics.history_dropped)
    executor = Executor(settings, client, state, metrics, log, tracing)
    tenants = None
    if tenant_keys is not None:
        from routelang.tenancy.keys import KeyStore

        tenants = Tenants(KeyStore(tenant_keys), ledger_for(state, when_down), metrics,
                          quality=quality_for(state), admitted_rate_headers=admitted_rate_headers)
    return Services(settings=settings, log=log, metrics=metrics, state=state, client=client, routers=routers,
                    health=health, executor=executor, store=store, owns_store=registry is not None,
                    registry=None if registry is None else store.shown, recorder=recorder,
                    api_keys=api_keys, admin_keys=admin_keys, tenants=tenants, started=time.time(), tracing=tracing)


def application(services: Services) -> web.Application:
    """The aiohttp application of `services`; its startup starts the probes and the reloads,
    its cleanup closes every part."""
    s = services
    endpoints = app.Endpoints(s.routers, s.state, s.executor, s.metrics, s.log, s.recorder, s.api_keys,
                              s.registry, s.started, s.tracing, s.tenants)
    admin, admin_routes = None, []
    if s.admin_keys is not None:
        from .admin.app import Admin

        api = Admin(s.routers, s.state, s.metrics, s.log, s.store, s.api_keys, s.admin_keys, s.tenants,
                    s.settings.request_read_timeout_s)
        admin, admin_routes = api.application(), api.root_routes()
    web_app = app.application(endpoints, admin, admin_routes)

    async def startup(_app: web.Application) -> None:
        await start(s)

    async def cleanup(_app: web.Application) -> None:
        await close(s)

    web_app.on_startup.append(startup)
    web_app.on_cleanup.append(cleanup)
    return web_app


def runner(services: Services, shutdown_timeout_s: float) -> web.AppRunner:
    """The runner of `services`' application, as serve runs it."""
    return app_runner(application(services), services.settings.request_read_timeout_s, shutdown_timeout_s)


def app_runner(web_app: web.Application, read_timeout_s: float, shutdown_timeout_s: float = 60.0) -> web.AppRunner:
    """A runner with serve's options (the benchmarks run theirs with these too). aiohttp's keep-alive
    timeout is what bounds a request's head: it closes a connection that has no whole request head
    when it fires, counted from the connection's start or the previous answer (a byte now and then
    does not put it off), so a slow client (slowloris) holds a connection for the read timeout at
    most; an idle kept-alive connection is closed after as long."""
    return web.AppRunner(web_app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout_s,
                         keepalive_timeout=read_timeout_s)


async def start(s: Services) -> None:
    await s.state.start()   # before the probes, which may ask it for a lease
    if s.tenants is not None:
        await s.tenants.ledger.start()
        await s.tenants.quality.start()
    s.health.sync(s.routers.all())
    s.routers.start()
    if s.registry is None:
        loaded = s.routers.all()[0]
        s.log.write("start", pid=os.getpid(), router=loaded.name, version=loaded.version, sha256=loaded.sha256)
    else:
        s.log.write("start", pid=os.getpid(), registry=s.registry,
                    routers={r.name: r.version for r in s.routers.all()})


async def close(s: Services) -> None:
    await s.routers.close()
    await s.health.close()
    if s.tenants is not None:
        await s.tenants.ledger.close()   # queued settles are sent while the link is still open
        await s.tenants.quality.close()
    await s.state.close()
    await s.executor.close()
    await s.client.close()
    if s.recorder is not None:
        s.recorder.close()   # what is queued is written
    if s.tenants is not None:
        s.tenants.keys.close()
    if s.owns_store:
        s.store.close()      # (a store given by the caller is the caller's to close)
    if s.tracing is not None:
        await asyncio.to_thread(s.tracing.shutdown)   # exports what is queued (a blocking HTTP call)
    s.log.write("stop", pid=os.getpid())
    s.log.close()
