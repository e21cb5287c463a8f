"""A compiled Portkey config in Portkey's own gateway: the npm package
@portkey-ai/gateway, run with node on loopback, validates the config (its
request validator answers 400 "Invalid config passed" otherwise) and routes
real requests to small upstream servers on loopback; each request must reach
the target routelang's runtime picks for it.

The package is installed once per module into a temporary folder (npm, about
10 s and 25 MB); without node and npm on the machine the module is skipped."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portkey_reference import CONTEXTS, PortkeyConditionalRouter, conditional_configs

from routelang.backends.portkey import lower
from routelang.compiler import compile_text
from routelang.loader import make_router, plan_from_compiled

PORTKEY_GATEWAY = "@portkey-ai/gateway@1.15.2"
TIMEOUT = 20  # seconds, for any one request or start-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def portkey(tmp_path_factory):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run Portkey's gateway")
    prefix = tmp_path_factory.mktemp("portkey")
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--ignore-scripts",
                    PORTKEY_GATEWAY], check=True, capture_output=True, timeout=300)
    port = free_port()
    server = prefix / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    proc = subprocess.Popen(["node", str(server), f"--port={port}", "--headless"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "Portkey's gateway did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


class Upstreams:
    """One loopback server standing for upstreams u0, u1, ...: POST /uN/v1/chat/completions
    is upstream N; `failing` upstreams answer 503."""

    def __init__(self):
        self.received: list[int] = []
        self.failing: set[int] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(TIMEOUT)

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/u{n}/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def handle(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        body = await request.json()
        self.received.append(n)
        if n in self.failing:
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        return web.json_response({
            "id": "c", "object": "chat.completion", "created": 1, "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"u{n}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)


@pytest.fixture
def upstreams():
    ups = Upstreams()
    yield ups
    ups.close()


def router_text(base: str) -> str:
    targets = "\n".join(f'target t{i} = {{ provider "openai" model "m{i}" endpoint "{base}/u{i}/v1" '
                        f'headers {{ "Authorization": "Bearer sk-test" }} }}' for i in range(6))
    return f"""router peers
{targets}
rule paid priority 40 {{ when metadata.plan == "paid" and model in ["gpt-4o", "big"] route t0 }}
rule eu priority 30 {{ when metadata.region == "eu" or metadata.region =~ "^eu-" fallback t1, t2 }}
rule long priority 20 {{ when max_tokens > 100 and not (metadata.plan in ["free"]) split {{ 50% t3  50% t4 }} }}
rule rest priority 0 {{ route t5 }}
"""


def ask(portkey: str, config: dict, metadata: dict, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{portkey}/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "x-portkey-config": json.dumps(config),
                 "x-portkey-metadata": json.dumps(metadata)})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


REQUESTS = [
    ({"plan": "paid"}, {"model": "gpt-4o"}),
    ({"plan": "paid"}, {"model": "small"}),
    ({"region": "eu"}, {"model": "small"}),
    ({"region": "eu-west"}, {"model": "small", "max_tokens": 500}),
    ({"plan": "pro"}, {"model": "small", "max_tokens": 500}),
    ({"plan": "free"}, {"model": "small", "max_tokens": 500}),
    ({}, {"model": "small", "max_tokens": 50}),
    ({}, {"model": "big"}),
]


def test_portkey_gateway_accepts_the_compiled_config_and_routes_as_routelang(portkey, upstreams):
    compiled = compile_text(router_text(upstreams.url), "peers.route")
    assert compiled.ok, compiled.render()
    config, notes = lower(compiled.router)
    assert [n for n in notes if n.code.code == "RL911"] == []
    router = make_router(plan_from_compiled(compiled))
    upstreams.failing = {1}  # the eu rule's first target fails: both fall back to t2
    for metadata, body in REQUESTS:
        body = dict(body, messages=[{"role": "user", "content": "hi"}])
        expected = router.route({**body, "metadata": metadata})
        endpoints = [t.endpoint for t in expected.attempts]
        upstreams.received.clear()
        status, answer = ask(portkey, config, metadata, body)
        assert status == 200, answer
        reached = [f"{upstreams.url}/u{n}/v1" for n in upstreams.received]
        if expected.matched_rule.name == "long":       # a split: either of its targets, drawn at random
            assert len(reached) == 1 and reached[0] in {f"{upstreams.url}/u{n}/v1" for n in (3, 4)}, (metadata, body)
        elif expected.matched_rule.name == "eu":       # the fallback: t1 fails, t2 answers
            assert reached == endpoints, (metadata, body)
        else:
            assert reached == endpoints[:1], (metadata, body)


def test_portkey_gateway_refuses_a_config_its_schema_rejects(portkey):
    status, answer = ask(portkey, {"strategy": {"mode": "round_robin"}, "targets": []}, {}, {"model": "m"})
    assert status == 400
    assert answer["message"] == "Invalid config passed"


# The reference evaluator (tests/portkey_reference.py, which the importer's tests trust) against
# the gateway itself: generated conditional configs, each target an upstream, bounded to 25
# configs of up to 4 requests (one HTTP round trip each).
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(conditional_configs(), st.lists(CONTEXTS, min_size=1, max_size=4))
def test_the_reference_evaluator_decides_as_portkeys_gateway(portkey, upstreams, config, contexts):
    for i, target in enumerate(config["targets"]):
        target.update(custom_host=f"{upstreams.url}/u{i}/v1", api_key="sk-test")
    for context in contexts:
        body = dict(context["params"], messages=[{"role": "user", "content": "hi"}])
        ref = dict(context, params=body, url={"pathname": "/v1/chat/completions"})
        try:
            expected = int(PortkeyConditionalRouter(config, ref).resolve_target()["name"][1:])
        except LookupError:
            expected = None
        upstreams.received.clear()
        status, answer = ask(portkey, config, context["metadata"], body)
        assert (upstreams.received[-1] if status == 200 else None) == expected, (config, context, answer)
