"""Operating the gateway: hot reload, client keys, errors, logs, metrics, /routing, load."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import openai
import pytest
from gateway_fakes import FAST, chat_answer, config, http, rule, slow_client, target, wait_for

from routelang.gateway import auth
from routelang.gateway.logs import JsonLog

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "a secret prompt"}]}


def post(url, body=None, headers=None, path="/v1/chat/completions"):
    return http("POST", url + path, CHAT if body is None else body, headers)


def test_hot_reload_under_load_keeps_every_request_answered(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 5, "cooldown_ms": 60000}}}
    first = config(rule("all", [target(a, "ma", **breaker), target(b, "mb")], strategy="fallback"))
    gw = gateway(first)
    gw.lt.run(_fail_once(gw))  # one failure on ma's breaker, to see it carried over
    statuses: list[int] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            statuses.append(post(gw.url).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        gw.path.write_text("{ not json")
        assert wait_for(lambda: http("GET", gw.url + "/routing").json()["last_reload_error"] is not None)
        routing = http("GET", gw.url + "/routing").json()
        assert routing["version"] == 1 and "not valid JSON" in routing["last_reload_error"]["message"]
        assert 'routelang_reloads_total{result="error"}' in http("GET", gw.url + "/metrics").text
        second = config(rule("all", [target(b, "mb"), target(a, "ma", **breaker)], strategy="fallback"))
        gw.path.write_text(json.dumps(second))
        assert wait_for(lambda: http("GET", gw.url + "/routing").json()["version"] == 2)
        assert wait_for(lambda: post(gw.url).headers["x-routelang-target"] == "mb")
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert statuses and set(statuses) == {200}
    routing = http("GET", gw.url + "/routing").json()
    assert routing["last_reload_error"] is None
    ma = next(t for t in routing["targets"] if t["name"] == "ma")
    assert ma["failures"] == 1  # statistics of a target that stayed carried over
    results = [r["result"] for r in gw.log_lines("reload")]
    assert "error" in results and results[-1] == "ok"


async def _fail_once(gw):
    loaded = gw.gateway.routers.get(None)
    target = next(t for t in loaded.targets.values() if t.model_name == "ma")
    gw.gateway.state.record(target, ok=False, latency_ms=None, tokens=None)


def test_a_route_file_reloads_on_sighup_path_too(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    source = 'router r\nimport std.providers\ntarget x = openai("m1") {{ endpoint "{url}/v1" }}\nrule all {{ route x }}\n'
    gw = gateway(source.format(url=a.url), reload_interval_s=0)
    assert post(gw.url).json()["choices"][0]["message"]["content"] == "from a"
    gw.path.write_text(source.format(url=b.url).replace("rule all", "rule all priority oops"))
    assert gw.lt.run(gw.gateway.routers.reload("SIGHUP")) is False
    error = http("GET", gw.url + "/routing").json()["last_reload_error"]
    assert error["trigger"] == "SIGHUP" and "error" in error["message"]
    gw.path.write_text(source.format(url=b.url))
    assert gw.lt.run(gw.gateway.routers.reload("SIGHUP")) is True
    assert post(gw.url).json()["choices"][0]["message"]["content"] == "from b"


def test_a_change_to_an_imported_file_reloads_too(upstreams, gateway, tmp_path):
    a, b = upstreams("a"), upstreams("b")
    targets = tmp_path / "targets.route"
    targets.write_text(f'import std.providers\ntarget x = openai("m1") {{ endpoint "{a.url}/v1" }}\n')
    gw = gateway('router r\nimport "targets.route"\nrule all { route x }\n', reload_interval_s=0.05)
    assert post(gw.url).json()["choices"][0]["message"]["content"] == "from a"
    assert str(targets) in gw.gateway.routers.get(None).files
    targets.write_text(f'import std.providers\ntarget x = openai("m1") {{ endpoint "{b.url}/v1" }}\n')
    assert wait_for(lambda: post(gw.url).json()["choices"][0]["message"]["content"] == "from b", timeout=5)
    assert http("GET", gw.url + "/routing").json()["version"] == 2
    targets.write_text("target x = broken(\n")   # an import that breaks: the old version keeps serving
    assert wait_for(lambda: http("GET", gw.url + "/routing").json()["last_reload_error"] is not None, timeout=5)
    assert post(gw.url).json()["choices"][0]["message"]["content"] == "from b"


def test_env_variables_in_targets_are_resolved_at_load(upstreams, gateway, monkeypatch):
    up = upstreams()
    monkeypatch.setenv("GW_TEST_BASE", up.url + "/v1")
    monkeypatch.setenv("GW_TEST_KEY", "sk-upstream")
    gw = gateway(config(rule("all", [{"provider": "openai", "model_name": "m", "endpoint": "${GW_TEST_BASE}",
                                      "headers": {"Authorization": "Bearer ${GW_TEST_KEY}"}}])))
    assert post(gw.url, headers={"Authorization": "Bearer client-key"}).status_code == 200
    assert up.received[0]["headers"]["Authorization"] == "Bearer sk-upstream"
    assert "sk-upstream" not in http("GET", gw.url + "/routing").text
    assert "sk-upstream" not in json.dumps(gw.log_lines())


def test_client_keys_are_required_when_configured(upstreams, gateway, tmp_path):
    up = upstreams()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# team a\nsha256:{auth.digest('good-key')}\n")
    gw = gateway(config(rule("all", [target(up)])), api_keys=auth.load_keys(str(keys_file)))
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=gw.url + "/v1", api_key="bad-key", max_retries=0).models.list()
    assert info.value.code == "invalid_api_key"
    assert post(gw.url).json()["error"]["code"] == "missing_api_key"
    good = openai.OpenAI(base_url=gw.url + "/v1", api_key="good-key", max_retries=0)
    assert good.chat.completions.create(**CHAT).choices[0].message.content == "from up"
    assert "Authorization" not in up.received[0]["headers"]
    assert http("GET", gw.url + "/health").status_code == 200  # liveness stays open
    keys_file.write_text("good-key\n")
    with pytest.raises(auth.KeyFileError, match="stored hashed"):
        auth.load_keys(str(keys_file))


def test_key_file_entries_have_ids_never_the_key(tmp_path):
    keys_file = tmp_path / "keys"
    one, two = auth.digest("key-one"), auth.digest("key-two")
    keys_file.write_text(f"sha256:{one} team-a  # the A team\nsha256:{two.upper()}\n")
    keys = auth.load_keys(str(keys_file))
    assert keys == {one: "team-a", two: two[:12]}
    assert auth.identify("Bearer key-one", keys) == "team-a"
    assert auth.identify("bearer key-two", keys) == two[:12]
    assert auth.identify("Bearer key-one", frozenset(keys)) == one[:12]    # digests alone: ids are their prefixes
    for header, code in ((None, "missing_api_key"), ("Bearer nope", "invalid_api_key"),
                         ("Basic key-one", "invalid_api_key")):
        with pytest.raises(auth.Refused) as refused:
            auth.identify(header, keys)
        assert refused.value.kind.code == code
        assert auth.check(header, keys)[0].code == code
    assert auth.check("Bearer key-one", keys) is None
    keys_file.write_text(f"sha256:{one} team-a\nsha256:{two} team-a\n")
    with pytest.raises(auth.KeyFileError, match="keys:2: the ID 'team-a' is also the ID of line 1"):
        auth.load_keys(str(keys_file))
    keys_file.write_text(f"sha256:{one} bad/id\n")
    with pytest.raises(auth.KeyFileError, match="keys:1: expected"):
        auth.load_keys(str(keys_file))


def test_gateway_errors_are_openai_shaped_with_distinct_codes(upstreams, gateway):
    up = upstreams()
    gw = gateway(config(rule("all", [target(up)])))
    cases = [(post(gw.url, b"{oops"), 400, "invalid_json"), (post(gw.url, [1, 2]), 400, "invalid_request"),
             (http("GET", gw.url + "/v1/nope"), 404, "unknown_endpoint"),
             (http("GET", gw.url + "/v1/chat/completions"), 405, "method_not_allowed")]
    for reply, status, code in cases:
        assert reply.status_code == status
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        assert reply.json()["error"]["code"] == code


def test_headers_are_forwarded_but_not_credentials_or_hop_by_hop(upstreams, gateway):
    up = upstreams()
    gw = gateway(config(rule("all", [target(up, headers={"X-Upstream": "set-by-target"})])))
    post(gw.url, headers={"Authorization": "Bearer c", "X-Api-Key": "k", "X-Trace": "t1", "Connection": "close",
                          "X-Routelang-Router": gw.gateway.routers.get(None).name})
    sent = {k.lower(): v for k, v in up.received[0]["headers"].items()}
    assert sent["x-trace"] == "t1" and sent["x-upstream"] == "set-by-target"
    assert "authorization" not in sent and "x-api-key" not in sent and "x-routelang-router" not in sent
    assert sent.get("connection") != "close"



def test_an_upstream_cookie_is_never_kept_or_sent_with_later_requests(upstreams, gateway):
    up = upstreams()
    up.script = [{"body": chat_answer("m"), "headers": {"Set-Cookie": "session=of-client-one; Path=/"}}]
    by_name = {**target(up), "endpoint": up.url.replace("127.0.0.1", "localhost") + "/v1"}  # IPs keep no cookies
    gw = gateway(config(rule("all", [by_name])))
    first = post(gw.url)
    assert "set-cookie" not in {k.lower() for k in first.headers}
    post(gw.url)
    assert "cookie" not in {k.lower() for k in up.received[1]["headers"]}


def test_one_log_line_per_request_without_text_or_secrets(upstreams, gateway):
    up = upstreams()
    gw = gateway(config(rule("all", [target(up, "m")])))
    reply = post(gw.url, headers={"Authorization": "Bearer sk-client", "x-request-id": "req-7"})
    assert reply.headers["x-request-id"] == "req-7"
    lines = gw.log_lines()
    assert len(lines) == 1
    line = lines[0]
    assert (line["id"], line["rule"], line["target"], line["status"]) == ("req-7", "all", "m", 200)
    assert line["attempts"][0]["outcome"] == "ok" and line["prompt_tokens"] == 5
    assert line["ms"] >= line["overhead_ms"] >= 0
    everything = gw.logs.getvalue().decode()
    assert "a secret prompt" not in everything and "from up" not in everything and "sk-client" not in everything


def test_metrics_count_requests_retries_and_fallbacks(upstreams, gateway):
    a, b = upstreams("a"), upstreams("b")
    a.default = {"status": 500, "body": {}}
    gw = gateway(config(rule("all", [target(a, "ma", retry_count=1), target(b, "mb")], strategy="fallback")))
    for _ in range(3):
        assert post(gw.url).status_code == 200
    text = http("GET", gw.url + "/metrics").text
    assert 'routelang_requests_total{endpoint="/v1/chat/completions",router="test-router",rule="all",status="200",target="mb"} 3.0' in text
    assert 'routelang_retries_total{router="test-router",target="ma"} 3.0' in text
    assert 'routelang_fallbacks_total{router="test-router",rule="all"} 3.0' in text
    assert 'routelang_upstream_latency_seconds_count{outcome="http_500",router="test-router",target="ma"} 6.0' in text
    assert "routelang_request_duration_seconds_bucket" in text and 'le="600.0"' in text
    assert "routelang_overhead_seconds_count 3.0" in text


def test_bounded_load_with_failing_and_hanging_upstreams_answers_every_request(upstreams, gateway):
    flaky, hang, good = upstreams("flaky"), upstreams("hang"), upstreams("good")
    counter = iter(range(10**6))
    flaky.default = lambda body: {"status": 503, "body": {}} if next(counter) % 2 else {"body": chat_answer("f")}
    hang.default = {"hang": True}
    gw = gateway(config(
        rule("hangs", [target(hang, "h", timeout_ms=200), target(good, "g")], strategy="fallback", priority=5,
             conditions=[{"field": "user", "operator": "equals", "value": "h"}]),
        rule("flaky", [target(flaky, "f"), target(hang, "h2", timeout_ms=200)], strategy="fallback")))
    bodies = [{**CHAT, "user": "h" if i % 3 == 0 else "x", "stream": i % 4 == 0} for i in range(240)]
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda body: post(gw.url, body), bodies))
    assert len(replies) == 240
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {200, 502} and 502 in statuses and 200 in statuses
    assert all(r.headers["x-request-id"] for r in replies)
    assert len(gw.log_lines()) == 240
    assert time.monotonic() - started < 60  # bounded: nothing waited for the hanging upstream's hour



def _raw_request(url: str, pieces: list[bytes], pause_s: float, timeout: float) -> bytes:
    """Send a request in pieces, `pause_s` apart, then wait; all the server answers
    until it closes the connection (or `timeout` passes)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(pause_s)
            sock.sendall(piece)
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break  # the server kept the connection open: the assertions fail on what came
            if not data:
                break
            answer += data
    return answer


