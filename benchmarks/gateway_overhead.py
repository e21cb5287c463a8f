"""What the gateway adds to a request, side by side with LiteLLM and Portkey (run by hand).

    python benchmarks/gateway_overhead.py [--duration 10] [--no-peers] [--pin] [--scratch DIR]
    python benchmarks/gateway_overhead.py --state-only | --history-only | --tenants-only [--rounds 3] [--pin]
    python benchmarks/gateway_overhead.py --long SECONDS [--every N] [--loop uvloop|asyncio]

A fake OpenAI upstream on loopback answers a small chat completion at once
(raw asyncio + uvloop, so it is not the bottleneck). `wrk` (Debian package
`wrk`) sends the same POST directly; through the ~60-line minimal pass-through
of GATEWAY.md (aiohttp server and client) on both event loops, with
routelang's own upstream client instead of aiohttp's (the floor of routelang's
server and client without its features), and with an httpx client (when httpx
is installed: the benchmark's own, never a dependency of the project); through `routelang serve` (one worker, metrics,
logs, breakers and headers on) on both loops; through the LiteLLM proxy (PyPI
`litellm[proxy]`, one worker, in its own venv) and the Portkey gateway (npm
`@portkey-ai/gateway`), each installed into the scratch folder on first use.
Printed: p50 latency at 1 connection, req/s at 32 connections, CPU per request
of the server's processes, streaming time to first byte at 1 connection (or
why a server did not stream), resident memory before and after the load, and
each routelang row's ratios to direct, to the minimal pass-throughs on the
same loop and to each peer. `--long` instead keeps routelang under load and
prints its memory every N seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-routelang-benchmark-0123456789abcdef"
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16}
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how are you?"},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}).encode()
STREAM = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in [
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "bench-model",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": None}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "bench-model",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "bench-model", "choices": [],
     "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}]) + b"data: [DONE]\n\n"


# ---- the fake upstream (a subprocess: `--upstream PORT`) ------------------------------

class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            match = re.search(r"(?im)^content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            streamed = b'"stream":true' in body.replace(b" ", b"")
            payload, kind = (STREAM, b"text/event-stream") if streamed else (ANSWER, b"application/json")
            if head.startswith("GET"):
                payload, kind = b'{"object":"list","data":[]}', b"application/json"
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)


def run_minimal_proxy(port: int, upstream: int, loop: str, client: str) -> None:
    """The ~60-line reference of GATEWAY.md: an aiohttp server and an aiohttp client,
    nothing else; on the same event loop choices as routelang. `client` "httpx" puts
    httpx in aiohttp's place; "routelang", the gateway's own upstream client (so that
    row is the floor of what routelang's server and client cost, without its features)."""
    import asyncio

    from aiohttp import web

    url = f"http://127.0.0.1:{upstream}/v1/chat/completions"

    async def with_aiohttp(request):
        body = await request.read()
        async with request.app["session"].post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            data = await resp.read()
            kind = resp.headers.get("Content-Type", "application/json")
        return web.Response(body=data, headers={"Content-Type": kind})

    async def with_routelang_client(request):
        body = await request.read()
        status, headers, data = await request.app["session"].fetch(
            "POST", url, body, {"Content-Type": "application/json"}, 600)
        return web.Response(status=status, body=data,
                            headers={"Content-Type": headers.get("content-type", "application/json")})

    async def with_httpx(request):
        body = await request.read()
        resp = await request.app["session"].post(url, content=body, headers={"Content-Type": "application/json"})
        return web.Response(body=resp.content, headers={"Content-Type": resp.headers.get("Content-Type",
                                                                                         "application/json")})

    async def start(app):
        if client == "routelang":
            from routelang.gateway.upstream import Client

            app["session"] = Client()
        elif client == "httpx":
            import httpx  # the benchmark's own: never a dependency of the project

            app["session"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=None,
                                                                   max_keepalive_connections=None))
        else:
            from aiohttp import ClientSession, TCPConnector

            app["session"] = ClientSession(connector=TCPConnector(limit=0))

    app = web.Application()
    handlers = {"aiohttp": with_aiohttp, "httpx": with_httpx, "routelang": with_routelang_client}
    app.router.add_post("/v1/chat/completions", handlers[client])
    app.on_startup.append(start)
    event_loop = None
    if loop == "uvloop":
        import uvloop

        event_loop = uvloop.new_event_loop()
    else:
        event_loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=event_loop)


