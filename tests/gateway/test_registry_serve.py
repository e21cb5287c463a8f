"""`routelang serve --registry`: every deployed router of a registry, named by
path or header; deploys and rollbacks from other processes picked up under
load; the request history the gateway records (and captures, when asked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner
from gateway_fakes import FAST, ROOT, GatewayServer, Served, chat_answer, http, wait_for

from routelang.cli import Exit, main
from routelang.gateway import auth, wiring
from routelang.registry.artifacts import build_file
from routelang.registry.backends import open_store
from routelang.registry.history import HistoryWriter
from routelang.registry.rows import Retention
from routelang.registry.store import RegistryError

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}

ROUTER = '''router {name} "test"

import std.providers

{targets}

{rules}
'''


def route_text(name: str, upstream_url: str, model: str = "m", cost: str = "cost 0.002 per 1k") -> str:
    return ROUTER.format(name=name, targets=f'target a = openai("{model}", "{upstream_url}/v1") {{ {cost} }}',
                         rules="rule all priority 10 {\n    route a\n}")


class Registry:
    """A registry (a file in tmp_path, or a Postgres database: `path` is its URL),
    with routers pushed from `.route` text."""

    def __init__(self, directory: Path, location: Path | str):
        self.directory = directory
        self.path = location
        self.store = open_store(self.path)
        self._pushed = 0

    def push(self, name: str, text: str, deploy: bool = True) -> int:
        self._pushed += 1
        source = self.directory / f"src{self._pushed}" / f"{name}.route"
        source.parent.mkdir(parents=True)
        source.write_text(text)
        built = build_file(source)
        assert built.ok, built.result.render(built.problems)
        version, _new = self.store.push(name, built.entry, built.sources, built.compiled, f"push {self._pushed}")
        if deploy:
            self.store.deploy(name, version.version)
        return version.version

    def rows(self) -> list[dict]:
        return self.store.query(f"SELECT * FROM requests ORDER BY time, {self.store.insertion_order}")


def cli(*args: str) -> subprocess.CompletedProcess:
    """`routelang ARGS` in another process (as a deploy from another terminal)."""
    return subprocess.run([sys.executable, "-m", "routelang", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request, tmp_path):
    """A Registry on each backend."""
    if request.param == "sqlite":
        reg = Registry(tmp_path, tmp_path / "reg" / "registry.db")
    else:
        reg = Registry(tmp_path, request.getfixturevalue("postgres_server").new_database())
    yield reg
    reg.store.close()


@pytest.fixture
def serve_registry(loop_thread, registry):
    """serve_registry(**Gateway options) -> a running GatewayServer of `registry`."""
    made: list[GatewayServer] = []

    def start(**options) -> GatewayServer:
        server = loop_thread.run(GatewayServer(loop_thread, None, options.pop("settings", FAST),
                                               api_keys=options.pop("api_keys", None), registry=registry.path,
                                               **options).start())
        made.append(server)
        return server

    yield start
    for server in made:
        loop_thread.run(server.stop())


def answered_by(reply) -> str:
    return reply.json()["choices"][0]["message"]["content"]


def flush(gw: GatewayServer) -> None:
    gw.gateway.recorder.writer.flush()


def recorded(gw: GatewayServer, registry: Registry, *ids: str) -> dict[str, dict]:
    """The history rows once those of `ids` are written (a stream's row is queued
    just after its last byte reached the client)."""
    def written() -> bool:
        flush(gw)
        return set(ids) <= {r["id"] for r in registry.rows()}

    assert wait_for(written, timeout=5)
    return {r["id"]: r for r in registry.rows()}


# ---- naming the router ------------------------------------------------------------

def test_two_routers_by_path_and_by_header(upstreams, registry, serve_registry):
    a, b = upstreams("a"), upstreams("b")
    registry.push("alpha", route_text("alpha", a.url, "ma"))
    registry.push("beta", route_text("beta", b.url, "mb"))
    gw = serve_registry()
    for name, text in (("alpha", "from a"), ("beta", "from b")):
        by_path = openai.OpenAI(base_url=f"{gw.url}/r/{name}/v1", api_key="x", max_retries=0)
        reply = by_path.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == text
        assert [m.id for m in by_path.models.list()] == ["m" + name[0]]
        by_header = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0,
                                  default_headers={"x-routelang-router": name})
        reply = by_header.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == text
        decided = http("POST", f"{gw.url}/r/{name}/routing/decide", CHAT).json()
        assert (decided["router"], decided["version"], decided["rule"]) == (name, 1, "all")
        assert http("GET", f"{gw.url}/r/{name}/routing").json()["router"] == name
    # the upstream got the endpoint path, not the /r/NAME prefix
    assert {r["path"] for r in a.received + b.received} == {"/v1/chat/completions"}
    listing = http("GET", gw.url + "/routing").json()
    assert [(r["router"], r["version"]) for r in listing["routers"]] == [("alpha", 1), ("beta", 1)]
    assert listing["default_router"] is None


def test_no_default_with_two_routers_and_an_unknown_router_are_openai_404s(upstreams, registry, serve_registry):
    a = upstreams("a")
    registry.push("alpha", route_text("alpha", a.url))
    registry.push("beta", route_text("beta", a.url))
    gw = serve_registry()
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "router_not_found"
    assert "alpha, beta" in caught.value.body["message"]
    unknown = openai.OpenAI(base_url=f"{gw.url}/r/gamma/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        unknown.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "router_not_found" and "'gamma'" in caught.value.body["message"]
    reply = http("POST", gw.url + "/v1/chat/completions", CHAT, headers={"x-routelang-router": "gamma"})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "router_not_found"
    assert http("GET", gw.url + "/r/gamma/routing").status_code == 404
    reply = http("POST", gw.url + "/r/-bad/v1/chat/completions", CHAT)   # not a router name at all
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "router_not_found"
    assert http("GET", gw.url + "/r/alpha/v1/chat/completions").status_code == 405
    assert http("GET", gw.url + "/r/alpha/health").json()["error"]["code"] == "unknown_endpoint"
    assert http("GET", gw.url + "/v1/models").json()["error"]["code"] == "router_not_found"
    assert a.received == []


def test_default_router_given_or_the_only_one(upstreams, registry, serve_registry):
    a, b = upstreams("a"), upstreams("b")
    registry.push("alpha", route_text("alpha", a.url))
    only = serve_registry()
    assert answered_by(http("POST", only.url + "/v1/chat/completions", CHAT)) == "from a"
    registry.push("beta", route_text("beta", b.url))
    chosen = serve_registry(default_router="beta")
    assert answered_by(http("POST", chosen.url + "/v1/chat/completions", CHAT)) == "from b"
    assert http("GET", chosen.url + "/routing").json()["default_router"] == "beta"
    absent = serve_registry(default_router="nope")
    reply = http("POST", absent.url + "/v1/chat/completions", CHAT)
    assert reply.status_code == 404 and "'nope' is not deployed" in reply.json()["error"]["message"]


def test_an_undeployed_router_is_not_served_and_a_missing_registry_is_refused(upstreams, registry,
                                                                               serve_registry, tmp_path):
    a = upstreams("a")
    registry.push("alpha", route_text("alpha", a.url), deploy=False)
    gw = serve_registry()
    assert http("GET", gw.url + "/routing").json()["routers"] == []
    assert http("GET", gw.url + "/health/ready").status_code == 503
    with pytest.raises(RegistryError, match="no registry"):
        wiring.build(registry=tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


# ---- deploys and rollbacks ------------------------------------------------------------

def test_a_deploy_from_another_process_under_load(upstreams, registry, serve_registry):
    """200 requests, 16 at a time, on a slow upstream; `routelang deploy` in another
    process midway: every request succeeds, new requests move to the new version
    within a second, and each history row names the version that routed it."""
    a, b = upstreams("a"), upstreams("b")
    a.default = {"body": chat_answer("m", "from a"), "delay": 0.2}
    b.default = {"body": chat_answer("m", "from b"), "delay": 0.2}
    registry.push("alpha", route_text("alpha", a.url))
    v2 = registry.push("alpha", route_text("alpha", b.url), deploy=False)
    gw = serve_registry()
    sent: dict[str, tuple[float, str]] = {}
    deployed = threading.Event()
    deployed_at = 0.0

    def one(i: int) -> None:
        if i >= 150:  # the last ones are sent a second after the deploy finished
            deployed.wait(60)
            time.sleep(max(0.0, deployed_at + 1.0 - time.monotonic()))
        started = time.monotonic()
        reply = http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT, headers={"x-request-id": f"load-{i}"})
        assert reply.status_code == 200, reply.text
        sent[f"load-{i}"] = (started, answered_by(reply))

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one, i) for i in range(200)]
        assert wait_for(lambda: len(sent) >= 30, timeout=30)
        done = cli("deploy", "alpha", str(v2), "--yes", "--registry", str(registry.path))
        deployed_at = time.monotonic()
        deployed.set()
        assert done.returncode == Exit.OK, done.stderr
        for future in futures:
            future.result(timeout=60)
    assert len(sent) == 200
    late = [text for started, text in sent.values() if started > deployed_at + 1.0]
    assert late and set(late) == {"from b"}          # new requests: the new version, within 1 s
    assert {"from a", "from b"} <= {text for _s, text in sent.values()}
    flush(gw)
    rows = {r["id"]: r for r in registry.rows()}
    assert set(sent) <= set(rows)
    for request_id, (_started, text) in sent.items():
        assert rows[request_id]["version"] == (1 if text == "from a" else v2), request_id
        assert rows[request_id]["status"] == "ok" and rows[request_id]["http_status"] == 200


def test_rollback_from_another_process(upstreams, registry, serve_registry):
    a, b = upstreams("a"), upstreams("b")
    registry.push("alpha", route_text("alpha", a.url))
    registry.push("alpha", route_text("alpha", b.url))
    gw = serve_registry()
    assert answered_by(http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT)) == "from b"
    rolled = cli("rollback", "alpha", "--registry", str(registry.path))
    assert rolled.returncode == Exit.OK, rolled.stderr
    assert wait_for(lambda: answered_by(http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT)) == "from a",
                    timeout=1.0, interval=0.05)
    assert http("GET", gw.url + "/r/alpha/routing").json()["version"] == 1


def test_a_request_in_flight_when_its_router_is_deleted_still_finishes(upstreams, registry, serve_registry):
    a = upstreams("a")
    registry.push("alpha", route_text("alpha", a.url))
    registry.push("beta", route_text("beta", a.url))
    gw = serve_registry()
    a.script = [{"body": chat_answer("m", "slow"), "delay": 1.0}]
    result = {}
    slow = threading.Thread(target=lambda: result.update(
        r=http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT)))
    slow.start()
    assert wait_for(lambda: len(a.received) == 1)
    registry.store.delete("alpha")
    assert wait_for(lambda: [r["router"] for r in http("GET", gw.url + "/routing").json()["routers"]] == ["beta"],
                    timeout=2)
    slow.join(10)
    assert result["r"].status_code == 200 and answered_by(result["r"]) == "slow"
    assert http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT).status_code == 404


def test_a_version_that_does_not_load_is_shown_and_the_next_one_served(upstreams, registry, serve_registry,
                                                                        monkeypatch):
    a = upstreams("a")
    monkeypatch.delenv("RL_TEST_UNSET_BASE", raising=False)
    registry.push("alpha", route_text("alpha", "${RL_TEST_UNSET_BASE}"))
    gw = serve_registry()
    routing = http("GET", gw.url + "/routing").json()
    assert routing["routers"] == []
    error = routing["last_reload_error"]
    assert (error["router"], error["version"]) == ("alpha", 1) and "RL_TEST_UNSET_BASE" in error["message"]
    assert http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT).status_code == 404
    registry.push("alpha", route_text("alpha", a.url))
    assert wait_for(lambda: http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT).status_code == 200,
                    timeout=2)
    assert http("GET", gw.url + "/routing").json()["last_reload_error"] is None


def test_breaker_state_carries_over_to_the_next_version(upstreams, registry, serve_registry):
    a, b = upstreams("a"), upstreams("b")
    breaker = "cost 0.002 per 1k circuit_breaker { failures 1 cooldown 60s successes 1 }"
    registry.push("alpha", route_text("alpha", a.url, cost=breaker))
    gw = serve_registry()
    a.script = [{"status": 500, "body": {"error": {"message": "down"}}}]
    assert http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT).status_code == 502
    # version 2 keeps target a (and its open breaker) and adds a rule for another path
    text = route_text("alpha", a.url, cost=breaker).replace(
        "rule all", f'target b = openai("mb", "{b.url}/v1")\n\nrule other priority 20 {{\n'
                    '    when user == "b"\n    route b\n}\n\nrule all')
    registry.push("alpha", text)
    assert wait_for(lambda: http("GET", gw.url + "/r/alpha/routing").json()["version"] == 2, timeout=2)
    targets = {t["name"]: t for t in http("GET", gw.url + "/r/alpha/routing").json()["targets"]}
    assert targets["a"]["breaker"] == "open" and targets["a"]["failures"] == 1


def test_metrics_and_log_lines_say_which_router(upstreams, registry, serve_registry):
    """Two routers, each with a target `a` and a rule `all`: r1's breaker opens, r2's stays closed, and
    every series and log line about a request says which router (and the log, which version)."""
    up1, up2 = upstreams("one"), upstreams("two")
    breaker = "cost 0.002 per 1k circuit_breaker { failures 1 cooldown 60s successes 1 }"
    registry.push("r1", route_text("r1", up1.url, cost=breaker))
    registry.push("r2", route_text("r2", up2.url, cost=breaker))
    registry.push("r2", route_text("r2", up2.url, model="m2", cost=breaker))
    gw = serve_registry()
    up1.default = {"status": 500, "body": {"error": {"message": "down"}}}
    assert http("POST", gw.url + "/r/r1/v1/chat/completions", CHAT).status_code == 502
    for _ in range(2):
        assert http("POST", gw.url + "/r/r2/v1/chat/completions", CHAT).status_code == 200
    text = http("GET", gw.url + "/metrics").text
    assert 'routelang_breaker_state{router="r1",target="a"} 2.0' in text
    assert 'routelang_breaker_state{router="r2",target="a"} 0.0' in text
    assert ('routelang_requests_total{endpoint="/v1/chat/completions",router="r1",rule="all",status="502",'
            'target="-"} 1.0') in text
    assert ('routelang_requests_total{endpoint="/v1/chat/completions",router="r2",rule="all",status="200",'
            'target="a"} 2.0') in text
    assert 'routelang_upstream_latency_seconds_count{outcome="http_500",router="r1",target="a"} 1.0' in text
    assert 'routelang_tokens_total{kind="completion",router="r2",target="a"} ' in text
    assert 'routelang_tokens_total{kind="completion",router="r1",target="a"} ' not in text
    lines = gw.log_lines()
    assert [(line["router"], line["version"], line["path"], line["status"]) for line in lines] == [
        ("r1", 1, "/v1/chat/completions", 502), ("r2", 2, "/v1/chat/completions", 200),
        ("r2", 2, "/v1/chat/completions", 200)]


def test_a_target_two_routers_check_is_probed_once_and_fails_for_both(upstreams, registry, serve_registry):
    a = upstreams("a")
    checked = 'health_check { path "/health" interval 1s timeout 1s }'
    registry.push("alpha", route_text("alpha", a.url, cost=checked))
    registry.push("beta", route_text("beta", a.url, cost=checked))
    gw = serve_registry()
    assert len(gw.gateway.health.tasks) == 1
    a.health_status = 503
    for name in ("alpha", "beta"):
        assert wait_for(lambda name=name: http("POST", f"{gw.url}/r/{name}/v1/chat/completions", CHAT).json().get(
            "error", {}).get("code") == "targets_unavailable", timeout=5)
    a.health_status = 200
    assert wait_for(lambda: http("POST", gw.url + "/r/beta/v1/chat/completions", CHAT).status_code == 200, timeout=5)


def test_the_admin_api_on_a_registry_gateway(upstreams, registry, serve_registry):
    """The admin API sees every router served: a drain in one router, the decision of
    another, and the history rows the gateway recorded."""
    a, b = upstreams("a"), upstreams("b")
    registry.push("alpha", route_text("alpha", a.url))
    registry.push("beta", route_text("beta", b.url))
    gw = serve_registry(admin_keys={auth.digest("admin-key"): "ops"})
    admin = {"Authorization": "Bearer admin-key"}
    drained = http("POST", gw.url + "/api/targets/beta/a/drain", headers=admin)
    assert drained.status_code == 200 and drained.json()["drained"] is True, drained.text
    reply = http("POST", gw.url + "/r/beta/v1/chat/completions", CHAT)
    assert reply.json()["error"]["code"] == "targets_unavailable"
    reply = http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT, headers={"x-request-id": "via-alpha"})
    assert answered_by(reply) == "from a"     # another upstream: not drained
    decided = http("POST", gw.url + "/api/route", {"router": "alpha", "data": CHAT}, headers=admin).json()
    assert decided["router"] == "alpha" and decided["unavailable"] is False
    row = http("GET", gw.url + "/api/requests/via-alpha", headers=admin).json()
    assert (row["router"], row["version"], row["http_status"], row["status"]) == ("alpha", 1, 200, "ok")
    assert (row["source"], row["first_target"], row["first_outcome"], row["failed_over"]) == (
        "gateway", "a", "ok", False)
    # The history says where each row comes from, and lists one source when asked.
    listed = {source: [(r["id"], r["source"]) for r in http(
        "GET", gw.url + f"/api/routers/alpha/requests{query}", headers=admin).json()["data"]]
        for source, query in (("all", ""), ("gateway", "?source=gateway"), ("sdk", "?source=sdk"))}
    assert listed["gateway"] == [("via-alpha", "gateway")]
    assert listed["sdk"] == [(decided["request_id"], "sdk")]
    assert sorted(listed["all"]) == sorted(listed["gateway"] + listed["sdk"])
    bad = http("GET", gw.url + "/api/routers/alpha/requests?source=both", headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "source"


def test_two_gateway_processes_on_one_registry_both_pick_up_a_deploy(upstreams, registry, tmp_path):
    a, b = upstreams("a"), upstreams("b")
    registry.push("alpha", route_text("alpha", a.url))
    v2 = registry.push("alpha", route_text("alpha", b.url), deploy=False)
    gateways = [Served("--registry", str(registry.path), "--log-file", str(tmp_path / "one.log")),
                Served("--registry", str(registry.path), "--workers", "2", "--log-file", str(tmp_path / "two.log"))]
    try:
        for served in gateways:
            assert answered_by(http("POST", served.url + "/v1/chat/completions", CHAT)) == "from a"
        registry.store.deploy("alpha", v2)
        deployed_at = time.monotonic()
        for served in gateways:
            # (each of the second gateway's two workers polls; several requests reach both)
            assert wait_for(lambda served=served: all(
                answered_by(http("POST", served.url + "/v1/chat/completions", CHAT)) == "from b"
                for _ in range(4)), timeout=5, interval=0.02)
        assert time.monotonic() - deployed_at < 2.0
    finally:
        for served in gateways:
            assert served.stop() == 0
    assert {r["version"] for r in registry.rows()} == {1, v2}


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_a_deploy_reaches_every_replica_at_once_by_notify_under_load(upstreams, registry, serve_registry):
    """Three gateways whose poll would take an hour: the deploy's NOTIFY alone moves
    all of them to the new version, while 12 clients keep them busy."""
    a, b = upstreams("a"), upstreams("b")
    registry.push("alpha", route_text("alpha", a.url))
    v2 = registry.push("alpha", route_text("alpha", b.url), deploy=False)
    gateways = [serve_registry(poll_s=3600) for _ in range(3)]
    assert wait_for(lambda: registry.store.query(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE query = 'LISTEN routelang_deployed'")[0]["n"] == 3,
        timeout=10)
    stop = threading.Event()
    answers: list[tuple[int, float, int, str]] = []   # (gateway, time, status, answer)

    def client(n: int) -> None:
        gw = gateways[n % 3]
        while not stop.is_set():
            reply = http("POST", gw.url + "/v1/chat/completions", CHAT)
            answers.append((n % 3, time.monotonic(), reply.status_code,
                            answered_by(reply) if reply.status_code == 200 else reply.text))

    with ThreadPoolExecutor(12) as pool:
        clients = [pool.submit(client, n) for n in range(12)]
        time.sleep(0.5)
        registry.store.deploy("alpha", v2)
        deployed_at = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for c in clients:
            c.result(timeout=30)
    assert all(status == 200 for _g, _t, status, _a in answers), [a for a in answers if a[2] != 200][:3]
    for n in range(3):
        late = [text for g, at, _s, text in answers if g == n and at > deployed_at + 0.5]
        assert late and set(late) == {"from b"}, n     # every replica within 0.5 s, with no poll
    assert {text for _g, at, _s, text in answers if at < deployed_at} == {"from a"}


# ---- the history ------------------------------------------------------------------------

def test_history_rows_carry_attempts_tokens_cost_ttft_status_and_the_key_id(upstreams, registry, serve_registry,
                                                                          tmp_path):
    a, b = upstreams("a"), upstreams("b")
    text = ROUTER.format(
        name="alpha",
        targets=f'target a = openai("ma", "{a.url}/v1") {{ cost 0.002 per 1k }}\n'
                f'target b = openai("mb", "{b.url}/v1") {{ cost 0.004 per 1k }}',
        rules='rule ab priority 20 {\n    when user == "ab"\n    split sticky by metadata.team {\n'
              '        50% control: a\n        50% variant: b\n    }\n}\n\n'
              "rule all priority 10 {\n    fallback a, b\n}")
    registry.push("alpha", text)
    keys = tmp_path / "keys"
    keys.write_text(f"sha256:{auth.digest('k1')} team-a\n")
    gw = serve_registry(api_keys=auth.load_keys(str(keys)))
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k1", max_retries=0)
    a.script = [{"status": 503, "body": {"error": {"message": "busy"}}}]
    reply = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user",
                                                                                      "content": "hi"}])
    fell_back = reply.headers["x-request-id"]
    stream = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, extra_headers={"x-request-id": "streamed"})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "hello"
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], user="ab",
                                   metadata={"team": "ml"}, extra_headers={"x-request-id": "split"})
    assert http("POST", gw.url + "/v1/chat/completions", CHAT, headers={"Authorization": "Bearer bad"}
                ).status_code == 401
    rows = recorded(gw, registry, fell_back, "streamed", "split")
    assert set(rows) == {fell_back, "streamed", "split"}   # a refused request is not a routed one
    row = rows[fell_back]
    assert [(x["target"], x["outcome"], x.get("status")) for x in json.loads(row["attempts"])] == [
        ("a", "http_503", 503), ("b", "ok", 200)]
    assert (row["router"], row["version"], row["rule"], row["status"], row["http_status"]) == (
        "alpha", 1, "all", "ok", 200)
    assert (row["tokens_in"], row["tokens_out"]) == (5, 2)
    assert row["cost"] == pytest.approx(7 * 0.004 / 1000)    # b answered
    assert row["client_key_id"] == "team-a" and "k1" not in json.dumps(row)
    assert row["ttft_ms"] is None and row["latency_ms"] > 0
    assert json.loads(row["targets"]) == [0, 1]   # the stored row names its targets by their place in the version
    assert [t["model_name"] for t in registry.store.get_request(fell_back)["targets"]] == ["ma", "mb"]
    streamed = rows["streamed"]
    assert streamed["ttft_ms"] is not None and 0 < streamed["ttft_ms"] <= streamed["latency_ms"]
    assert (streamed["tokens_in"], streamed["tokens_out"]) == (5, 2)
    split = rows["split"]
    assert split["rule"] == "ab" and split["split_label"] in ("control", "variant")
    assert split["sticky_key_hash"] and len(split["sticky_key_hash"]) == 16 and "ml" not in split["sticky_key_hash"]


def test_unmatched_and_failed_requests_are_recorded_with_their_status(upstreams, registry, serve_registry):
    a = upstreams("a")
    text = ROUTER.format(name="alpha", targets=f'target a = openai("ma", "{a.url}/v1")',
                         rules='rule only priority 10 {\n    when user == "x"\n    route a\n}')
    registry.push("alpha", text)
    gw = serve_registry()
    assert http("POST", gw.url + "/v1/chat/completions", CHAT, headers={"x-request-id": "u"}).status_code == 400
    a.script = [{"status": 500, "body": {"error": {"message": "down"}}}]
    assert http("POST", gw.url + "/v1/chat/completions", {**CHAT, "user": "x"},
                headers={"x-request-id": "f"}).status_code == 502
    flush(gw)
    rows = {r["id"]: r for r in registry.rows()}
    assert (rows["u"]["status"], rows["u"]["http_status"], rows["u"]["rule"]) == ("unmatched", 400, None)
    assert (rows["f"]["status"], rows["f"]["http_status"], rows["f"]["error"]) == ("error", 502,
                                                                                  "all_targets_failed")


def _file_bytes(path: Path) -> bytes:
    """The registry file and its write-ahead log (rows may not be checkpointed yet)."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_capture_off_stores_no_text(upstreams, registry, serve_registry):
    a = upstreams("a")
    registry.push("alpha", route_text("alpha", a.url))
    gw = serve_registry()
    secret = {"model": "auto", "messages": [{"role": "user", "content": "zebra-prompt-7731"}]}
    assert answered_by(http("POST", gw.url + "/v1/chat/completions", secret)) == "from a"
    flush(gw)
    assert len(registry.rows()) == 1
    if isinstance(registry.path, Path):
        data = _file_bytes(registry.path)
        assert b"zebra-prompt-7731" not in data and b"from a" not in data
    assert registry.store.query("SELECT COUNT(*) AS n FROM captures")[0]["n"] == 0