def test_a_request_body_that_stalls_gets_a_408_and_frees_the_connection(upstreams, gateway):
    up = upstreams()
    gw = gateway(config(rule("all", [target(up)])), settings=replace(FAST, request_read_timeout_s=0.5))
    body = json.dumps(CHAT).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    started = time.monotonic()
    answer = _raw_request(gw.url, [head + body[:10]], 0, timeout=5)  # headers, a bit of body, then silence
    assert time.monotonic() - started < 3
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408")
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout" and set(error) == {"message", "type", "param", "code"}
    assert b"connection: close" in rest.lower()
    assert not up.received  # nothing went upstream
    line = gw.log_lines()[0]
    assert (line["status"], line["error"]) == (408, "request_timeout")
    # A body that comes in pieces but in time is served as usual.
    closing = head.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    answer = _raw_request(gw.url, [closing + body[:10], body[10:]], 0.1, timeout=5)
    assert answer.startswith(b"HTTP/1.1 200") and len(up.received) == 1


def test_a_client_that_sends_its_headers_too_slowly_is_disconnected(upstreams, gateway):
    """Slowloris: the request's head must be whole within the read timeout of the connection's start
    (or of the previous answer, on a kept-alive connection); a byte now and then does not extend it.
    The connection was held for aiohttp's keep-alive timeout, an hour."""
    up = upstreams()
    gw = gateway(config(rule("all", [target(up)])), settings=replace(FAST, request_read_timeout_s=0.5))
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: "
    closed_after, answer = slow_client(gw.url, head, b"abcdefgh", every_s=0.1, for_s=5)
    assert closed_after is not None and answer == b"", answer
    assert 0.4 < closed_after < 3
    closed_after, _ = slow_client(gw.url, b"", b"", every_s=0.1, for_s=5)   # connected, nothing sent
    assert closed_after is not None and closed_after < 3
    assert not up.received and gw.log_lines() == []
    # A client in time keeps its connection for the next request.
    body = json.dumps(CHAT).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    answer = _raw_request(gw.url, [request, request], 0.2, timeout=5)
    assert answer.count(b"HTTP/1.1 200") == 2 and len(up.received) == 2


def test_an_admin_body_that_stalls_gets_a_408_and_frees_the_connection(upstreams, gateway):
    """The admin API read its bodies without a timeout: a client that stopped mid-body held the
    connection and its handler until it left."""
    up = upstreams()
    gw = gateway(config(rule("all", [target(up)])), settings=replace(FAST, request_read_timeout_s=0.5),
                 admin_keys=frozenset({auth.digest("admin")}))
    body = json.dumps({"healthy": False}).encode()
    head = (f"POST /api/targets/test-router/m/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    started = time.monotonic()
    answer = _raw_request(gw.url, [head + body[:5]], 0, timeout=5)
    assert time.monotonic() - started < 3
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout" and set(error) == {"message", "type", "param", "code"}
    assert b"connection: close" in rest.lower()
    assert http("GET", gw.url + "/routing").json()["targets"][0]["healthy"] is None   # nothing was pushed


def test_log_lines_are_flushed_whole_and_in_order_and_a_broken_stream_counts_them_lost():
    out = io.BytesIO()
    log = JsonLog(out)
    log.write("start", pid=1)  # no event loop: written at once
    assert json.loads(out.getvalue())["event"] == "start"

    class Broken(io.BytesIO):
        def write(self, data):
            raise OSError("disk full")

    async def three_lines(log: JsonLog) -> None:
        for n in range(3):
            log.write("request", n=n)
        log.close()

    asyncio.run(three_lines(log))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line.get("n") for line in lines] == [None, 0, 1, 2]
    broken = JsonLog(Broken())
    asyncio.run(three_lines(broken))
    assert broken.lost == 3


async def _breaker_after(gw, ok: bool):
    loaded = gw.gateway.routers.get(None)
    target = next(t for t in loaded.targets.values() if t.model_name == "ma")
    return gw.gateway.state.record(target, ok=ok, latency_ms=None, tokens=None)


def test_state_record_answers_the_breaker_state_after_the_outcome(upstreams, gateway):
    a = upstreams("a")
    breaker = {"x-routelang": {"circuit_breaker": {"failure_threshold": 2, "cooldown_ms": 60000}}}
    gw = gateway(config(rule("all", [target(a, "ma", **breaker), target(a, "mb")], strategy="fallback")))
    assert gw.lt.run(_breaker_after(gw, ok=False)) == "closed"
    assert gw.lt.run(_breaker_after(gw, ok=False)) == "open"
    assert post(gw.url).headers["x-routelang-target"] == "mb"   # the open breaker is skipped


def test_the_local_metrics_expose_what_prometheus_client_would(monkeypatch):
    from prometheus_client import generate_latest

    from routelang.gateway import metrics

    def fill(m: metrics.Metrics) -> str:
        m.request("r", "/v1/chat/completions", "all", "t1", 200, 0.0123)
        m.request("r", "/v1/chat/completions", "all", "t1", 200, 7.5)
        m.request("-", "/v1/embeddings", "emb", "-", 404, 0.005)   # a bound itself falls in its bucket
        m.attempt("r", "t1", "ok", 0.01)
        m.attempt("r", "t1", "http_503", 1000.0)                   # above every bound: +Inf only
        m.first_token("r", "all", "t1", 0.3)
        m.usage("r", "t1", 12, 7, 0.5)
        m.usage("r2", "t1", 1, 2, None)
        m.overhead.observe(0.0001)
        m.overhead.observe(0.00011)
        text = generate_latest(m.registry).decode()
        return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", text)   # creation times differ

    local = fill(metrics.Metrics())
    monkeypatch.setattr(metrics, "multiprocess_mode", lambda: True)  # prometheus_client's own classes
    assert local == fill(metrics.Metrics())
    assert 'routelang_request_duration_seconds_bucket{endpoint="/v1/embeddings",le="0.005",router="-",rule="emb"} 1.0' in local
    assert 'routelang_upstream_latency_seconds_bucket{le="600.0",outcome="http_503",router="r",target="t1"} 0.0' in local
    assert "routelang_overhead_seconds_count 2.0" in local
