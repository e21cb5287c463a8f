"""State shared through Redis (`serve --state redis://...`): three gateway processes (one
with --workers 2) on one real redis-server, fake upstreams; breakers, the half-open
probe, drains, pushed health, round-robin turns and health probes are the fleet's;
Redis frozen, killed and restarted; a cancelled Redis call."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from gateway_fakes import Served, config, http, rule, target, wait_for

from routelang.gateway import auth

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
ADMIN = "admin-secret"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
PROPAGATION_S = 0.25   # the goal: a change on one replica seen by all within this


@pytest.fixture
def fleet(redis_server, tmp_path):
    """start(config) -> three gateways on `redis_server` (the third with --workers 2)."""
    keys = tmp_path / "admin.keys"
    keys.write_text(f"sha256:{auth.digest(ADMIN)} ops\n")
    started: list[Served] = []

    def start(cfg: dict, state: str | None = None) -> list[Served]:
        path = tmp_path / "router.json"
        path.write_text(json.dumps(cfg))
        common = [str(path), "--state", state or redis_server.url, "--admin-keys", str(keys), "--timeout", "5",
                  "--drain", "5"]
        variants = [[], [], ["--workers", "2"]]
        with ThreadPoolExecutor(3) as pool:
            gateways = list(pool.map(lambda i: Served(*common, *variants[i], "--log-file",
                                                      str(tmp_path / f"gw{i}.log")), range(3)))
        started.extend(gateways)
        return gateways

    yield start
    for gw in started:
        gw.stop()


def post(gw: Served, timeout: float = 10):
    return http("POST", gw.url + "/v1/chat/completions", CHAT, timeout=timeout)


def served_by(reply) -> str:
    return reply.headers["x-routelang-target"]


def routing_target(gw: Served, name: str) -> dict:
    return next(t for t in http("GET", gw.url + "/routing").json()["targets"] if t["name"] == name)


BREAKER = {"x-routelang": {"circuit_breaker": {"failure_threshold": 2, "cooldown_ms": 60_000}}}


def test_a_breaker_opened_on_one_replica_keeps_every_replica_off_the_target(upstreams, fleet):
    a, b = upstreams("a"), upstreams("b")
    a.default = {"status": 500, "body": {"error": {"message": "down"}}}
    gateways = fleet(config(rule("chain", [target(a, "ma", **BREAKER), target(b, "mb")], strategy="fallback")))
    assert [served_by(post(gateways[0])) for _ in range(2)] == ["mb", "mb"]  # a failed twice: open
    assert len(a.received) == 2
    time.sleep(PROPAGATION_S)
    for gw in gateways:
        assert [served_by(post(gw)) for _ in range(4)] == ["mb"] * 4
    assert len(a.received) == 2  # no other replica (nor worker) tried it
    assert {routing_target(gw, "ma")["breaker"] for gw in gateways} == {"open"}


def test_half_open_lets_one_probe_through_for_the_whole_fleet(upstreams, fleet):
    a, b = upstreams("a"), upstreams("b")
    a.script = [{"status": 500, "body": {"error": {"message": "down"}}}]
    a.default = {"delay": 1.5, "body": {"id": "x", "object": "chat.completion", "created": 1, "model": "ma",
                                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                                     "finish_reason": "stop"}]}}
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 1, "cooldown_ms": 1000}}}
    gateways = fleet(config(rule("chain", [target(a, "ma", **breaker), target(b, "mb")], strategy="fallback")))
    assert served_by(post(gateways[0])) == "mb"  # a failed: open for a second
    time.sleep(1.1)                              # cooldown over: half-open everywhere
    with ThreadPoolExecutor(48) as pool:
        sent = []
        for _wave in range(4):   # waves of concurrent requests on every replica and worker, while the probe is out
            sent += [pool.submit(post, gw) for gw in gateways for _ in range(4)]
            time.sleep(0.1)
        replies = [future.result() for future in sent]
    assert all(r.status_code == 200 for r in replies)
    assert len(a.received) == 2   # the failure, then exactly one probe for the fleet
    assert Counter(served_by(r) for r in replies) == {"mb": 47, "ma": 1}
    # The probe succeeded: closed for everyone.
    assert wait_for(lambda: {routing_target(gw, "ma")["breaker"] for gw in gateways} == {"closed"}, timeout=3)


def test_drains_and_pushed_health_through_one_replica_hold_on_every_replica(upstreams, fleet):
    a, b = upstreams("a"), upstreams("b")
    gateways = fleet(config(rule("chain", [target(a, "ma"), target(b, "mb")], strategy="fallback")))
    assert {served_by(post(gw)) for gw in gateways} == {"ma"}
    drained = http("POST", gateways[1].url + "/api/targets/test-router/ma/drain", headers=AS_ADMIN)
    assert drained.status_code == 200 and drained.json()["drained"] is True
    time.sleep(PROPAGATION_S)
    for gw in gateways:
        assert [served_by(post(gw)) for _ in range(3)] == ["mb"] * 3
        assert routing_target(gw, "ma")["drained"] is True
    http("POST", gateways[2].url + "/api/targets/test-router/ma/undrain", headers=AS_ADMIN)
    time.sleep(PROPAGATION_S)
    assert {served_by(post(gw)) for gw in gateways for _ in range(2)} == {"ma"}
    pushed = http("POST", gateways[0].url + "/api/targets/test-router/ma/health", {"healthy": False,
                                                                                  "detail": "maintenance"},
                  headers=AS_ADMIN)
    assert pushed.status_code == 200
    time.sleep(PROPAGATION_S)
    for gw in gateways:
        assert [served_by(post(gw)) for _ in range(3)] == ["mb"] * 3
        assert routing_target(gw, "ma")["health_detail"] == "maintenance"


def test_round_robin_turns_are_the_fleets(upstreams, fleet):
    # Six targets, one request to each gateway in turn, twice: turns taken from one counter are
    # distinct numbers, so no target gets more than two of the six. (With each process's own
    # counter, every process's first request goes to the first target: three or more there.)
    up = upstreams("up")
    models = [f"m{i}" for i in range(6)]
    gateways = fleet(config(rule("rr", [target(up, m) for m in models], strategy="round_robin",
                                 ext={"strategy": {"kind": "round_robin"}})))
    picks = [served_by(post(gw)) for _round in range(2) for gw in gateways]
    assert max(Counter(picks).values()) <= 2, picks


def test_health_is_probed_once_per_interval_for_the_fleet(upstreams, fleet):
    a, b = upstreams("a"), upstreams("b")
    hc = {"x-routelang": {"health_check": {"path": "/health", "interval_ms": 300, "timeout_ms": 200}}}
    gateways = fleet(config(rule("chain", [target(a, "ma", **hc), target(b, "mb")], strategy="fallback")))
    time.sleep(0.5)
    before = a.health_probes
    time.sleep(3.0)
    probes = a.health_probes - before
    assert 7 <= probes <= 13, probes   # ten intervals; four processes probing for themselves would make ~40
    a.health_status = 503   # the prober's result reaches every process
    assert wait_for(lambda: all(routing_target(gw, "ma")["healthy"] is False for gw in gateways), timeout=3)
    assert {served_by(post(gw)) for gw in gateways for _ in range(2)} == {"mb"}


def answered_within(gateways: list[Served], seconds: float) -> list:
    """A request to each gateway, all at once; every one must be answered within `seconds`."""
    start = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda gw: post(gw, timeout=seconds), [gw for gw in gateways for _ in range(2)]))
    assert time.monotonic() - start < seconds
    return replies


def degraded_everywhere(gateways: list[Served]) -> bool:
    for gw in gateways:
        ready = http("GET", gw.url + "/health/ready", timeout=5)
        if ready.status_code != 200 or not ready.json().get("degraded"):
            return False
    return True


def linked_everywhere(gateways: list[Served]) -> bool:
    """Every worker of every gateway on Redis: its gauge follows its link, and with --workers 2
    the exposition is the minimum of both workers' gauges."""
    return all("routelang_state_backend_up 1.0" in http("GET", gw.url + "/metrics").text for gw in gateways)