def test_capture_on_stores_the_body_and_the_answer_and_request_shows_them(upstreams, registry, serve_registry):
    a = upstreams("a")
    registry.push("alpha", route_text("alpha", a.url))
    gw = serve_registry(capture=True)
    secret = {"model": "auto", "messages": [{"role": "user", "content": "zebra-prompt-7731"}]}
    http("POST", gw.url + "/v1/chat/completions", secret, headers={"x-request-id": "whole"})
    http("POST", gw.url + "/v1/chat/completions", {**secret, "stream": True}, headers={"x-request-id": "streamed"})
    recorded(gw, registry, "whole", "streamed")
    if isinstance(registry.path, Path):
        assert b"zebra-prompt-7731" in _file_bytes(registry.path)
    shown = CliRunner().invoke(main, ["request", "whole", "--registry", str(registry.path)])
    assert shown.exit_code == Exit.OK, shown.output
    capture = json.loads(shown.output)["capture"]
    assert json.loads(capture["request"]) == secret
    assert json.loads(capture["response"])["choices"][0]["message"]["content"] == "from a"
    streamed = json.loads(CliRunner().invoke(main, ["request", "streamed", "--registry",
                                                    str(registry.path)]).output)["capture"]
    assert streamed["response"] == "hello"                      # the stream's content, concatenated
    registry.store.delete("alpha")
    assert registry.store.query("SELECT COUNT(*) AS n FROM captures")[0]["n"] == 0


