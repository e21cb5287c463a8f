"""Real servers on loopback for the gateway tests: fake upstreams (aiohttp apps
with scripted answers that record what they received) and the gateway itself,
all on one event loop in a background thread, so the tests can use blocking
clients (the official `openai` package, httpx)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from routelang.gateway import wiring
from routelang.gateway.executor import Settings
from routelang.gateway.logs import JsonLog

# Fast retries for tests; real defaults are in Settings.
# The rules of router `chat` in the admin API and registry tests (`{premium}`: the premium
# rule's target; a str.format field, hence the doubled braces).
CHAT_RULES = '''
rule premium priority 100 {{
    when user.tier == "premium"
    route {premium}
}}

rule ab priority 50 {{
    when user.tier == "trial"
    split sticky by user.id {{
        50% control: small
        50% variant: big
    }}
}}

rule default priority 10 {{
    route small
}}
'''


FAST = Settings(timeout_s=10, first_token_timeout_s=5, connect_timeout_s=2, retry_base_s=0.01, retry_max_s=0.05,
                max_retry_after_s=2)


class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def chat_answer(model: str, text: str = "hello", prompt_tokens: int = 5, completion_tokens: int = 2) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def chunk(model: str, content: str | None = None, finish: str | None = None) -> dict:
    delta = {} if content is None else {"content": content}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class FakeUpstream:
    """An OpenAI-compatible (and Anthropic Messages) server. `script` answers the
    next requests in order, then `default`. An answer is a dict:
        status, body (JSON), headers, delay (s before answering),
        stream: list of SSE data payloads (dicts or "[DONE]"), stall_after (n events, then hang),
        hang (never answer), drop (close the connection without answering)."""

    def __init__(self, name: str = "up"):
        self.name = name
        self.script: list[dict] = []
        self.default: dict | Callable[[dict], dict] | None = None
        self.received: list[dict] = []
        self.cancelled = 0
        self.health_status = 200
        self.health_probes = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self):
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        app.router.add_get("/health", self.health)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self):
        await self._runner.cleanup()

    async def health(self, request):
        self.health_probes += 1
        return web.Response(status=self.health_status, text="ok")

    def _answer(self, body: dict) -> dict:
        if self.script:
            return self.script.pop(0)
        if callable(self.default):
            return self.default(body)
        if self.default is not None:
            return self.default
        model = body.get("model", "?")
        if body.get("stream"):
            return {"stream": [chunk(model, "hel"), chunk(model, "lo"), chunk(model, finish="stop"),
                               {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
                                "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                                         "total_tokens": 7}}, "[DONE]"]}
        return {"body": chat_answer(model, text=f"from {self.name}")}

    async def handle(self, request: web.Request):
        raw = await request.read()
        body = orjson.loads(raw) if raw else {}
        record = {"path": request.path, "query": request.query_string, "headers": dict(request.headers),
                  "body": body, "done": False}
        self.received.append(record)
        answer = self._answer(body)
        try:
            if answer.get("delay"):
                await asyncio.sleep(answer["delay"])
            if answer.get("hang"):
                await asyncio.sleep(3600)
            if answer.get("drop"):
                request.transport.close()
                return web.Response(status=500)
            if "stream" in answer:
                resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                for i, event in enumerate(answer["stream"]):
                    if answer.get("stall_after") == i:
                        await asyncio.sleep(3600)
                    if answer.get("cut_after") == i:
                        request.transport.close()
                        return resp
                    data = event if isinstance(event, str) else orjson.dumps(event).decode()
                    prefix = f"event: {event['type']}\n" if isinstance(event, dict) and "type" in event else ""
                    await resp.write(f"{prefix}data: {data}\n\n".encode())
                    if answer.get("event_delay"):
                        await asyncio.sleep(answer["event_delay"])
                await resp.write_eof()
                record["done"] = True
                return resp
            record["done"] = True
            return web.Response(status=answer.get("status", 200), body=orjson.dumps(answer.get("body", {})),
                                headers=answer.get("headers"), content_type="application/json")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class GatewayServer:
    """A Gateway of a config file (`path`), or with `registry=PATH` in `options` of a registry."""

    def __init__(self, loop_thread: LoopThread, path: Path | None, settings: Settings, api_keys=None,
                 reload_interval_s: float = 0.1, **options: Any):
        self.lt = loop_thread
        self.path = path
        self.logs = io.BytesIO()
        self.settings = settings
        self.api_keys = api_keys
        self.reload_interval_s = reload_interval_s
        self.options = options
        self.gateway: wiring.Services | None = None
        self.url = ""

    async def start(self):
        self.gateway = wiring.build(None if self.path is None else str(self.path), settings=self.settings,
                                    api_keys=self.api_keys, log=JsonLog(self.logs),
                                    reload_interval_s=self.reload_interval_s, **self.options)
        self._runner = wiring.runner(self.gateway, shutdown_timeout_s=2)   # as serve runs it
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self):
        await self._runner.cleanup()

    def log_lines(self, event: str = "request") -> list[dict]:
        self.lt.run(self._flush())
        lines = [json.loads(line) for line in self.logs.getvalue().splitlines() if line.strip()]
        return [line for line in lines if line["event"] == event]

    async def _flush(self):
        self.gateway.log.flush()


def target(up: FakeUpstream, model: str = "m", **extra: Any) -> dict:
    return {"provider": extra.pop("provider", "openai"), "model_name": model, "endpoint": up.url + "/v1", **extra}


def config(*rules: dict, name: str = "test-router") -> dict:
    return {"name": name, "rules": list(rules)}


def rule(name: str, targets: list[dict], strategy: str = "single", conditions: list | None = None,
         priority: int = 0, ext: dict | None = None) -> dict:
    out = {"name": name, "priority": priority, "conditions": conditions or [], "strategy": strategy,
           "targets": targets}
    if ext:
        out["x-routelang"] = ext
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Reply:
    """A blocking HTTP answer (stdlib only): status_code, headers (case-insensitive), text, json()."""

    def __init__(self, status: int, headers, body: bytes):
        self.status_code = status
        self.headers = headers
        self.content = body
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def http(method: str, url: str, body: Any = None, headers: dict | None = None, timeout: float = 20) -> Reply:
    import urllib.error
    import urllib.request

    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers, exc.read())


ROOT = Path(__file__).parents[2]


class Served:
    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.args = args
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "routelang", "serve", *args, "--port", "0"],
                                     stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self.warnings = ""   # what serve said before it listened (lint --serve findings)
        while not (line := self.proc.stderr.readline()).startswith("routelang serve:") and line:
            self.warnings += line
        match = re.search(r"on (http://[\d.]+:\d+)", line)
        if match is None:
            self.proc.kill()
            raise AssertionError(self.warnings + line + self.proc.stderr.read())
        self.url = match.group(1)
        assert wait_for(lambda: self._up(), timeout=30)

    def _up(self) -> bool:
        try:
            return http("GET", self.url + "/health", timeout=2).status_code == 200
        except OSError:
            return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:   # say what it was doing: its log's last lines
            log = self.args[self.args.index("--log-file") + 1] if "--log-file" in self.args else None
            tail = Path(log).read_text().splitlines()[-20:] if log and Path(log).exists() else []
            raise AssertionError("the gateway did not stop within 30 s of SIGTERM; its log ends:\n"
                                 + "\n".join(tail)) from None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def slow_client(url: str, head: bytes, drip: bytes, every_s: float, for_s: float) -> tuple[float | None, bytes]:
    """A slow client: `head`, then one byte of `drip` (repeated) every `every_s` (nothing when it is
    empty), for at most `for_s`: (the seconds after which the server closed the connection, None
    when it was still open at the end; what it answered)."""
    parts = urlsplit(url)
    started = time.monotonic()
    drops = itertools.cycle(drip) if drip else iter(())
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=for_s) as sock:
        sock.settimeout(every_s)
        try:
            if head:
                sock.sendall(head)
            while time.monotonic() - started < for_s:
                try:
                    data = sock.recv(65536)
                except TimeoutError:   # nothing to read: the connection is open; one more byte
                    byte = next(drops, None)
                    if byte is not None:
                        sock.sendall(bytes([byte]))
                    continue
                if not data:
                    return time.monotonic() - started, answer
                answer += data
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, answer
    return None, answer
