"""`routelang serve` as a process (signals, workers, exit codes) and `routelang test --http`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
from gateway_fakes import ROOT, Served, config, http, rule, slow_client, target, wait_for

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def serve():
    made: list[Served] = []

    def start(*args: str) -> Served:
        served = Served(*args)
        made.append(served)
        return served

    yield start
    for served in made:
        served.stop()


def test_serve_answers_and_drains_on_sigterm(upstreams, serve, tmp_path):
    up = upstreams()
    up.script = [{"delay": 1.0, "body": {"choices": [], "usage": None}}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(up, "m")]))))
    log = tmp_path / "log.jsonl"
    served = serve(str(path), "--log-file", str(log))
    result = {}
    slow = threading.Thread(target=lambda: result.update(r=http("POST", served.url + "/v1/chat/completions", CHAT)))
    slow.start()
    assert wait_for(lambda: len(up.received) == 1)
    assert served.stop() == 0   # SIGTERM while a request is in flight
    slow.join(10)
    assert result["r"].status_code == 200  # ... and it was answered before the exit
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "request" in events and events[-1] == "stop"


def test_serve_refuses_a_broken_file_with_diagnostics(tmp_path):
    path = tmp_path / "bad.route"
    path.write_text("router r\nrule x { route nowhere }\n")
    proc = subprocess.run([sys.executable, "-m", "routelang", "serve", str(path), "--port", "0"],
                          check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert "error[" in proc.stderr and "Traceback" not in proc.stderr


def test_a_stop_while_the_workers_start_is_a_clean_exit(upstreams, tmp_path):
    """SIGTERM as soon as `serve --workers 2` says where it listens (the workers are still
    starting): each worker stops once its event loop runs, and serve exits 0. A worker used
    to die of the signal before it handled it, and serve exited non-zero."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(upstreams(), "m")]))))
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "routelang", "serve", str(path), "--port", "0",
                                 "--workers", "2"], stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert "on http://" in proc.stderr.readline()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()


def test_serving_a_route_file_warns_of_fields_no_openai_request_holds(upstreams, serve, tmp_path):
    """`lint --serve`'s findings are printed before the gateway listens (a split sticky by
    `user.id` is never sticky behind serve: `user` is a string in an OpenAI body); it serves anyway."""
    a, b = upstreams("a"), upstreams("b")
    path = tmp_path / "r.route"
    path.write_text(f'router r\nimport std.providers\ntarget a = openai("m", "{a.url}/v1")\ntarget b = openai("m", "{b.url}/v1")\n'
                    "rule ab priority 0 {\n    split sticky by user.id { 50% a  50% b }\n}\n")
    served = serve(str(path))
    assert "warning[RL351]" in served.warnings and "sticky by `user.id`" in served.warnings
    assert http("POST", served.url + "/v1/chat/completions", CHAT).status_code == 200
    fixed = tmp_path / "fixed.route"
    fixed.write_text(path.read_text().replace("user.id", "user"))
    assert serve(str(fixed)).warnings == ""


def test_workers_share_the_port_and_metrics_add_up(upstreams, serve, tmp_path):
    up = upstreams()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(up, "m")]))))
    served = serve(str(path), "--workers", "2")
    for _ in range(30):
        assert http("POST", served.url + "/v1/chat/completions", CHAT).status_code == 200
    text = http("GET", served.url + "/metrics").text
    counts = re.findall(r'routelang_requests_total\{[^}]*status="200"[^}]*\} ([\d.]+)', text)
    assert sum(float(c) for c in counts) == 30
    assert len(up.received) == 30