def test_no_history_records_nothing(upstreams, registry, serve_registry):
    a = upstreams("a")
    registry.push("alpha", route_text("alpha", a.url))
    gw = serve_registry(history=False)
    assert answered_by(http("POST", gw.url + "/v1/chat/completions", CHAT)) == "from a"
    assert gw.gateway.recorder is None
    time.sleep(0.3)
    assert registry.rows() == []


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)   # Postgres keeps whole days: test_postgres_*
def test_retention_by_rows_and_by_days(upstreams, registry, serve_registry):
    a = upstreams("a")
    registry.push("alpha", route_text("alpha", a.url))
    conn = registry.store.conn
    conn.execute("INSERT INTO requests (id, time, router, targets, attempts, status) "
                 "VALUES ('old', ?, 'alpha', '[]', '[]', 'ok')", (time.time() - 3 * 86400,))
    writer = HistoryWriter(registry.path, Retention(max_rows=5, max_days=2), prune_every_s=0)
    gw = serve_registry(history=writer, capture=True)
    for i in range(12):
        http("POST", gw.url + "/v1/chat/completions", CHAT, headers={"x-request-id": f"r{i:02}"})
    flush(gw)
    ids = [r["id"] for r in registry.rows()]
    assert "old" not in ids                  # older than max_days
    assert ids == [f"r{i:02}" for i in range(7, 12)]   # the newest max_rows
    captured = {row[0] for row in conn.execute("SELECT id FROM captures")}
    assert captured == set(ids)              # captures follow their rows


