"""What routelang's own code costs per gateway request, without any upstream (run by hand).

    python benchmarks/gateway_hotpath.py [--requests 4000] [--repeat 5] [--only routelang|tenants|minimal]
                                         [--profile FILE] [--config bench.json]
                                         [--state memory|redis://HOST:PORT/DB]
                                         [--trace off|sampled|unsampled-by-client|unsampled-by-sampler]
                                         [--tenants] [--rate-limit-headers all|refusals]
                                         [--connections 1] [--upstream]

One process, one uvloop: the gateway's aiohttp application (served as `routelang
serve` serves it: the same AppRunner options) on a loopback port, and a raw
keep-alive client sending the requests one after the other on one connection.
No upstream is called: the executor's upstream call is replaced by what a
successful call does after the bytes arrive (the adapter reads the answer, the
attempt is recorded, the response is built), so the figure is the aiohttp
server plus routelang's own work (document, decision, State calls, metrics, the
log line, headers, the response). The same server with a minimal handler (read
the body, answer fixed bytes) is the baseline: the difference is routelang's.

Printed: the best of `--repeat` runs, in microseconds of CPU time (of this
process: server and client) per request; the machine is shared, and CPU time
and the minimum are the figures least disturbed by other load.
`--state` serves on that state (as `serve --state`; with Redis, the figure includes
this process's side of sharing, not redis-server's own CPU).
`--tenants` serves a router with a workspace and an agent, its target priced,
with tenants on (`serve --tenant-keys`: every request carries a tenant key, is
held to its workspace's and agent's restrictions and admitted by a reserve on
two budgets and two limits, then settled) and, as the baseline, the same router
with tenants off (the same request, its key unread); their runs are taken in
turn (so a change of load falls on both alike; `--profile` is then not taken),
and the row says what admission adds to the CPU per request.
`--rate-limit-headers all`: x-ratelimit-* headers on admitted answers too, as serve's option (the
default, `refusals`, is serve's: on 429s only).
`--connections N` sends on N connections at once (requests in flight together:
the Redis ledger writes the reserves that arrive in one event-loop tick together,
which one connection never shows).
`--upstream` calls a real upstream instead: gateway_overhead.py's fake OpenAI server,
in another process on loopback (its CPU is not counted), so the figure holds
routelang's upstream client and the sockets of a proxied request too (what
admission adds is then a share of a whole proxied request).
`--only` runs one side `--requests` times and prints nothing else (`untenanted`: the
`--tenants` router with tenants off), for
instruction counts: `valgrind --tool=callgrind` of two runs with different
`--requests`, the difference divided by the difference in requests. With
`--state redis://` add `--timers-scale 50`: the shared state's timers (the link's
250 ms timeout and 0.5 s retry, the ledger's 20 ms settle batches, quality's
0.5 s sync) run 50 times slower, as everything does under callgrind, so that a
Redis call does not time out and each timer's work falls on as many requests as
it does at full speed.

`--trace` (the `otel` extra): the gateway exports OpenTelemetry spans over OTLP/HTTP
to a receiver in another process (so the figure holds the span work and the
exporter's thread, not the receiver's). `sampled`: every request; `unsampled-by-client`:
each request carries a `traceparent` whose sampled flag is off (the default sampler
follows it); `unsampled-by-sampler`: OTEL_TRACES_SAMPLER=traceidratio with ratio 0.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from routelang.gateway import executor as executor_module
from routelang.gateway import tracing, wiring
from routelang.gateway.adapters import adapter_for
from routelang.gateway.logs import JsonLog
from routelang.gateway.responses import respond
from routelang.gateway.server import settle_gc

BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}],
                   "max_tokens": 16}).encode()
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how are you?"},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}).encode()
# What an upstream (the benchmark's fake, an OpenAI-compatible server) answers besides the body.
UPSTREAM_HEADERS = {"Content-Type": "application/json", "Content-Length": str(len(ANSWER)),
                    "Date": "Wed, 02 Dec 2026 01:00:00 GMT", "Server": "uvicorn", "x-request-id": "up-1"}
CONFIG = {"name": "bench", "rules": [{"name": "all", "targets": [{
    "provider": "openai", "model_name": "bench-model", "endpoint": "http://127.0.0.1:9/v1",
    "x-routelang": {"circuit_breaker": {"failure_threshold": 5, "cooldown_ms": 30000}}}]}]}
# Every request carries a bearer key, as an OpenAI client's does (without keys the gateway reads no
# further than the header: --tenants then compares requests that differ only by what their key does).
BEARER = b"Authorization: Bearer sk-bench\r\n"
TENANT_KEY_CHARS = 43   # after a tenant key's "rlk_": secrets.token_urlsafe(32), as routelang keys makes it
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: wrk\r\n" + BEARER +
           b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
UNSAMPLED_PARENT = b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n"
# An OTLP/HTTP receiver that reads each export and answers 200 (another process: its CPU is not counted).
RECEIVER = """
import http.server
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