def test_redis_frozen_never_hangs_a_request_and_shows_degraded(upstreams, fleet, redis_server):
    a, b = upstreams("a"), upstreams("b")
    gateways = fleet(config(rule("chain", [target(a, "ma", **BREAKER), target(b, "mb")], strategy="fallback")))
    assert all(r.status_code == 200 for r in answered_within(gateways, 3))
    redis_server.freeze()
    try:
        a.default = {"status": 500, "body": {"error": {"message": "down"}}}  # outcomes to write: Redis hangs
        for _ in range(3):
            assert all(r.status_code == 200 for r in answered_within(gateways, 3))
        assert wait_for(lambda: degraded_everywhere(gateways), timeout=5)
        assert http("GET", gateways[0].url + "/routing").json()["state"]["degraded"] is True
        assert "routelang_state_backend_up 0.0" in http("GET", gateways[0].url + "/metrics").text
    finally:
        redis_server.thaw()
    assert wait_for(lambda: not any(http("GET", gw.url + "/health/ready").json().get("degraded")
                                    for gw in gateways), timeout=5)
    assert wait_for(lambda: linked_everywhere(gateways), timeout=5)


def test_redis_killed_and_restarted_shared_breakers_resume(upstreams, fleet, redis_server):
    a, b = upstreams("a"), upstreams("b")
    gateways = fleet(config(rule("chain", [target(a, "ma", **BREAKER), target(b, "mb")], strategy="fallback")))
    redis_server.kill()
    assert all(r.status_code == 200 and served_by(r) == "ma" for r in answered_within(gateways, 3))
    assert wait_for(lambda: degraded_everywhere(gateways), timeout=5)
    redis_server.start()   # same port, empty
    # Every worker back on Redis (one /health/ready answer speaks for one worker only).
    assert wait_for(lambda: linked_everywhere(gateways), timeout=5)
    a.default = {"status": 500, "body": {"error": {"message": "down"}}}
    assert [served_by(post(gateways[1])) for _ in range(2)] == ["mb", "mb"]
    seen = len(a.received)
    time.sleep(PROPAGATION_S)
    assert {served_by(post(gw)) for gw in gateways for _ in range(3)} == {"mb"}
    assert len(a.received) == seen