def test_retention_from_the_environment_and_the_serve_options():
    assert Retention.from_env({}) == Retention()
    assert Retention.from_env({"ROUTELANG_HISTORY_MAX_ROWS": "10", "ROUTELANG_HISTORY_MAX_DAYS": "0.5"}) == \
        Retention(max_rows=10, max_days=0.5)
    with pytest.raises(RegistryError, match="ROUTELANG_HISTORY_MAX_ROWS='many'"):
        Retention.from_env({"ROUTELANG_HISTORY_MAX_ROWS": "many"})
    bad = CliRunner().invoke(main, ["serve", "--registry", "x.db", "--history-max-rows", "0"])
    assert bad.exit_code == Exit.USAGE


def test_serve_needs_file_or_registry_and_registry_options_need_a_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("ROUTELANG_REGISTRY", raising=False)
    route = tmp_path / "r.json"
    route.write_text('{"name": "r", "rules": []}')
    for args, message in ((["serve"], "needs FILE or --registry"),
                          (["serve", str(route), "--registry", "x.db"], "not both"),
                          (["serve", str(route), "--capture"], "need --registry"),
                          (["serve", "--registry", "x.db", "--capture", "--no-history"], "cannot go with"),
                          (["serve", "--registry", str(tmp_path / "none.db")], "no registry")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == Exit.USAGE, (args, result.output)
        assert message in result.output, (args, result.output)


# ---- A/B arms judged by their own target -----------------------------------------------------

def _split_router(a, b, failover: str = "") -> str:
    return ROUTER.format(
        name="alpha",
        targets=f'target a = openai("ma", "{a.url}/v1") {{ cost 0.002 per 1k }}\n'
                f'target b = openai("mb", "{b.url}/v1") {{ cost 0.004 per 1k }}',
        rules=f"rule ab priority 20 {{\n    split sticky by user{failover} {{\n"
              "        50% control: a\n        50% variant: b\n    }\n}")


def _ab_json(registry: Registry, *options: str) -> dict:
    result = CliRunner().invoke(main, ["ab", "alpha", "--registry", str(registry.path), "--format", "json",
                                       *options])
    assert result.exit_code == Exit.OK, result.output
    return json.loads(result.output)


def test_a_failing_variant_that_falls_over_to_the_control_is_reported_failing(upstreams, registry,
                                                                             serve_registry):
    """The variant's upstream answers 500 to four requests in five: the client still gets 200s (the
    split falls over to the control), but each row records the variant's own outcome and the
    fall-over, and `ab` reports the variant's first-target success at 20 % (it said 100 %) with a
    fall-over rate of 80 %, and its own cost (it gave the control's)."""
    a, b = upstreams("a"), upstreams("b")
    calls = iter(range(10_000))
    b.default = lambda body: ({"body": chat_answer("mb", text="from b")} if next(calls) % 5 == 4
                              else {"status": 500, "body": {"error": {"message": "down"}}})
    registry.push("alpha", _split_router(a, b))
    gw = serve_registry()
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    ids = []
    for i in range(80):
        reply = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], user=f"user-{i}")
        assert reply.http_response.status_code == 200
        ids.append(reply.headers["x-request-id"])
    rows = recorded(gw, registry, *ids)
    variant = [r for r in rows.values() if r["split_label"] == "variant"]
    control = [r for r in rows.values() if r["split_label"] == "control"]
    assert len(variant) >= 30 and len(control) >= 30
    assert {(r["status"], r["source"], r["first_target"]) for r in variant} == {("ok", "gateway", "b")}
    assert {(r["first_outcome"], r["failed_over"]) for r in variant} == {("http_500", 1), ("ok", 0)}
    own = sum(r["first_outcome"] == "ok" for r in variant)
    assert own == len(b.received) - sum(r["failed_over"] for r in variant) == len(variant) // 5
    assert {(r["first_target"], r["first_outcome"], r["failed_over"]) for r in control} == {("a", "ok", 0)}

    report = _ab_json(registry)
    [exp] = report["experiments"]
    arms = {arm["label"]: arm for arm in exp["arms"]}
    assert arms["variant"]["success_rate"] == pytest.approx(own / len(variant))
    assert arms["variant"]["fall_over_rate"] == pytest.approx(1 - own / len(variant))
    assert (arms["control"]["success_rate"], arms["control"]["fall_over_rate"]) == (1.0, 0.0)
    # Latency and cost of an arm are those of the requests it answered itself.
    assert arms["variant"]["cost_per_request"] == {"count": own, "mean": pytest.approx(7 * 0.004 / 1000)}
    assert arms["variant"]["latency_ms"]["count"] == own
    assert arms["control"]["cost_per_request"]["mean"] == pytest.approx(7 * 0.002 / 1000)
    [comparison] = exp["comparisons"]
    assert comparison["success_rate"]["verdict"] == "significant"
    assert comparison["success_rate"]["difference"] == pytest.approx(own / len(variant) - 1)