async def answered_call(self, request, ex, target, adapter, url, data, headers, timeout_s):
    """Executor._call's work once the upstream's answer is in (the call itself costs nothing here)."""
    seconds = 0.0002
    ex.upstream_s += seconds
    out, usage = adapter.response(ANSWER, ex.path.removeprefix("/v1"))
    self._record(ex, target, "ok", seconds, ok=True, status=200, usage=usage)
    ex.target, ex.usage = target, usage
    if ex.answer is not None:
        ex.answer.read(out)
    return respond(ex, 200, out, self._returned(UPSTREAM_HEADERS))


# --upstream: the port of the fake upstream every target calls (None: no upstream call, answered_call).
UPSTREAM_PORT: int | None = None


def routelang_app(config: Path, log_path: Path, otlp_endpoint: str | None = None,
                  state: str = "memory", tenant_keys: Path | None = None,
                  admitted_rate_headers: bool = False) -> web.Application:
    tracer = tracing.from_options(otlp_endpoint, os.environ) if otlp_endpoint else None
    services = wiring.build(str(config), log=JsonLog(log_path.open("ab")), tracing=tracer,
                            state=wiring.state_from_url(state), tenant_keys=tenant_keys,
                            admitted_rate_headers=admitted_rate_headers)
    if UPSTREAM_PORT is None:
        services.executor._call = answered_call.__get__(services.executor, executor_module.Executor)
    assert adapter_for("openai").passthrough
    return wiring.application(services)