def test_routelang_test_http_builds_the_gateway_document(tmp_path):
    route = tmp_path / "r.route"
    route.write_text('router r\nimport std.providers\ntarget a = openai("m")\ntarget b = openai("n")\n'
                     'rule team priority 10 { when headers.x-team == "ml" and request.tokens > 2 route a }\n'
                     'rule rest { route b }\n')
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"model": "x", "messages": [{"role": "user", "content": "twelve chars"}]}))
    run = [sys.executable, "-m", "routelang", "test", str(route), "--http", str(body), "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([*run, "--header", "X-Team: ml", "--header", "Authorization: Bearer k"],
                         check=False, capture_output=True, text=True, env=env, timeout=60)
    result = json.loads(out.stdout)
    assert result["matched_rule"] == "team"
    assert result["document"]["request"]["tokens"] == 3
    assert result["document"]["headers"] == {"x-team": "ml"}
    out = subprocess.run(run, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(out.stdout)["matched_rule"] == "rest"
    bad = subprocess.run([*run, "--header", "nocolon"], check=False, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "NAME:VALUE" in bad.stderr


def test_the_readme_example_serves(upstreams, tmp_path):
    local, remote = upstreams("local"), upstreams("remote")
    served = Served(str(ROOT / "examples" / "hybrid_local_remote.route"),
                    env={"LOCAL_BASE_URL": local.url + "/v1", "LLAMA_BASE_URL": remote.url + "/v1"})
    try:
        reply = http("POST", served.url + "/v1/chat/completions",
                     {"model": "llama-4-scout", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200 and reply.headers["x-routelang-target"] == "local_scout"
        assert local.received[0]["body"]["model"] == "llama-4-scout"
        assert wait_for(lambda: local.health_probes >= 1)  # health_check { path "/health" } on the origin
        decisions = [http("POST", served.url + "/routing/decide",
                          {"model": "llama-3.3-70b-instruct", "user": "u-1"}).json() for _ in range(5)]
        assert decisions[0]["rule"] == "llama_3_3" and len(decisions[0]["attempts"]) == 2
        assert len({json.dumps(d["attempts"]) for d in decisions}) == 1  # sticky by the OpenAI `user` string
    finally:
        assert served.stop() == 0


def test_sighup_reloads_and_a_broken_file_keeps_the_old_version(upstreams, serve, tmp_path):
    a, b = upstreams("a"), upstreams("b")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(a, "ma")]))))
    served = serve(str(path), "--reload-interval", "0")
    path.write_text("{broken")
    served.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: http("GET", served.url + "/routing").json()["last_reload_error"] is not None)
    assert http("POST", served.url + "/v1/chat/completions", CHAT).headers["x-routelang-target"] == "ma"
    path.write_text(json.dumps(config(rule("all", [target(b, "mb")]))))
    served.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: http("GET", served.url + "/routing").json()["version"] == 2)
    assert http("POST", served.url + "/v1/chat/completions", CHAT).headers["x-routelang-target"] == "mb"


def test_serve_refuses_a_key_file_with_plain_keys(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [{"provider": "openai", "model_name": "m",
                                                    "endpoint": "http://127.0.0.1:9/v1"}]))))
    keys = tmp_path / "keys"
    keys.write_text("sk-plaintext\n")
    proc = subprocess.run([sys.executable, "-m", "routelang", "serve", str(path), "--port", "0", "--api-keys",
                           str(keys)], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert "keys are stored hashed" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_on_a_port_in_use_says_which_and_exits_2(tmp_path):
    import socket

    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [{"provider": "openai", "model_name": "m",
                                                    "endpoint": "http://127.0.0.1:9/v1"}]))))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "routelang", "serve", str(path), "--port", str(port)],
                              check=False, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "Errno" not in proc.stderr and "Traceback" not in proc.stderr


def test_serve_admin_keys_mounts_the_admin_api(upstreams, serve, tmp_path):
    from routelang.gateway import auth

    up = upstreams()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(up, "m")]), name="front")))
    admins, clients = tmp_path / "admins", tmp_path / "clients"
    admins.write_text(f"# admins\nsha256:{auth.digest('adm')}\n")
    clients.write_text(f"sha256:{auth.digest('cli')}\n")
    plain = serve(str(path))
    assert http("GET", plain.url + "/api/openapi.json").status_code == 404   # no --admin-keys: no /api
    served = serve(str(path), "--admin-keys", str(admins), "--api-keys", str(clients))
    assert http("GET", served.url + "/api/openapi.json").json()["openapi"] == "3.1.0"
    routed = http("POST", served.url + "/api/route", {"data": {}}, {"Authorization": "Bearer adm"})
    assert routed.status_code == 200 and routed.json()["matched_rule"]["name"] == "all"
    assert http("POST", served.url + "/api/route", {"data": {}}, {"Authorization": "Bearer cli"}).status_code == 403
    assert http("POST", served.url + "/v1/chat/completions", CHAT, {"Authorization": "Bearer cli"}).status_code == 200
    bad = tmp_path / "bad"
    bad.write_text("adm\n")
    proc = subprocess.run([sys.executable, "-m", "routelang", "serve", str(path), "--port", "0", "--admin-keys",
                           str(bad)], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "keys are stored hashed" in proc.stderr and "Traceback" not in proc.stderr


def _routable_file(tmp_path) -> str:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [{"provider": "openai", "model_name": "m",
                                                    "endpoint": "http://127.0.0.1:9/v1"}]))))
    return str(path)