def test_a_split_with_no_failover_keeps_each_request_in_its_arm(upstreams, registry, serve_registry):
    """`split ... no failover`: a variant's failure is the client's answer (502), never the control's,
    so the control's figures are its own; the history still says which arm failed."""
    a, b = upstreams("a"), upstreams("b")
    b.default = {"status": 500, "body": {"error": {"message": "down"}}}
    registry.push("alpha", _split_router(a, b, failover=" no failover"))
    gw = serve_registry()
    statuses = {}
    for i in range(40):
        reply = http("POST", gw.url + "/v1/chat/completions", {**CHAT, "user": f"user-{i}"},
                     headers={"x-request-id": f"r{i}"})
        statuses[f"r{i}"] = reply.status_code
    rows = recorded(gw, registry, *statuses)
    for request_id, status in statuses.items():
        row = rows[request_id]
        expected = (200, "a", "ok") if row["split_label"] == "control" else (502, "b", "http_500")
        assert (status, row["first_target"], row["first_outcome"], row["failed_over"]) == (*expected, 0)
    assert len(a.received) == sum(s == 200 for s in statuses.values()) > 0   # a never answered for b
    assert len(b.received) == sum(s == 502 for s in statuses.values()) > 0


def test_gateways_on_one_registry_and_one_redis_share_a_breaker_across_versions(upstreams, registry, redis_server,
                                                                                 tmp_path):
    a = upstreams("a")
    breaker = "cost 0.002 per 1k circuit_breaker { failures 1 cooldown 60s successes 1 }"
    registry.push("alpha", route_text("alpha", a.url, cost=breaker))
    common = ["--registry", str(registry.path), "--state", redis_server.url]
    gateways = [Served(*common, "--log-file", str(tmp_path / "one.log")),
                Served(*common, "--workers", "2", "--log-file", str(tmp_path / "two.log"))]
    try:
        a.script = [{"status": 500, "body": {"error": {"message": "down"}}}]
        assert http("POST", gateways[0].url + "/v1/chat/completions", CHAT).status_code == 502   # open for all
        time.sleep(0.25)
        for _ in range(4):   # both workers of the other gateway keep off a
            reply = http("POST", gateways[1].url + "/v1/chat/completions", CHAT)
            assert reply.json()["error"]["code"] == "targets_unavailable"
        assert len(a.received) == 1
        # A new version (another description) of the router keeps the fleet's breaker.
        registry.push("alpha", route_text("alpha", a.url, cost=breaker).replace(
            "rule all priority 10 {", 'rule all priority 10 "every request" {'))
        for served in gateways:
            assert wait_for(lambda served=served: http("GET", served.url + "/r/alpha/routing").json()["version"] == 2,
                            timeout=3)
            target = http("GET", served.url + "/r/alpha/routing").json()["targets"][0]
            assert target["breaker"] == "open" and target["failures"] == 1
        assert len(a.received) == 1
    finally:
        for served in gateways:
            served.stop()