def test_a_client_leaving_mid_request_leaves_the_shared_state_in_step(upstreams, fleet):
    import socket

    a, b = upstreams("a"), upstreams("b")
    gateways = fleet(config(rule("chain", [target(a, "ma", **BREAKER), target(b, "mb")], strategy="fallback")))
    a.default = {"delay": 2, "status": 500, "body": {"error": {"message": "slow and down"}}}
    host, port = gateways[0].url.removeprefix("http://").split(":")
    for _ in range(3):   # clients that leave while their request waits for a: the handler is cancelled
        body = json.dumps(CHAT).encode()
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.2)
    a.default = {"status": 500, "body": {"error": {"message": "down"}}}
    assert [served_by(post(gateways[0])) for _ in range(2)] == ["mb", "mb"]
    time.sleep(PROPAGATION_S)
    assert {routing_target(gw, "ma")["breaker"] for gw in gateways} == {"open"}
    assert {served_by(post(gw)) for gw in gateways for _ in range(3)} == {"mb"}


def test_a_redis_call_cancelled_mid_reply_does_not_put_the_connection_out_of_step(redis_server):
    """The gateway's link bounds every call with a timeout, which cancels it mid-reply when Redis is
    slow: the next call on the same (only) connection must read its own reply, not the late one."""
    from routelang.gateway.redisstate import Link

    async def scenario() -> list:
        link = Link(redis_server.url, on_change=lambda up: None)
        link.open()
        link.client.connection_pool.max_connections = 1
        assert await link.connect()
        await link.client.set("k", "v")
        answers = []
        for _ in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):   # BLPOP answers nil after 0.3 s: cancelled before
                    await link.client.blpop(["nothing"], timeout=0.3)
            await asyncio.sleep(0.4)                # the late nil has surely arrived by now
            answers.append(await link.client.get("k"))
        await link.close()
        return answers

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [b"v", b"v", b"v"]