def run_upstream(port: int) -> None:
    import uvloop

    async def main():
        server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# ---- helpers -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (npx and LiteLLM start their servers as children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        children = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True, check=False).stdout
        todo += [int(c) for c in children.split()]
    return out


# --pin: the measured server alone on SERVER_CPU, everything else (wrk, the fake upstream, the
# history's writer process, Postgres) on the other CPUs, so that the server's CPU per request is
# its own work and not also what sharing a core with the load costs it (on a 2-CPU machine that
# share moves with whatever else runs: the history's writer, for one).
SERVER_CPU = 0


def pin_load_side() -> None:
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {SERVER_CPU})


def pin_server(pid: int) -> None:
    """`pid`'s threads on SERVER_CPU, its descendants' (the history's writer, started with the
    first rows) back on the load side."""
    load_side = os.sched_getaffinity(0)
    for p in process_tree(pid):
        with contextlib.suppress(OSError):   # (a thread or process that ended meanwhile)
            for tid in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(tid), {SERVER_CPU} if p == pid else load_side)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process and its descendants."""
    total = 0
    try:
        for p in process_tree(pid):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    except (OSError, ValueError):
        return None
    return total / 1024


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """User + system CPU time of a process (all its threads) and, unless told, its descendants."""
    total = 0
    for p in process_tree(pid) if descendants else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wrk(url: str, headers: dict[str, str], connections: int, duration: int, scratch: Path,
        body: dict | None = None) -> dict[str, float]:
    script = scratch / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body or BODY))}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    threads = 1 if connections == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", str(script),
                          "--latency", url], capture_output=True, text=True, check=False).stdout
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan"),
            "rps": float(rps.group(1)) if rps else float("nan"),
            "errors": int(non2xx.group(1)) if non2xx else 0, "requests": int(total.group(1)) if total else 0}


class StreamFailed(Exception):
    """The server did not stream: its status and the start of its answer."""


def ttfb_ms(port: int, path: str, headers: dict[str, str], n: int = 300) -> float:
    """Median time from sending a streaming request to the first `data:` line, one keep-alive
    connection (http.client: Content-Length, chunked and close-delimited answers alike). A server
    that answers anything but a 200 stream raises StreamFailed with what it said."""
    body = json.dumps({**BODY, "stream": True}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples = []
    try:
        for i in range(n + 20):
            start = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            if resp.status != 200:
                raise StreamFailed(f"HTTP {resp.status}: {resp.read()[:200].decode('utf-8', 'replace')}")
            first = None
            while first is None:
                line = resp.readline()
                if not line:
                    raise StreamFailed("the stream ended before any data line")
                if line.startswith(b"data:"):
                    first = time.perf_counter() - start
            rest = resp.read()
            if b"[DONE]" not in rest:
                raise StreamFailed("the stream did not end with [DONE]")
            if i >= 20:  # warm-up first
                samples.append(first * 1000)
    finally:
        conn.close()
    return statistics.median(samples)


class Proc:
    def __init__(self, args: list[str], cwd: Path | None = None, env: dict | None = None, log: Path | None = None):
        self.log = open(log or os.devnull, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


# ---- the peers ------------------------------------------------------------------------------

def install_litellm(scratch: Path) -> Path | None:
    venv = scratch / "litellm-venv"
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print("installing litellm[proxy] into", venv, "...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=False)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=False)
    return exe if exe.exists() else None


def install_portkey(scratch: Path) -> Path | None:
    folder = scratch / "portkey"
    if not (folder / "node_modules" / "@portkey-ai" / "gateway").exists():
        if shutil.which("npm") is None:
            return None
        print("installing @portkey-ai/gateway into", folder, "...", file=sys.stderr)
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "init", "-y"], cwd=folder, capture_output=True, check=False)
        subprocess.run(["npm", "install", "@portkey-ai/gateway"], cwd=folder, capture_output=True, check=False)
    return folder if (folder / "node_modules" / "@portkey-ai" / "gateway").exists() else None


# ---- the run ----------------------------------------------------------------------------------

def measure(name: str, port: int, path: str, headers: dict[str, str], args, scratch: Path, pid: int | None,
            rows: list, direct: dict | None) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    wrk(url, headers, 8, 2, scratch)  # warm-up
    if pid and args.pin:
        pin_server(pid)
    before = rss_mb(pid) if pid else None
    one = wrk(url, headers, 1, args.duration, scratch)
    cpu_before = cpu_seconds(pid) if pid else None
    own_before = cpu_seconds(pid, descendants=False) if pid else None
    many = wrk(url, headers, 32, args.duration, scratch)
    cpu = own = None
    if pid and many["requests"]:
        cpu = (cpu_seconds(pid) - cpu_before) / many["requests"] * 1e6
        own = (cpu_seconds(pid, descendants=False) - own_before) / many["requests"] * 1e6
    try:
        ttfb = ttfb_ms(port, path, headers)
    except (OSError, http.client.HTTPException, StreamFailed) as exc:
        print(f"{name}: streaming measurement failed: {exc}", file=sys.stderr)
        ttfb = float("nan")
        row_note = f"stream: {exc}"
    else:
        row_note = None
    after = rss_mb(pid) if pid else None
    row = {"name": name, "p50_ms": one["p50_ms"], "rps": many["rps"], "requests": many["requests"], "errors": one["errors"] + many["errors"],
           "ttfb_ms": ttfb, "rss_before": before, "rss_after": after, "cpu_us": cpu,
           "own_cpu_us": own, "note": row_note}
    if direct is not None:
        row["added_p50_ms"] = row["p50_ms"] - direct["p50_ms"]
        row["added_ttfb_ms"] = row["ttfb_ms"] - direct["ttfb_ms"]
    rows.append(row)
    print(f"{name}: {row}", file=sys.stderr)
    return row


def measure_history(args, scratch: Path, up_port: int, rows: list, direct: dict, notes: list[str]) -> None:
    """`routelang serve --registry` with the request history on and with `--no-history`, on a
    SQLite file and on a Postgres database (a PostgreSQL 15 started for the run, as the tests
    start it: tests/services.py), `--rounds` times each (3 unless told), alternating, on the bench
    router; a note gives the medians per backend and the median of the rounds' on/off ratios (CPU
    per request of the serving process, all its threads, is the figure to trust on a shared
    machine; then with its descendants: the history's writer process. Postgres's own processes
    are not counted in either)."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from services import PostgresServer

    from routelang.registry.backends import open_store

    sqlite_file = scratch / "history-bench" / "registry.db"
    if sqlite_file.exists():
        sqlite_file.unlink()
    postgres = PostgresServer()
    try:
        for backend, location in (("SQLite", str(sqlite_file)), ("Postgres", postgres.new_database())):
            _history_rows(args, scratch, up_port, rows, direct, notes, backend, location, open_store)
    finally:
        postgres.close()


