"""Running the gateway: one process, or `--workers N` forked processes that
share one listening socket (the kernel spreads connections), with
prometheus_client's multiprocess mode so /metrics sums every worker.

Signals: SIGTERM / SIGINT drain (stop accepting, let in-flight requests
finish for up to `drain_s`), SIGHUP reloads the config (the master passes
both on to its workers)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .executor import Settings

if TYPE_CHECKING:
    from routelang.compiler import CompileResult
    from routelang.registry.rows import Retention

    from .plan import Loaded


@dataclass
class Options:
    path: str | None                # the config file, or None with `registry`
    registry: str | None = None     # serve every deployed router of this registry
    default_router: str | None = None
    history: bool = True            # registry mode: record each request in the history
    retention: Retention | None = None   # None: from the environment
    capture: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    settings: Settings = field(default_factory=Settings)
    api_keys_file: str | None = None
    admin_keys_file: str | None = None    # None: no admin API (no /api at all)
    tenant_keys: str | None = None        # the tenant keys' file (`routelang keys`); None: no tenants
    reload_interval_s: float = 1.0
    drain_s: float = 30.0
    log_file: str | None = None
    loop: str = "asyncio"       # or "uvloop" (when installed); see docs/gateway.md#performance
    state: str = "memory"       # or a Redis URL: state shared by every process on it (redisstate.py)
    budgets_when_down: str = "refuse"   # with tenants on Redis: what budgets do while it is down (or "admit")
    limits_when_down: str = "admit"     # ... and rate limits (or "refuse")
    admitted_rate_headers: bool = False  # with tenants: x-ratelimit-* on admitted answers too (else on 429s only)
    tracing: bool = False       # export traces (checked by tracing.check; each worker makes its own Tracing)
    otlp_endpoint: str | None = None    # None: from OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    compiled: CompileResult | None = None   # `path` as the CLI compiled it (for lint --serve): not compiled again


STOPS = (signal.SIGTERM, signal.SIGINT)
_STOP_ASKED = False   # SIGTERM/SIGINT came while the process was starting, before its event loop handled it


def _stop_while_starting(_signum, _frame) -> None:
    global _STOP_ASKED
    _STOP_ASKED = True


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:   # say where: the bare "[Errno 98] Address already in use" does not
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _check_writable(log_file: str) -> None:
    """Before listening: a log file that cannot be opened is the caller's mistake, said plainly
    (each worker opens it again for itself)."""
    try:
        open(log_file, "ab").close()
    except OSError as exc:
        raise OSError(f"cannot write the log file {log_file}: {exc.strerror or exc}") from None


def run(options: Options) -> int:
    """Serve until SIGTERM; the exit status. Raises plan.LoadError (the file does not
    load), auth.KeyFileError, registry.RegistryError (no registry file) and OSError (the port
    or the log file) before listening."""
    from . import auth, plan  # neither imports prometheus_client (see prepare_multiprocess)

    loaded = None
    if options.registry is None:
        loaded = plan.load(options.path, compiled=options.compiled)   # served as it is: workers inherit it
        options.compiled = None   # the compile's tree and sources, not needed to serve
        what = options.path
    else:
        from routelang.registry.backends import open_store

        open_store(options.registry, create=False).close()  # each worker opens it itself, after the fork
        what = f"registry {options.registry}"
    keys = Keys(auth.load_keys(options.api_keys_file) if options.api_keys_file else None,
                auth.load_keys(options.admin_keys_file) if options.admin_keys_file else None)
    if options.log_file is not None:
        _check_writable(options.log_file)
    sock = _listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    for signum in STOPS:   # a stop from now on is kept until the event loop handles it (below)
        signal.signal(signum, _stop_while_starting)
    print(f"routelang serve: {what} on http://{host}:{port} ({options.workers} worker(s))",
          file=sys.stderr, flush=True)
    if options.tenant_keys and options.workers > 1 and options.state == "memory":
        print(f"routelang serve: warning: each worker keeps its own tenants' ledger: {options.workers} workers admit "
              f"up to {options.workers} times each limit and budget; --state redis://... shares one "
              "(docs/tenants.md)", file=sys.stderr, flush=True)
    if options.workers <= 1:
        return _run_worker(options, sock, keys, loaded)
    return _supervise(options, sock, keys, loaded)


@dataclass(frozen=True)
class Keys:
    clients: dict[str, str] | None      # --api-keys: {digest: key id}
    admins: dict[str, str] | None       # --admin-keys


def _run_worker(options: Options, sock: socket.socket, keys: Keys, loaded: Loaded | None) -> int:
    factory = None
    if options.loop == "uvloop":
        import uvloop  # optional: `pip install uvloop` (the CLI checks it is there)

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_worker(options, sock, keys, loaded))


async def _worker(options: Options, sock: socket.socket, keys: Keys, loaded: Loaded | None) -> int:
    from aiohttp import web

    from . import tracing, wiring
    from .logs import JsonLog

    log_stream = open(options.log_file, "ab") if options.log_file else None  # noqa: ASYNC230, SIM115 (once, at start)
    try:
        services = wiring.build(options.path, settings=options.settings, state=wiring.state_from_url(options.state),
                                api_keys=keys.clients, log=JsonLog(log_stream), reload_interval_s=options.reload_interval_s,
                                admin_keys=keys.admins, registry=options.registry,
                                default_router=options.default_router, history=options.history,
                                retention=options.retention, capture=options.capture,
                                tracing=tracing.from_options(options.otlp_endpoint, os.environ) if options.tracing
                                else None,
                                tenant_keys=options.tenant_keys,
                                when_down=(options.budgets_when_down, options.limits_when_down),
                                admitted_rate_headers=options.admitted_rate_headers, loaded=loaded)
        runner = wiring.runner(services, options.drain_s)
        await runner.setup()
        settle_gc()
        await web.SockSite(runner, sock, backlog=4096).start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        if _STOP_ASKED:
            stop.set()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(services.routers.reload("SIGHUP")))
        await stop.wait()
        services.log.write("draining", pid=os.getpid())
        await runner.cleanup()
        return 0
    finally:
        if log_stream is not None:
            log_stream.close()


# Young objects before a generation-0 collection (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def settle_gc() -> None:
    """Before serving: the modules and the loaded config live as long as the process, so they
    leave the collector's view (`gc.freeze`; measured here, each full collection walked them for
    about 60 ms, every few thousand requests); and generation 0 waits for more young objects:
    the requests in flight hold a few thousand that reference counting frees anyway, and at
    the default threshold a collection ran every ~15 requests for nothing. (Frozen objects in
    reference cycles are never collected: the first config, once a reload replaces it, stays in
    memory; that happens once, later versions are collected as usual.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _supervise(options: Options, sock: socket.socket, keys: Keys, loaded: Loaded | None) -> int:
    from prometheus_client import multiprocess

    children: list[int] = []
    # Signals wait while the workers are forked: each worker starts with a stop kept for its
    # event loop (not the master's handler), and the master passes on what came meanwhile.
    forwarded = (*STOPS, signal.SIGHUP)
    signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)
    for _ in range(options.workers):
        pid = os.fork()
        if pid == 0:  # a worker
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
            os._exit(_run_worker(options, sock, keys, loaded))
        children.append(pid)
    sock.close()

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                continue  # already gone

    for signum in forwarded:
        signal.signal(signum, forward)
    if _STOP_ASKED:   # a stop came before the workers were forked
        forward(signal.SIGTERM, None)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        if pid in children:
            children.remove(pid)
            multiprocess.mark_process_dead(pid)
            status = status or os.waitstatus_to_exitcode(code)
    return status


def prepare_multiprocess(workers: int) -> str | None:
    """Before anything imports prometheus_client: a directory for the workers' metric
    files. Returns it when this call made it (the caller removes it at exit)."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    directory = tempfile.mkdtemp(prefix="routelang-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory
