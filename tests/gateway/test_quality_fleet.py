"""Quality requirements judged on the fleet's attempts (`serve --state redis://... --tenant-keys ...`):
failures seen by one replica take a target out of another's selection; a stopped process's
summary stops counting after its age limit; with Redis gone each process judges on its own
window. Real redis-server, real gateways (processes, and in this process), the official
`openai` client, fake upstreams."""

from __future__ import annotations

import concurrent.futures
import time

import openai
import orjson
import pytest
import redis
from gateway_fakes import Served, wait_for

from routelang.gateway.redisquality import MAX_AGE_MS, SYNC_S, quality_key
from routelang.gateway.redisstate import RedisState
from routelang.tenancy.keys import KeyStore

ROUTE = '''router quality
import std.providers
target bad = openai("bad") {{ endpoint "{bad}/v1" }}
target good = openai("good") {{ endpoint "{good}/v1" }}

workspace ws-picky {{ require success >= 90% }}

rule all {{ fallback bad, good }}
'''
FAILING = {"status": 500, "body": {"error": {"message": "down"}}}
# Another process's window of `bad`: 30 failed attempts.
FAILURES = orjson.dumps({"ok": [], "failed": [5.0] * 30}).decode()


def ask(url: str, key: str) -> str:
    """The model that answered one request of `key`'s workspace."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=5)
    return client.chat.completions.create(model="any", messages=[{"role": "user", "content": "x"}]).model


@pytest.fixture
def routed(upstreams, tmp_path):
    """(the route file, the bad and the good upstream, the key of ws-picky)."""
    bad, good = upstreams("bad"), upstreams("good")
    route = tmp_path / "quality.route"
    route.write_text(ROUTE.format(bad=bad.url, good=good.url))
    store = KeyStore(tmp_path / "keys.db")
    key = store.create("ws-picky")[1]
    store.close()
    return route, bad, good, key


def test_failures_seen_by_one_replica_take_the_target_out_of_anothers_selection(routed, redis_server, tmp_path):
    route, bad, _good, key = routed
    bad.default = FAILING
    common = [str(route), "--state", redis_server.url, "--tenant-keys", str(tmp_path / "keys.db"), "--workers", "2",
              "--timeout", "5", "--drain", "1"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        gateways = list(pool.map(lambda i: Served(*common, "--log-file", str(tmp_path / f"gw{i}.log")), range(2)))
    try:
        # Through the first replica only: bad fails every time (good answers after it).
        for _ in range(30):
            assert ask(gateways[0].url, key) == "good"
        seen = len(bad.received)
        assert seen >= 20   # (its two workers judged on the fleet's count: 20 or a few more)

        # The second replica never saw a failure of bad; within the sharing's lag it stops sending there.
        def skips_bad() -> bool:
            before = len(bad.received)
            return ask(gateways[1].url, key) == "good" and len(bad.received) == before

        assert wait_for(skips_bad, timeout=5, interval=0.1)
        time.sleep(2 * SYNC_S)   # every worker has read the fleet's summaries since
        before = len(bad.received)
        for _ in range(10):
            assert ask(gateways[1].url, key) == "good"
        assert len(bad.received) == before
        print(f"\nbad was called {seen} times through the first replica, "
              f"{before - seen} through the second before it judged on the fleet's attempts")
    finally:
        for gw in gateways:
            gw.stop()


def write_summary(r: redis.Redis, owner: str, age_ms: int = 0) -> None:
    """Another process's summary of `bad`, stamped `age_ms` ago on Redis's clock."""
    seconds, micros = r.time()
    r.hset(quality_key("bad"), owner, f"{seconds * 1000 + micros // 1000 - age_ms} {FAILURES}")


def test_a_stopped_processs_summary_stops_counting_after_its_age_limit(routed, gateway, redis_server, tmp_path):
    route, _bad, _good, key = routed
    gw = gateway(route.read_text(), tenant_keys=tmp_path / "keys.db", state=RedisState(redis_server.url))
    r = redis.Redis.from_url(redis_server.url)
    assert ask(gw.url, key) == "bad"   # bad answers; this gateway now follows it

    write_summary(r, "gone:1:a", age_ms=MAX_AGE_MS + 5_000)   # a process that stopped long ago
    seconds, micros = r.time()   # nor are fields that are not summaries: they are left out, not fatal
    now = seconds * 1000 + micros // 1000
    r.hset(quality_key("bad"), mapping={"junk": "no stamp", "other:3:c": f"{now} not json",
                                        "other:4:d": f'{now} {{"ok": "x", "failed": []}}'})
    time.sleep(1.2)   # two reads
    assert ask(gw.url, key) == "bad"

    written = time.monotonic()
    write_summary(r, "alive:2:b")   # 30 failures: 1 success of 31 attempts is below 90 %
    assert wait_for(lambda: ask(gw.url, key) == "good", timeout=5, interval=0.1)
    # Nobody writes it again: once older than the age limit, it no longer counts and bad qualifies again.
    assert wait_for(lambda: ask(gw.url, key) == "bad", timeout=MAX_AGE_MS / 1000 + 5, interval=0.1)
    assert time.monotonic() - written >= MAX_AGE_MS / 1000 - 0.1


def test_with_redis_gone_each_process_judges_on_its_own_window(routed, gateway, redis_server, tmp_path):
    route, _bad, _good, key = routed
    gw = gateway(route.read_text(), tenant_keys=tmp_path / "keys.db", state=RedisState(redis_server.url))
    r = redis.Redis.from_url(redis_server.url)
    assert ask(gw.url, key) == "bad"
    write_summary(r, "alive:2:b")
    assert wait_for(lambda: ask(gw.url, key) == "good", timeout=5, interval=0.1)

    # The fleet's last word was "bad fails"; with Redis gone this process's own window (bad answered) decides.
    redis_server.kill()
    start = time.monotonic()
    assert wait_for(lambda: ask(gw.url, key) == "bad", timeout=5, interval=0.1)
    print(f"\njudged on its own window {time.monotonic() - start:.2f} s after Redis was killed")
    assert gw.gateway.state.status()["degraded"]

    # Redis back (empty): the fleet's summaries count again.
    redis_server.start()
    r = redis.Redis.from_url(redis_server.url)
    assert wait_for(lambda: gw.gateway.state.link.up, timeout=5)
    write_summary(r, "alive:2:b")
    assert wait_for(lambda: ask(gw.url, key) == "good", timeout=5, interval=0.1)