# A script that takes ARGV[1] microseconds of Redis's time (as a busy server does), then answers ARGV[2].
SLOW_LUA = """
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
repeat t = redis.call('TIME') until tonumber(t[1]) * 1000000 + tonumber(t[2]) - start >= tonumber(ARGV[1])
return ARGV[2]
"""


async def slow_link(url: str):
    from routelang.gateway.redisstate import Link

    changes = []
    link = Link(url, on_change=changes.append)
    link.scripts["slow"] = SLOW_LUA
    link.open()
    assert await link.connect()
    return link, changes


def test_a_script_call_given_up_by_its_caller_leaves_the_pipe_in_step(redis_server):
    """A caller that stops waiting (its request cancelled) leaves its reply to the pipe, which
    drops it: the calls after it read their own replies, on the same connection."""
    from routelang.gateway.redisstate import Op

    async def scenario() -> list:
        link, _ = await slow_link(redis_server.url)
        pipe = link.pipe
        answers = []
        for i in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.02):
                    await link.call(Op("slow", [], [100_000, f"late {i}"]))
            answers.append(await link.call(Op("slow", [], [0, f"mine {i}"])))
        assert link.pipe is pipe and link.up and not pipe.waiting
        await link.close()
        return answers

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [b"mine 0", b"mine 1", b"mine 2"]


def test_a_script_call_over_the_timeout_takes_the_link_down_and_connecting_opens_a_new_pipe(redis_server):
    from routelang.gateway.redisstate import TIMEOUT_S, Op

    async def scenario() -> None:
        link, changes = await slow_link(redis_server.url)
        old = link.pipe
        started = time.monotonic()
        together = [link.call(Op("slow", [], [2 * TIMEOUT_S * 1e6, "late"])), link.run([Op("slow", [], [0, "next"])])]
        assert await asyncio.gather(*together) == [None, None]   # both given up with the connection
        assert TIMEOUT_S <= time.monotonic() - started < 2 * TIMEOUT_S
        assert changes == [True, False] and old.closed
        await asyncio.sleep(TIMEOUT_S * 1.5)   # the slow script is over
        assert await link.connect()
        assert link.pipe is not old and await link.call(Op("slow", [], [0, "again"])) == b"again"
        await link.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_the_link_reaches_redis_on_a_unix_socket_with_a_password_and_a_database(tmp_path):
    """`unix://PATH?db=N&password=P`: the pipe authenticates and selects the database, as the client does."""
    import redis
    from services import RedisServer

    from routelang import ir
    from routelang.gateway.redisledger import RedisLedger
    from routelang.gateway.redisstate import Link, describe
    from routelang.tenancy.ledger import Admission, Scope

    server = RedisServer(tmp_path, password="s3cret").start()
    url = f"unix://{server.socket}?db=3&password=s3cret"
    assert describe(url) == f"unix://{server.socket}"   # (what /routing shows: no password)
    try:
        async def scenario() -> None:
            link = Link(url, on_change=lambda up: None)
            link.open()
            ledger = RedisLedger(link)
            assert await link.connect()
            scope = Scope("workspace", "ws", budgets=(ir.Budget(period="day", micros=1_000_000),))
            assert isinstance(await ledger.admit(1, (scope,), 1, 1000), Admission)
            await link.close()

        asyncio.run(asyncio.wait_for(scenario(), 10))
        with redis.Redis(unix_socket_path=str(server.socket), password="s3cret", db=3) as db3:
            assert db3.zcard("routelang:v1:{tenants}:holds") == 1
        with redis.Redis(unix_socket_path=str(server.socket), password="s3cret", db=0) as db0:
            assert db0.dbsize() == 0
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=str(server.socket), password="wrong").ping()
    finally:
        server.stop()