def _history_rows(args, scratch, up_port, rows, direct, notes, backend: str, location: str, open_store) -> None:
    config = {"name": "bench", "rules": [{"name": "all", "targets": [{
        "provider": "openai", "model_name": "bench-model", "endpoint": f"http://127.0.0.1:{up_port}/v1",
        "x-routelang": {"circuit_breaker": {"failure_threshold": 5, "cooldown_ms": 30000}}}]}]}
    store = open_store(location)
    version, _new = store.push("bench", "bench.json", {"bench.json": json.dumps(config)}, config)
    store.deploy("bench", version.version)
    measured: dict[bool, list[dict]] = {False: [], True: []}
    for round_no in range(1, args.rounds + 1):
        for history in (False, True):
            port = free_port()
            before = store.query("SELECT COUNT(*) AS n FROM requests")[0]["n"]
            proc = Proc([sys.executable, "-m", "routelang", "serve", "--registry", location, "--port", str(port),
                         "--log-file", str(scratch / "routelang.log"), *([] if history else ["--no-history"])],
                        env={"PYTHONPATH": str(ROOT)})
            assert wait_port(port), "routelang serve --registry did not start"
            row = measure(f"routelang serve --registry ({backend}), history {'on' if history else 'off'} "
                          f"(run {round_no})", port, "/v1/chat/completions", {}, args, scratch, proc.proc.pid,
                          rows, direct)
            proc.stop()  # SIGTERM: what is queued is written
            written = store.query("SELECT COUNT(*) AS n FROM requests")[0]["n"] - before
            if history:
                notes.append(f"{row['name']}: {written} history rows written")
            measured[history].append(row)
    store.close()
    notes += on_against_off(f"{backend}: history", measured, (
        ("own_cpu_us", "CPU per request of the serving process"),
        ("cpu_us", "CPU per request with the history's writer process"),
        ("rps", "req/s at 32"), ("p50_ms", "p50 at 1")))