@pytest.mark.parametrize(("option", "value"), [
    ("--timeout", "0"), ("--timeout", "-5"), ("--timeout", "nan"), ("--first-token-timeout", "0"),
    ("--first-token-timeout", "-1"), ("--request-read-timeout", "0"), ("--request-read-timeout", "inf"),
    ("--drain", "-1"), ("--drain", "nan"), ("--reload-interval", "-1"),
    ("--workers", "0"), ("--port", "-1"), ("--history-max-rows", "0"), ("--history-max-days", "0"),
])
def test_serve_refuses_a_duration_or_count_out_of_range(tmp_path, option, value):
    """Usage errors, before anything listens: a zero or negative timeout would turn every request into a 502.
    (Accepted, the gateway would serve until the timeout below ends the test.)"""
    args = [_routable_file(tmp_path)]
    if option.startswith("--history"):
        args = ["--registry", str(tmp_path / "none.db")]
    proc = subprocess.run([sys.executable, "-m", "routelang", "serve", *args, "--port", "0", option, value],
                          check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert f"Invalid value for '{option}'" in proc.stderr
    assert "on http://" not in proc.stderr and "Traceback" not in proc.stderr


def test_serve_with_a_log_file_it_cannot_write_is_a_usage_error_before_listening(tmp_path):
    path = _routable_file(tmp_path)
    log_file = tmp_path / "no-such-dir" / "x.log"
    proc = subprocess.run([sys.executable, "-m", "routelang", "serve", path, "--port", "0", "--log-file",
                           str(log_file)], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert f"cannot write the log file {log_file}: No such file or directory" in proc.stderr
    assert "on http://" not in proc.stderr and "Errno" not in proc.stderr and "Traceback" not in proc.stderr


def test_tenants_with_several_workers_say_their_ledgers_are_per_worker(upstreams, serve, tmp_path):
    from routelang.tenancy.keys import KeyStore

    up = upstreams()
    route = tmp_path / "t.route"
    route.write_text(f'router t\nimport std.providers\ntarget a = openai("m", "{up.url}/v1")\n'
                     "workspace ws-a { budget 1 USD per day }\nrule all { route a }\n")
    store = KeyStore(tmp_path / "keys.db")
    secret = store.create("ws-a")[1]
    store.close()
    served = serve(str(route), "--workers", "2", "--tenant-keys", str(tmp_path / "keys.db"))
    warning = served.proc.stderr.readline()
    assert "each worker keeps its own tenants' ledger: 2 workers admit up to 2 times" in warning
    for _ in range(6):
        reply = http("POST", served.url + "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {secret}"})
        assert reply.status_code == 200, reply.text
    assert http("POST", served.url + "/v1/chat/completions", CHAT).status_code == 401


# Loaded first by every Python process started with this folder on PYTHONPATH: it appends to
# $ROUTELANG_TEST_OPENS a line for each file opened whose name ends with $ROUTELANG_TEST_WATCHED.
SITECUSTOMIZE = '''
import os, sys

_log, _watched = os.environ["ROUTELANG_TEST_OPENS"], os.environ["ROUTELANG_TEST_WATCHED"]


def _hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].endswith(_watched):
        with open(_log, "a") as out:   # (the log's own open is not watched: another name)
            out.write(f"{os.getpid()} {args[0]}\\n")


sys.addaudithook(_hook)
'''


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_compiles_a_route_file_once(upstreams, tmp_path, workers):
    """Timing-free: the file a router imports is opened once per compile (and by nothing else), in
    every process of `serve` (lint --serve's warnings, the check before listening, the workers).
    It was compiled three times with one worker, four with two."""
    up = upstreams()
    (tmp_path / "targets.route").write_text(f'import std.providers\ntarget a = openai("m", "{up.url}/v1")\n')
    path = tmp_path / "r.route"
    path.write_text('router r\nimport "targets.route"\nrule all priority 0 {\n    route a\n}\n')
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    opens = tmp_path / "opens.txt"
    served = Served(str(path), "--workers", workers,
                    env={"PYTHONPATH": f"{ROOT}{os.pathsep}{hooks}", "ROUTELANG_TEST_OPENS": str(opens),
                         "ROUTELANG_TEST_WATCHED": "targets.route"})
    try:
        for _ in range(4):   # (two workers: both most likely answer one)
            assert http("POST", served.url + "/v1/chat/completions", CHAT).headers["x-routelang-target"] == "a"
    finally:
        assert served.stop() == 0
    assert len(opens.read_text().splitlines()) == 1, opens.read_text()


def test_request_read_timeout_disconnects_a_client_that_sends_its_headers_too_slowly(upstreams, serve, tmp_path):
    """serve's own runner (with `--workers 2` too): the head of a request must arrive within
    --request-read-timeout, one byte a tenth of a second does not keep the connection."""
    up = upstreams()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(config(rule("all", [target(up, "m")]))))
    for workers in ("1", "2"):
        served = serve(str(path), "--request-read-timeout", "0.5", "--workers", workers)
        closed_after, answer = slow_client(served.url, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                                           b"abcdefgh", every_s=0.1, for_s=5)
        assert closed_after is not None and answer == b"", (workers, answer)
        assert http("POST", served.url + "/v1/chat/completions", CHAT).status_code == 200