def test_the_redis_client_is_imported_only_when_a_redis_url_asks_for_it():
    import subprocess
    import sys

    from gateway_fakes import ROOT

    code = ("import sys\nfrom routelang.gateway import app, server\n"
            "from routelang.gateway.wiring import state_from_url\n"
            "state = state_from_url('memory')\nprint(type(state).__name__, 'redis' in sys.modules)\n"
            "state_from_url('redis://127.0.0.1:1/0').link.open()\nprint('redis' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.split() == ["InProcessState", "False", "True"], done.stderr
    from routelang.gateway.wiring import state_from_url

    with pytest.raises(ValueError, match="--state takes `memory` or a Redis URL"):
        state_from_url("postgres://x")


def test_a_gateway_starts_degraded_when_redis_is_unreachable(upstreams, tmp_path):
    from services import free_port

    a = upstreams("a")
    path = tmp_path / "router.json"
    path.write_text(json.dumps(config(rule("one", [target(a, "ma")]))))
    gw = Served(str(path), "--state", f"redis://127.0.0.1:{free_port()}/0", "--log-file", str(tmp_path / "gw.log"))
    try:
        ready = http("GET", gw.url + "/health/ready")
        assert ready.status_code == 200 and ready.json()["degraded"] is True
        assert ready.json()["state"]["backend"] == "redis" and ready.json()["state"]["up"] is False
        assert served_by(post(gw)) == "ma"
    finally:
        assert gw.stop() == 0


def test_serve_refuses_a_state_it_does_not_know(tmp_path):
    import subprocess
    import sys

    from gateway_fakes import ROOT

    path = tmp_path / "router.json"
    path.write_text(json.dumps(config(rule("one", [{"provider": "openai", "model_name": "m",
                                                     "endpoint": "http://127.0.0.1:9/v1"}]))))
    done = subprocess.run([sys.executable, "-m", "routelang", "serve", str(path), "--state", "mongodb://x"],
                          check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert "--state takes `memory` or a Redis URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_replicas_share_breakers_over_tls(upstreams, fleet, tmp_path):
    """`rediss://HOST:PORT/DB?ssl_ca_certs=FILE`: the pipe that runs the scripts and the client that
    reads the snapshot and subscribes both speak TLS, verifying the server's certificate."""
    from services import RedisServer

    server = RedisServer(tmp_path / "tls", tls=True).start()
    try:
        a, b = upstreams("a"), upstreams("b")
        a.default = {"status": 500, "body": {"error": {"message": "down"}}}
        gateways = fleet(config(rule("chain", [target(a, "ma", **BREAKER), target(b, "mb")], strategy="fallback")),
                         state=server.url)
        assert wait_for(lambda: linked_everywhere(gateways), timeout=5)
        assert [served_by(post(gateways[0])) for _ in range(2)] == ["mb", "mb"]
        time.sleep(PROPAGATION_S)
        assert {served_by(post(gw)) for gw in gateways for _ in range(3)} == {"mb"}
        assert len(a.received) == 2
        assert http("GET", gateways[1].url + "/routing").json()["state"]["url"] == f"rediss://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


def test_a_redis_whose_certificate_is_not_trusted_is_never_used(tmp_path):
    """Without the authority's certificate the TLS handshake fails: the link stays down (the
    gateway serves on its own state) instead of talking to a server it cannot verify."""
    from services import RedisServer

    from routelang.gateway.redisstate import Link

    server = RedisServer(tmp_path / "tls", tls=True).start()
    try:
        async def scenario() -> list[bool]:
            untrusted = Link(f"rediss://127.0.0.1:{server.port}/0", on_change=lambda up: None)
            trusted = Link(server.url, on_change=lambda up: None)
            results = []
            for link in (untrusted, trusted):
                link.open()
                results.append(await link.connect())
                await link.close()
            return results

        assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [False, True]
    finally:
        server.stop()