def on_against_off(what: str, measured: dict[bool, list[dict]], figures: tuple[tuple[str, str], ...]) -> list[str]:
    """Per figure (a row's key, its label): the medians of the rounds with `what` on and off, and the
    median of the rounds' on/off ratios (runs taken in turn: a change of load falls on both alike)."""
    lines = []
    for key, label in figures:
        off, on = (statistics.median(r[key] for r in measured[side]) for side in (False, True))
        paired = statistics.median(on_row[key] / off_row[key] for off_row, on_row in zip(measured[False], measured[True]))
        lines.append(f"{what} on vs off, median {label}: {on:.3f} vs {off:.3f} "
                     f"({(on / off - 1) * 100:+.1f}%; median of the rounds' ratios {(paired - 1) * 100:+.1f}%)")
    return lines


# --tenants-only: a workspace and an agent whose budgets and limits never refuse the benchmark's requests
# (two budgets, two limits: every reserve checks four counters), and the router's target priced as tenants
# price it. gateway_hotpath.py --tenants serves the same.
POLICIES = [
    {"kind": "workspace", "name": "ws-bench", "timezone": "UTC",
     "budgets": [{"period": "day", "micros": 10**15}, {"period": "month", "micros": 10**16}],
     "limits": [{"unit": "requests", "amount": 10**9, "per": "minute"},
                {"unit": "tokens", "amount": 10**12, "per": "minute"}],
     "compliance": ["gdpr"]},
    {"kind": "agent", "name": "bench-agent", "timezone": "UTC", "capabilities": ["text-generation"]},
]
PRICED = {"input_micros_per_1k": 3000, "output_micros_per_1k": 15000, "compliance": ["gdpr"],
          "capabilities": ["text-generation"]}


def with_tenants(config: dict) -> dict:
    """The router `config` (Mixtrain JSON) with POLICIES, its targets PRICED (changed in place)."""
    for rule in config["rules"]:
        for target in rule["targets"]:
            target.setdefault("x-routelang", {}).update(PRICED)
    config.setdefault("x-routelang", {})["policies"] = POLICIES
    return config