def minimal_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, headers={"Content-Type": "application/json", "x-request-id": "1"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    return app


class Client(asyncio.Protocol):
    """Sends REQUEST, waits for the whole response (Content-Length), sends the next."""

    request = REQUEST

    def __init__(self, count: int, done: asyncio.Future, request: bytes | None = None):
        self.left, self.done, self.buffer = count, done, b""
        if request is not None:
            self.request = request

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        # Content-Length as aiohttp spells it (not the whole head lowercased: reading a longer head
        # would cost the client more, and this process's CPU is measured).
        at = self.buffer.find(b"\r\nContent-Length: ", 0, end) + len(b"\r\nContent-Length: ")
        length = int(self.buffer[at:self.buffer.index(b"\r\n", at)])
        if len(self.buffer) < end + 4 + length:
            return
        if not self.buffer.startswith(b"HTTP/1.1 200"):
            self.done.set_exception(RuntimeError(self.buffer[:300].decode("latin-1")))
            return
        self.buffer = self.buffer[end + 4 + length:]
        self.left -= 1
        if self.left:
            self.transport.write(self.request)
        else:
            self.done.set_result(None)


def serve_runner(app: web.Application) -> web.AppRunner:
    """`app`'s runner with serve's options (the read timeout at its default)."""
    from routelang.gateway import wiring
    from routelang.gateway.executor import Settings

    return wiring.app_runner(app, Settings().request_read_timeout_s)


async def serve_and_send(app: web.Application, count: int, repeat: int, profile: str | None,
                         connections: int = 1) -> list[float]:
    runner = serve_runner(app)
    await runner.setup()
    settle_gc()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    times = []
    try:
        for run in range(repeat + 1):  # the first run warms up (caches, connections)
            profiler = cProfile.Profile() if profile and run == repeat else None
            if profiler:
                profiler.enable()
            start = time.process_time()
            await send(loop, port, count, connections, Client.request)
            elapsed = time.process_time() - start
            if profiler:
                profiler.disable()
                profiler.dump_stats(profile)
            if run:
                times.append(elapsed / count * 1e6)
    finally:
        await runner.cleanup()
    return times


async def send(loop: asyncio.AbstractEventLoop, port: int, count: int, connections: int, request: bytes) -> None:
    """`count` requests over `connections` keep-alive connections at once, each one after the other."""
    dones = [loop.create_future() for _ in range(connections)]
    transports = [(await loop.create_connection(functools.partial(Client, count // connections, done, request),
                                                "127.0.0.1", port))[0] for done in dones]
    await asyncio.gather(*dones)
    for transport in transports:
        transport.close()


async def serve_and_send_alternately(apps: dict[str, tuple[web.Application, bytes]], count: int,
                                     repeat: int, connections: int = 1) -> dict[str, list[float]]:
    """As serve_and_send for several servers at once, their runs taken in turn (A, B, A, B, ...), so
    that a change of the machine's load falls on each of them alike."""
    runners, ports = {}, {}
    for name, (app, _) in apps.items():
        runners[name] = serve_runner(app)
        await runners[name].setup()
        site = web.TCPSite(runners[name], "127.0.0.1", 0)
        await site.start()
        ports[name] = site._server.sockets[0].getsockname()[1]
    settle_gc()
    loop = asyncio.get_running_loop()
    times: dict[str, list[float]] = {name: [] for name in apps}
    try:
        for run in range(repeat + 1):  # the first round warms up (caches, connections)
            for name, (_, request) in apps.items():
                start = time.process_time()
                await send(loop, ports[name], count, connections, request)
                elapsed = time.process_time() - start
                if run:
                    times[name].append(elapsed / count * 1e6)
    finally:
        for runner in runners.values():
            await runner.cleanup()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("routelang", "untenanted", "tenants", "minimal"))
    parser.add_argument("--profile", help="cProfile the last routelang run into this file")
    parser.add_argument("--config", type=Path, help="a router config (default: one target with a breaker)")
    parser.add_argument("--state", default="memory", help="memory (default) or a Redis URL, as serve --state")
    parser.add_argument("--trace", choices=("off", "sampled", "unsampled-by-client", "unsampled-by-sampler"),
                        default="off")
    parser.add_argument("--tenants", action="store_true", help="also run with tenant keys and admission")
    parser.add_argument("--rate-limit-headers", choices=("refusals", "all"), default="refusals",
                        help="with tenants: x-ratelimit-* headers on 429s only (refusals), or on admitted answers too"
                             " (all), as serve's")
    parser.add_argument("--connections", type=int, default=1,
                        help="keep-alive connections sending at once (each --requests / N, one after the other)")
    parser.add_argument("--timers-scale", type=float, default=1.0,
                        help="the shared state's timers this many times slower (under callgrind: see above)")
    parser.add_argument("--upstream", action="store_true",
                        help="call a real upstream (a fake OpenAI server in another process) instead of none")
    args = parser.parse_args()
    if args.timers_scale != 1:
        from routelang.gateway import redisledger, redisquality, redisstate

        redisstate.TIMEOUT_S *= args.timers_scale
        redisstate.RETRY_S *= args.timers_scale
        redisledger.SETTLE_S *= args.timers_scale
        redisquality.SYNC_S *= args.timers_scale
    receiver = otlp_endpoint = upstream = None
    if args.upstream:
        upstream = start_upstream()
    if args.trace != "off":
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
        otlp_endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(args.requests * 2)   # no span dropped for a full queue
        if args.trace == "unsampled-by-client":
            Client.request = REQUEST.replace(b"User-Agent: wrk\r\n", b"User-Agent: wrk\r\n" + UNSAMPLED_PARENT)
        if args.trace == "unsampled-by-sampler":
            os.environ.update(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0")
    try:
        measure(args, otlp_endpoint)
    finally:
        for process in (receiver, upstream):
            if process is not None:
                process.kill()
                process.wait()


def start_upstream() -> subprocess.Popen:
    """gateway_overhead.py's fake OpenAI upstream in another process; CONFIG's target calls it."""
    global UPSTREAM_PORT
    from gateway_overhead import free_port, wait_port

    UPSTREAM_PORT = free_port()
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("gateway_overhead.py")),
                                "--upstream", str(UPSTREAM_PORT)])
    if not wait_port(UPSTREAM_PORT):
        process.kill()
        raise SystemExit("the fake upstream did not start")
    CONFIG["rules"][0]["targets"][0]["endpoint"] = f"http://127.0.0.1:{UPSTREAM_PORT}/v1"
    return process


