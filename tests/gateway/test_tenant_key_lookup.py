"""A gateway's key lookups: the registry is asked off the event loop (a slow registry
holds only the requests whose key it must tell about), and a key revoked by another
process is refused within the stated bound (docs/tenants.md, Keys)."""

from __future__ import annotations

import concurrent.futures
import time

import psycopg
from gateway_fakes import http

from routelang.tenancy.keys import KeyStore

ROUTE = '''router keys
import std.providers
target t = openai("m") {{ endpoint "{url}/v1" }}
workspace ws {{ }}
rule all {{ route t }}
'''


def ask(gw, secret: str):
    return http("POST", gw.url + "/v1/chat/completions",
                {"model": "any", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
                headers={"Authorization": f"Bearer {secret}"})


def test_a_key_revoked_by_another_process_is_refused_within_two_seconds(gateway, upstreams, tmp_path):
    up = upstreams()
    registry = tmp_path / "keys.db"
    store = KeyStore(registry)
    key, secret = store.create("ws")
    gw = gateway(ROUTE.format(url=up.url), tenant_keys=registry)
    assert ask(gw, secret).status_code == 200
    time.sleep(0.5)   # the gateway read the key a while ago: its entry is half-way through being fresh
    store.revoke(key.id)   # as `routelang keys revoke` does, in another process: the gateway is not told
    revoked = time.monotonic()
    statuses = []
    while time.monotonic() - revoked < 4:
        statuses.append(ask(gw, secret).status_code)
        if statuses[-1] == 401:
            break
        time.sleep(0.02)
    refused_after = time.monotonic() - revoked
    store.close()
    assert statuses[-1] == 401, statuses
    assert set(statuses[:-1]) <= {200}
    assert refused_after <= 2.0, refused_after


def test_a_slow_registry_holds_only_the_requests_it_must_answer_for(gateway, upstreams, postgres_server):
    up = upstreams()
    url = postgres_server.new_database()
    store = KeyStore(url)
    known, new = store.create("ws")[1], store.create("ws")[1]
    gw = gateway(ROUTE.format(url=up.url), tenant_keys=url)
    assert ask(gw, known).status_code == 200
    with psycopg.connect(url) as lock, concurrent.futures.ThreadPoolExecutor(1) as pool:
        lock.execute("LOCK TABLE tenant_keys IN ACCESS EXCLUSIVE MODE")   # every read of a key waits on it
        waiting = pool.submit(ask, gw, new)   # a key the gateway has not seen: only the registry can tell
        time.sleep(0.3)
        assert not waiting.done()
        started = time.monotonic()
        assert http("GET", gw.url + "/health").status_code == 200   # the event loop is free
        assert ask(gw, known).status_code == 200   # a key the gateway knows is answered meanwhile
        assert time.monotonic() - started < 0.9 and not waiting.done()
        lock.commit()   # the registry answers
        assert waiting.result(timeout=10).status_code == 200
    store.close()


def test_a_registry_that_cannot_answer_is_a_503_for_the_keys_it_must_tell_about(gateway, upstreams, tmp_path):
    import sqlite3

    up = upstreams()
    registry = tmp_path / "keys.db"
    store = KeyStore(registry)
    known, unseen = store.create("ws")[1], store.create("ws")[1]
    store.close()
    gw = gateway(ROUTE.format(url=up.url), tenant_keys=registry)
    assert ask(gw, known).status_code == 200
    with sqlite3.connect(registry) as broken:
        broken.execute("ALTER TABLE tenant_keys RENAME TO gone")   # every read of a key now fails
    reply = ask(gw, unseen)
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "registry_unavailable"
    assert "tenant keys cannot be read" in reply.json()["error"]["message"]
    assert ask(gw, known).status_code == 200   # answered from what the gateway read a moment ago