def measure_tenants(args, scratch: Path, up_port: int, rows: list, direct: dict, notes: list[str]) -> None:
    """The bench router with POLICIES and its target priced, served with `--tenant-keys` (every
    request carries a key of the workspace and the agent: admitted by a reserve, then settled) and
    without (the same request, its key unread), `--rounds` times each, alternating; in process and,
    when redis-server is installed, both sides on `--state redis://` (the ledger then on Redis). A
    note per state gives the medians and the median of the rounds' ratios of the serving process's
    CPU per request (all its threads; redis-server's own CPU is not counted). The goal: admission
    adds at most 10 %."""
    sys.path.insert(0, str(ROOT))
    from routelang.tenancy.keys import KeyStore

    path = scratch / "tenants.json"
    path.write_text(json.dumps(with_tenants(json.loads(bench_config(scratch, up_port).read_text()))))
    keys = scratch / "tenant-keys.db"
    if keys.exists():
        keys.unlink()
    store = KeyStore(keys)
    secret = store.create("ws-bench", "bench-agent")[1]
    store.close()
    headers = {"Authorization": f"Bearer {secret}"}
    states = ["memory"]
    redis = None
    if shutil.which("redis-server") is not None:
        folder = scratch / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        redis_port = free_port()
        redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(folder),
                      "--save", "", "--appendonly", "no"], log=scratch / "redis.log")
        assert wait_port(redis_port), "redis-server did not start"
        states.append(f"redis://127.0.0.1:{redis_port}/0")
    else:
        notes.append("tenants on Redis: redis-server is not installed (apt-get install -y redis-server), not measured")
    try:
        for state in states:
            kind = "memory" if state == "memory" else "redis"
            measured: dict[bool, list[dict]] = {False: [], True: []}
            for round_no in range(1, args.rounds + 1):
                for tenants in (False, True):
                    extra = ["--state", state] + (["--tenant-keys", str(keys)] if tenants else [])
                    proc, port = start_routelang(scratch, path, "uvloop", *extra)
                    row = measure(f"routelang serve --state {kind}, tenants {'on' if tenants else 'off'} "
                                  f"(uvloop, run {round_no})", port, "/v1/chat/completions", headers, args,
                                  scratch, proc.proc.pid, rows, direct)
                    proc.stop()
                    if row["errors"]:
                        notes.append(f"{row['name']}: {row['errors']} errors (the figures are not comparable)")
                    measured[tenants].append(row)
            notes += on_against_off(f"{kind}: tenants", measured, (
                ("own_cpu_us", "CPU per request of the serving process"), ("rps", "req/s at 32"),
                ("p50_ms", "p50 at 1")))
    finally:
        if redis is not None:
            redis.stop()


def _f(value, fmt: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, fmt)


def table(rows: list[dict]) -> str:
    out = [("| | p50 at 1 conn | added p50 | req/s at 32 conns | CPU per request (server processes) | "
            "stream first byte | added | RSS before/after load | non-2xx |"),
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rss = "-" if r["rss_before"] is None else f"{r['rss_before']:.0f} / {r['rss_after']:.0f} MB"
        stream = f"{_f(r['ttfb_ms'], '.3f')} ms" if r["note"] is None else f"({r['note']})"
        out.append(f"| {r['name']} | {_f(r['p50_ms'], '.3f')} ms | {_f(r.get('added_p50_ms'), '.3f')} ms | "
                   f"{_f(r['rps'], ',.0f')} | {_f(r.get('cpu_us'), ',.0f')} µs | {stream} | "
                   f"{_f(r.get('added_ttfb_ms'), '.3f')} ms | {rss} | {r['errors']} |")
    return "\n".join(out)


def _ratio(a, b) -> float:
    return float("nan") if a is None or b is None or not b or math.isnan(a) or math.isnan(b) else a / b


def ratios(rows: list[dict]) -> str:
    """Each routelang row against direct, the minimal reference on the same loop, and each peer:
    req/s (higher is better) and CPU per request (lower is better) as routelang / other."""
    by_name = {r["name"]: r for r in rows}
    direct = by_name.get(DIRECT)
    out = ["| routelang row | vs | req/s ratio | CPU per request ratio | added p50 ratio |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if not r["name"].startswith("routelang"):
            continue
        loop = r["name"].split(", ")[-1].rstrip(")")
        others = [direct] + [by_name.get(reference_name(client, loop)) for client in ("aiohttp", "routelang", "httpx")]
        others += [o for o in rows if o["name"] in PEERS]
        for o in others:
            if o is None:
                continue
            cells = [_ratio(r["rps"], o["rps"]), _ratio(r.get("cpu_us"), o.get("cpu_us")),
                     _ratio(r.get("added_p50_ms"), o.get("added_p50_ms"))]
            out.append(f"| {r['name']} | {o['name']} | " + " | ".join(
                "-" if math.isnan(c) else f"{c:.2f}x" for c in cells) + " |")
    return "\n".join(out)


DIRECT = "direct to the upstream"
LITELLM = "LiteLLM proxy (1 worker)"
PORTKEY = "Portkey gateway"
PEERS = (LITELLM, PORTKEY)
LOOPS = ("uvloop", "asyncio")


def reference_name(client: str, loop: str) -> str:
    if client == "routelang":
        return f"minimal pass-through, routelang's upstream client ({loop})"
    return f"minimal {client} pass-through ({loop})"


def bench_config(scratch: Path, up_port: int) -> Path:
    config = scratch / "bench.json"
    config.write_text(json.dumps({"name": "bench", "rules": [{"name": "all", "targets": [{
        "provider": "openai", "model_name": "bench-model", "endpoint": f"http://127.0.0.1:{up_port}/v1",
        "x-routelang": {"circuit_breaker": {"failure_threshold": 5, "cooldown_ms": 30000}}}]}]}))
    return config


def start_routelang(scratch: Path, config: Path, loop: str, *extra: str) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "routelang", "serve", str(config), "--port", str(port), "--loop", loop,
                 "--log-file", str(scratch / "routelang.log"), *extra], env={"PYTHONPATH": str(ROOT)})
    assert wait_port(port), "routelang serve did not start"
    return proc, port