# ---- Postgres stopped and started again -------------------------------------------------------

def test_postgres_down_serving_goes_on_rows_wait_then_are_written_beyond_the_bound_dropped(upstreams, loop_thread,
                                                                                           tmp_path):
    """Its own PostgreSQL, stopped under a serving gateway: every request is still answered from
    the deployed version; history rows wait in the writer's queue up to its bound, the rest are
    dropped and counted in /metrics; when the database is back the waiting rows are written."""
    from services import PostgresServer

    server = PostgresServer()
    gw = None
    try:
        registry = Registry(tmp_path, server.new_database())
        a = upstreams("a")
        registry.push("alpha", route_text("alpha", a.url))
        writer = HistoryWriter(registry.path, queue_size=20, interval_s=0.05, retry_s=0.2)
        gw = loop_thread.run(GatewayServer(loop_thread, None, FAST, registry=registry.path, history=writer).start())
        for i in range(3):
            assert answered_by(http("POST", gw.url + "/v1/chat/completions", CHAT,
                                    headers={"x-request-id": f"before-{i}"})) == "from a"
        writer.flush()
        registry.store.close()
        server.stop()

        def send(first: int, count: int) -> None:
            for i in range(first, first + count):
                started = time.monotonic()
                reply = http("POST", gw.url + "/v1/chat/completions", CHAT, headers={"x-request-id": f"down-{i}"})
                assert reply.status_code == 200 and answered_by(reply) == "from a"
                assert time.monotonic() - started < 1.0          # never waiting on the database

        send(0, 5)
        assert wait_for(lambda: writer.failures >= 1, timeout=5)   # the writer holds those 5, trying again
        send(5, 40)                                                 # 20 wait in the queue, 20 are dropped
        assert writer.dropped == 20 and writer.waiting == 20
        metrics = http("GET", gw.url + "/metrics").text
        assert f"routelang_history_dropped_total {float(writer.dropped)}" in metrics
        with pytest.raises(TimeoutError):
            writer.flush(timeout_s=0.5)
        server.start()
        writer.flush(timeout_s=15)
        registry.store = open_store(registry.path)   # (the test's own store was closed before the stop)
        ids = {r["id"] for r in registry.store.query("SELECT id FROM requests")}
        down = {i for i in ids if i.startswith("down-")}
        assert {f"before-{i}" for i in range(3)} <= ids
        assert len(down) == 45 - 20 and writer.written == 3 + len(down)
        # Deploys are followed again: the registry's poll and listener reconnect.
        b = upstreams("b")
        registry.push("alpha", route_text("alpha", b.url))
        assert wait_for(lambda: answered_by(http("POST", gw.url + "/v1/chat/completions", CHAT)) == "from b",
                        timeout=5)
    finally:
        if gw is not None:
            loop_thread.run(gw.stop())
        server.close()