def measure(args: argparse.Namespace, otlp_endpoint: str | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        config = args.config
        if config is None:
            config = Path(scratch, "bench.json")
            config.write_text(json.dumps(CONFIG))
        log = Path(scratch, "log.jsonl")
        if args.only:
            if args.only == "tenants":
                app = tenants_app(config, log, otlp_endpoint, args.state, scratch, args.rate_limit_headers == "all")
            elif args.only == "untenanted":
                app = untenanted_app(config, log, otlp_endpoint, args.state, scratch)
            else:
                app = routelang_app(config, log, otlp_endpoint, args.state) if args.only == "routelang" else minimal_app()
            uvloop.run(serve_and_send(app, args.requests, 0, None))
            return
        tenants = None
        if args.tenants:   # taken in turn with routelang's runs: the difference is what admission adds
            ours, tenants = measure_tenants(args, config, log, otlp_endpoint, scratch)
        else:
            ours = uvloop.run(serve_and_send(routelang_app(config, log, otlp_endpoint, args.state), args.requests,
                                             args.repeat, args.profile, args.connections))
        base = uvloop.run(serve_and_send(minimal_app(), args.requests, args.repeat, None, args.connections))
    print(f"routelang {min(ours):7.1f} us/request  (runs: {', '.join(f'{t:.1f}' for t in ours)})")
    print(f"minimal   {min(base):7.1f} us/request  (runs: {', '.join(f'{t:.1f}' for t in base)})")
    print(f"routelang's own work: {min(ours) - min(base):.1f} us/request")
    if tenants is not None:
        added = min(tenants) - min(ours)
        print(f"tenants   {min(tenants):7.1f} us/request  (runs: {', '.join(f'{t:.1f}' for t in tenants)})")
        print(f"admission adds {added:.1f} us/request: {added / min(ours):.1%} of routelang's CPU per request")


def measure_tenants(args: argparse.Namespace, config: Path, log: Path, otlp_endpoint: str | None,
                    scratch: str) -> tuple[list[float], list[float]]:
    """routelang's runs and the same router's with a workspace and an agent, every request with a
    tenant key, taken in turn."""
    plain = Client.request

    async def both() -> dict[str, list[float]]:
        ours = untenanted_app(config, log, otlp_endpoint, args.state, scratch)
        unread = Client.request
        tenants = tenants_app(config, log, otlp_endpoint, args.state, scratch, args.rate_limit_headers == "all")
        return await serve_and_send_alternately({"routelang": (ours, unread), "tenants": (tenants, Client.request)},
                                                args.requests, args.repeat, args.connections)

    try:
        times = uvloop.run(both())
    finally:
        Client.request = plain
    return times["routelang"], times["tenants"]


def tenants_config(config: Path, scratch: str) -> Path:
    """The router of `config` with gateway_overhead.py's policies, its targets priced."""
    from gateway_overhead import with_tenants

    path = Path(scratch, "tenants.json")
    path.write_text(json.dumps(with_tenants(json.loads(config.read_text()))))
    return path


def tenants_app(config: Path, log: Path, otlp_endpoint: str | None, state: str, scratch: str,
                admitted_rate_headers: bool = False) -> web.Application:
    """tenants_config's router with tenants on, and a key of its workspace and agent that every
    request of Client carries from now on."""
    from routelang.tenancy.keys import KeyStore

    keys = Path(scratch, "keys.db")
    store = KeyStore(keys)
    secret = store.create("ws-bench", "bench-agent")[1]
    store.close()
    Client.request = REQUEST.replace(BEARER, b"Authorization: Bearer " + secret.encode() + b"\r\n")
    return routelang_app(tenants_config(config, scratch), log, otlp_endpoint, state, keys, admitted_rate_headers)


def untenanted_app(config: Path, log: Path, otlp_endpoint: str | None, state: str, scratch: str) -> web.Application:
    """tenants_config's router with tenants off; from now on every request of Client carries a key
    as long as a tenant key, unread (the two sides then read requests of one length)."""
    Client.request = REQUEST.replace(BEARER, b"Authorization: Bearer rlk_" + b"x" * TENANT_KEY_CHARS + b"\r\n")
    return routelang_app(tenants_config(config, scratch), log, otlp_endpoint, state)


if __name__ == "__main__":
    main()