def measure_state(args, scratch: Path, config: Path, rows: list, direct: dict, notes: list[str]) -> None:
    """Shared state: `--state redis://...` (a redis-server started here, no persistence) against
    in-process state, twice each, alternating; and `--workers 2` (in-process state). The goal:
    shared state adds at most 15 % CPU per request and 0.1 ms p50. A note gives redis-server's
    own CPU per request (not in the gateway's figure)."""
    if shutil.which("redis-server") is None:
        notes.append("--state redis: redis-server is not installed (apt-get install -y redis-server), not measured")
        return
    folder = scratch / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(folder),
                  "--save", "", "--appendonly", "no"], log=scratch / "redis.log")
    try:
        assert wait_port(redis_port), "redis-server did not start"
        url = f"redis://127.0.0.1:{redis_port}/0"
        by_kind: dict[str, list[dict]] = {"memory": [], "redis": []}
        for round_no in (1, 2):
            for kind in ("memory", "redis"):
                rl, port = start_routelang(scratch, config, "uvloop", "--state", "memory" if kind == "memory" else url)
                redis_cpu = cpu_seconds(redis.proc.pid)
                row = measure(f"routelang serve --state {kind} (uvloop, run {round_no})", port,
                              "/v1/chat/completions", {}, args, scratch, rl.proc.pid, rows, direct)
                if kind == "redis" and row.get("requests"):
                    notes.append(f"{row['name']}: redis-server used "
                                 f"{(cpu_seconds(redis.proc.pid) - redis_cpu) / row['requests'] * 1e6:.1f} us "
                                 "CPU per request (warm-up and 1-connection run included)")
                by_kind[kind].append(row)
                rl.stop()
        memory_cpu = statistics.median(r["cpu_us"] for r in by_kind["memory"])
        redis_cpu = statistics.median(r["cpu_us"] for r in by_kind["redis"])
        memory_p50 = statistics.median(r["p50_ms"] for r in by_kind["memory"])
        redis_p50 = statistics.median(r["p50_ms"] for r in by_kind["redis"])
        notes.append(f"--state redis against memory (medians of 2 runs): CPU per request {redis_cpu:.0f} us against "
                     f"{memory_cpu:.0f} us ({(redis_cpu / memory_cpu - 1) * 100:+.1f} %, goal at most +15 %), "
                     f"p50 {redis_p50:.3f} ms against {memory_p50:.3f} ms ({(redis_p50 - memory_p50):+.3f} ms, "
                     "goal at most +0.1 ms)")
        rl, port = start_routelang(scratch, config, "uvloop", "--workers", "2")
        measure("routelang serve --workers 2 (uvloop, --state memory)", port, "/v1/chat/completions", {}, args,
                scratch, rl.proc.pid, rows, direct)
        rl.stop()
        rl, port = start_routelang(scratch, config, "uvloop", "--workers", "2", "--state", url)
        measure("routelang serve --workers 2 (uvloop, --state redis)", port, "/v1/chat/completions", {}, args,
                scratch, rl.proc.pid, rows, direct)
        rl.stop()
    finally:
        redis.stop()