def test_a_rollback_serves_the_stored_config_and_compiles_nothing(upstreams, registry, serve_registry):
    """Version 1's sources no longer compile (as after a routelang upgrade that rejects what an older
    one accepted) but its stored compiled config is sound: a rollback to it, from another process or
    from the admin API, serves that config; nothing compiles the sources again."""
    a, b = upstreams("a"), upstreams("b")
    built = build_file(_written(registry.directory / "v1", route_text("alpha", a.url)))
    broken = {**built.sources, built.entry: "router alpha\nrule r { route nowhere }\n"}
    old, _new = registry.store.push("alpha", built.entry, broken, built.compiled, "sources that no longer compile")
    registry.store.deploy("alpha", old.version)
    registry.push("alpha", route_text("alpha", b.url))
    gw = serve_registry(admin_keys=frozenset({auth.digest("admin")}))

    def served() -> str:
        return answered_by(http("POST", gw.url + "/r/alpha/v1/chat/completions", CHAT))

    assert served() == "from b"
    rolled = cli("rollback", "alpha", "--registry", str(registry.path))
    assert rolled.returncode == Exit.OK, rolled.stderr
    assert wait_for(lambda: served() == "from a", timeout=5)
    registry.store.deploy("alpha", 2)
    assert wait_for(lambda: served() == "from b", timeout=5)
    answer = http("POST", gw.url + "/api/routers/alpha/rollback", headers={"Authorization": "Bearer admin"})
    assert answer.json() == {"router": "alpha", "from_version": 2, "to_version": 1}, answer.text
    assert wait_for(lambda: served() == "from a", timeout=5)
    assert gw.log_lines("bug") == [] and not [e for e in gw.log_lines("reload") if e["result"] == "error"]


def _written(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    path = folder / "alpha.route"
    path.write_text(text)
    return path