def long_run(args, scratch: Path, up_port: int) -> None:
    """routelang under wrk -c32 for `args.long` seconds; RSS (and CPU so far) every `args.every` s."""
    proc, port = start_routelang(scratch, bench_config(scratch, up_port), args.loop)
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        wrk(url, {}, 8, 2, scratch)  # warm-up
        script = scratch / "post.lua"
        load = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{args.long}s", "-s", str(script), "--latency", url],
                                stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        samples = []
        while load.poll() is None:
            elapsed = time.monotonic() - started
            rss = rss_mb(proc.proc.pid)
            samples.append((elapsed, rss))
            print(f"{elapsed:7.0f} s  RSS {_f(rss, '.1f')} MB  CPU {cpu_seconds(proc.proc.pid):.1f} s", flush=True)
            time.sleep(args.every)
        out = load.communicate()[0]
        total = re.search(r"(\d+) requests in", out)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        rss_values = [r for _t, r in samples if r is not None]
        print(f"{total.group(1) if total else '?'} requests, {rps.group(1) if rps else '?'} req/s, "
              f"non-2xx {non2xx.group(1) if non2xx else 0}; RSS first {_f(rss_values[0], '.1f')} MB, "
              f"last {_f(rss_values[-1], '.1f')} MB, max {_f(max(rss_values), '.1f')} MB; "
              f"load average {os.getloadavg()[0]:.1f}")
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--no-peers", action="store_true", help="without LiteLLM and Portkey")
    parser.add_argument("--state-only", action="store_true",
                        help="only direct and the shared-state rows (--state memory / redis, --workers 2)")
    parser.add_argument("--history-only", action="store_true",
                        help="only direct and the registry rows with the history on and off")
    parser.add_argument("--tenants-only", action="store_true",
                        help="only direct and the rows with tenants (admission) on and off, in process and on Redis")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --history-only or --tenants-only: alternations per backend")
    parser.add_argument("--pin", action="store_true",
                        help=f"the measured server alone on CPU {SERVER_CPU}, the load and the rest on the others")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "routelang-gateway-bench")
    parser.add_argument("--long", type=int, metavar="SECONDS",
                        help="instead: routelang under load for SECONDS, printing its memory (flat?)")
    parser.add_argument("--every", type=int, default=10, metavar="N", help="with --long: print every N seconds")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="with --long: routelang's event loop")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--minimal-proxy", nargs=4, metavar=("PORT", "UPSTREAM", "LOOP", "CLIENT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(args.upstream)
        return
    if args.minimal_proxy:
        port, upstream, loop, client = args.minimal_proxy
        run_minimal_proxy(int(port), int(upstream), loop, client)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    if args.pin:
        if (os.cpu_count() or 1) < 2:
            sys.exit("--pin needs at least 2 CPUs")
        pin_load_side()
    scratch = args.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    rows: list[dict] = []
    notes: list[str] = []
    try:
        up_port = free_port()
        procs.append(Proc([sys.executable, __file__, "--upstream", str(up_port)]))
        assert wait_port(up_port), "the fake upstream did not start"
        if args.long:
            long_run(args, scratch, up_port)
            return
        direct = measure(DIRECT, up_port, "/v1/chat/completions", {}, args, scratch, None, rows, None)
        if args.history_only:
            measure_history(args, scratch, up_port, rows, direct, notes)
            report(rows, notes)
            return
        if args.tenants_only:
            measure_tenants(args, scratch, up_port, rows, direct, notes)
            report(rows, notes)
            return
        config = bench_config(scratch, up_port)
        references = [("aiohttp", loop) for loop in LOOPS] + [("routelang", loop) for loop in LOOPS]
        if importlib.util.find_spec("httpx") is not None:
            references.append(("httpx", "uvloop"))
        else:
            notes.append("minimal httpx pass-through: httpx is not installed here (pip install httpx), not measured")
        if args.state_only:
            references = []
        for client, loop in references:
            port = free_port()
            mini = Proc([sys.executable, __file__, "--minimal-proxy", str(port), str(up_port), loop, client],
                        env={"PYTHONPATH": str(ROOT)})
            procs.append(mini)
            assert wait_port(port), "the minimal proxy did not start"
            measure(reference_name(client, loop), port, "/v1/chat/completions", {}, args, scratch, mini.proc.pid,
                    rows, direct)
            mini.stop()
            procs.remove(mini)

        for loop in () if args.state_only else LOOPS:
            rl, rl_port = start_routelang(scratch, config, loop)
            procs.append(rl)
            measure(f"routelang serve (1 worker, {loop})", rl_port, "/v1/chat/completions", {}, args, scratch,
                    rl.proc.pid, rows, direct)
            rl.stop()
            procs.remove(rl)

        measure_state(args, scratch, config, rows, direct, notes)
        if not args.state_only:
            measure_history(args, scratch, up_port, rows, direct, notes)

        if not (args.no_peers or args.state_only):
            litellm = install_litellm(scratch)
            if litellm is None:
                notes.append("LiteLLM: install failed, not measured")
            else:
                yaml = scratch / "litellm.yaml"
                yaml.write_text("model_list:\n  - model_name: bench\n    litellm_params:\n"
                                f"      model: openai/bench-model\n      api_base: http://127.0.0.1:{up_port}/v1\n"
                                "      api_key: x\n")
                ll_port = free_port()
                ll = Proc([str(litellm), "--config", str(yaml), "--port", str(ll_port), "--num_workers", "1"],
                          env={"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOG": "ERROR"}, log=scratch / "litellm.log")
                procs.append(ll)
                if wait_port(ll_port, timeout=180):
                    time.sleep(2)
                    measure(LITELLM, ll_port, "/v1/chat/completions",
                            {"Authorization": f"Bearer {MASTER_KEY}"}, args, scratch, ll.proc.pid, rows, direct)
                else:
                    notes.append("LiteLLM: did not start (see litellm.log in the scratch folder)")
            portkey = install_portkey(scratch)
            if portkey is None:
                notes.append("Portkey: install failed, not measured")
            else:
                pk = Proc(["npx", "@portkey-ai/gateway"], cwd=portkey, log=scratch / "portkey.log")
                procs.append(pk)
                if wait_port(8787, timeout=120):
                    measure(PORTKEY, 8787, "/v1/chat/completions",
                            {"x-portkey-provider": "openai", "Authorization": "Bearer x",
                             "x-portkey-custom-host": f"http://127.0.0.1:{up_port}/v1"},
                            args, scratch, pk.proc.pid, rows, direct)
                else:
                    notes.append("Portkey: did not start on :8787 (see portkey.log in the scratch folder)")
    finally:
        for proc in reversed(procs):
            proc.stop()
    if not args.long:
        report(rows, notes)


def report(rows: list[dict], notes: list[str]) -> None:
    print(table(rows))
    print()
    print(ratios(rows))
    for note in notes:
        print(note)
    load = os.getloadavg()
    print(f"\n{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min); "
          "wrk runs on the same machine; one run.")


if __name__ == "__main__":
    main()
