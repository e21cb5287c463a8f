"""The wheel, as a user gets it: it carries the grammar and the standard
library, and installed with no extras into a fresh venv, every subcommand of
`routelang` works (a plain `pip install routelang` is all a user or an editor
extension has).

The wheel is built once per session (about 15 s) and installed once (pip
resolves the dependencies from its cache or index: 20-30 s). It runs in the
normal suite: a runtime import of a test-only package shows up nowhere else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from routelang.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
TIERING = EXAMPLES / "user_tiering.route"
MIXTRAIN_CONFIG = ROOT / "tests" / "runtime" / "fixtures" / "mixtrain_config.json"
LITELLM_CONFIG = ROOT / "tests" / "fixtures" / "import" / "litellm" / "load_balancing.yaml"
TIMEOUT = 120  # seconds, for any one command


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    [built] = out.glob("routelang-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The bin/ directory of a fresh venv holding the wheel and its dependencies, no extras."""
    venv = tmp_path_factory.mktemp("venv")
    # No pip inside the venv (ensurepip is the slow part): this interpreter's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
         str(wheel)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv / "bin"


def test_wheel_contains_grammar_and_stdlib(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "routelang/grammar/routelang.lark" in names
    assert "routelang/stdlib/providers.route" in names
    assert "routelang/stdlib/profiles.route" in names
    assert "routelang/templates/python_module.py.j2" in names
    packaged = zipfile.ZipFile(wheel).read("routelang/grammar/routelang.lark").decode()
    assert packaged == (ROOT / "grammar" / "routelang.lark").read_text()


def test_plain_install_has_no_test_packages(installed):
    """The venv is really bare: what passes below passes without the test extra."""
    code = ("import importlib.util as u; print([m for m in ('mixtrain', 'pytest', 'pytest_lsp', 'hypothesis',"
            " 'syrupy', 'ruff') if u.find_spec(m)])")
    out = subprocess.run([installed / "python", "-c", code], capture_output=True, text=True, check=True,
                         timeout=TIMEOUT, cwd="/").stdout
    assert out.strip() == "[]"


def test_plain_install_has_the_redis_client(installed):
    """`serve --state redis://...` needs no extra: redis-py and its hiredis parser are dependencies
    (imported only when a Redis URL asks for them)."""
    code = "import importlib.util as u; print([m for m in ('redis', 'hiredis') if u.find_spec(m)])"
    out = subprocess.run([installed / "python", "-c", code], capture_output=True, text=True, check=True,
                         timeout=TIMEOUT, cwd="/").stdout
    assert out.strip() == "['redis', 'hiredis']"


def test_plain_install_registers_the_pygments_lexer(installed):
    code = "from pygments.lexers import get_lexer_for_filename as g; print(type(g('x.route')).__name__)"
    out = subprocess.run([installed / "python", "-c", code], capture_output=True, text=True, check=True,
                         timeout=TIMEOUT, cwd="/").stdout
    assert out.strip() == "RoutelangLexer"


# ---- every subcommand, once ----------------------------------------------------------
#
# One entry per subcommand of `routelang`: a function that runs it through the installed
# console script (`cli(*args)`, from a directory outside the checkout, so only the wheel is
# imported) and asserts on its real output. The list of subcommands comes from the click
# group: a command added to cli.py fails `test_subcommand_works_from_a_plain_install[NAME]`
# until it gets an entry here. A server command (`serve`) starts it with `cli.start(...)`,
# polls its /health, and stops it (see `check_lsp` for a process that is driven and stopped).

Cli = Callable[..., subprocess.CompletedProcess]


def check_check(cli: Cli, tmp: Path) -> None:
    proc = cli("check", TIERING)
    assert proc.returncode == 0, proc.stderr
    assert "ok: 1 file(s) checked, no errors" in proc.stdout


def check_compile(cli: Cli, tmp: Path) -> None:
    proc = cli("compile", TIERING)
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)["rules"]] == ["enterprise", "premium", "standard"]


def check_lint(cli: Cli, tmp: Path) -> None:
    proc = cli("lint", TIERING)
    assert proc.returncode == 0, proc.stderr
    assert "ok: 1 file(s) linted" in proc.stdout


def check_explain(cli: Cli, tmp: Path) -> None:
    proc = cli("explain", TIERING, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "enterprise" in proc.stdout and json.loads(proc.stdout)


def check_test(cli: Cli, tmp: Path) -> None:
    proc = cli("test", TIERING)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed, 0 failed" in proc.stdout


def check_coverage(cli: Cli, tmp: Path) -> None:
    requests = tmp / "requests.jsonl"
    requests.write_text('{"user": {"tier": "free"}}\n')
    proc = cli("coverage", TIERING, requests, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rule_hits"] == {"enterprise": 0, "premium": 0, "standard": 1}


def check_diff(cli: Cli, tmp: Path) -> None:
    changed = tmp / "changed.route"
    changed.write_text(TIERING.read_text().replace("priority 110", "priority 10"))
    proc = cli("diff", TIERING, changed)
    assert proc.returncode == 1, proc.stderr  # changes found
    assert "enterprise" in proc.stdout


def check_fmt(cli: Cli, tmp: Path) -> None:
    proc = cli("fmt", "--check", *sorted(EXAMPLES.glob("[!_]*.route")))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def check_import(cli: Cli, tmp: Path) -> None:
    proc = cli("import", MIXTRAIN_CONFIG)
    assert proc.returncode == 0, proc.stderr
    assert "rule premium_images priority 100" in proc.stdout
    proc = cli("import", LITELLM_CONFIG)  # YAML: PyYAML is a runtime dependency
    assert proc.returncode == 0, proc.stderr
    assert 'when model == "zephyr-beta"' in proc.stdout


def check_lsp(cli: Cli, tmp: Path) -> None:
    """Starts the server, initializes it, and shuts it down, over stdin/stdout."""

    def message(id_: int | None, method: str, params: dict | None = None) -> bytes:
        body = {"jsonrpc": "2.0", "method": method, "params": params}
        if id_ is not None:
            body["id"] = id_
        data = json.dumps(body).encode()
        return b"Content-Length: %d\r\n\r\n" % len(data) + data

    requests = (message(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
                + message(None, "initialized", {}) + message(2, "shutdown") + message(None, "exit"))
    proc = cli("lsp", input=requests)
    replies = [json.loads(part[part.index(b"{"):]) for part in proc.stdout.split(b"Content-Length")[1:]]
    assert proc.returncode == 0, proc.stderr
    initialize = next(r for r in replies if r.get("id") == 1)
    assert initialize["result"]["capabilities"]["hoverProvider"], initialize
    assert any(r.get("id") == 2 and "error" not in r for r in replies), replies


def check_serve(cli: Cli, tmp: Path) -> None:
    """Starts the gateway on a free port, asks its /health and /v1/models, and stops it with SIGTERM."""
    import re
    import signal
    import urllib.request

    proc = cli.start("serve", TIERING, "--port", "0")
    try:
        said = ""   # the tiering example's `lint --serve` warnings come first (`user.tier`: OpenAI's `user` is a string)
        while not (line := proc.stderr.readline()).startswith("routelang serve:") and line:
            said += line
        match = re.search(r"on (http://[\d.]+:\d+)", line)
        assert match, said + line
        assert "warning[RL350]" in said
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(match.group(1) + "/health", timeout=5) as resp:
                    assert json.loads(resp.read()) == {"status": "ok"}
                    break
            except OSError:
                assert time.monotonic() < deadline, "the gateway never answered /health"
                time.sleep(0.2)
        with urllib.request.urlopen(match.group(1) + "/v1/models", timeout=5) as resp:
            assert json.loads(resp.read())["object"] == "list"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(TIMEOUT)
        stderr = proc.stderr.read()
    assert code == 0 and "Traceback" not in stderr, stderr


def _registry(cli: Cli, tmp: Path, deploy: bool = True) -> Path:
    """A registry in `tmp` holding TIERING as router `tiering`, version 1 (deployed)."""
    registry = tmp / "registry.db"
    proc = cli("push", TIERING, "--router", "tiering", "-m", "first", "--registry", registry)
    assert proc.returncode == 0 and "pushed tiering version 1" in proc.stdout, proc.stderr
    if deploy:
        proc = cli("deploy", "tiering", "1", "--yes", "--registry", registry)
        assert proc.returncode == 0 and "deployed tiering version 1" in proc.stdout, proc.stderr
    return registry


def check_push(cli: Cli, tmp: Path) -> None:
    registry = _registry(cli, tmp, deploy=False)
    proc = cli("push", TIERING, "--router", "tiering", "--registry", registry)
    assert proc.returncode == 0 and "identical to tiering version 1" in proc.stdout, proc.stderr


def check_versions(cli: Cli, tmp: Path) -> None:
    registry = _registry(cli, tmp)
    proc = cli("versions", "tiering", "--format", "json", "--registry", registry)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["active_version"] == 1


def check_show(cli: Cli, tmp: Path) -> None:
    proc = cli("show", "tiering@1", "--registry", _registry(cli, tmp))
    assert proc.returncode == 0 and "router tiering version 1 (active)" in proc.stdout, proc.stderr


def check_deploy(cli: Cli, tmp: Path) -> None:
    registry = _registry(cli, tmp)
    changed = tmp / "changed.route"
    changed.write_text(TIERING.read_text().replace("priority 110", "priority 10"))
    cli("push", changed, "--router", "tiering", "--registry", registry)
    proc = cli("deploy", "tiering", "2", "--yes", "--registry", registry)
    assert proc.returncode == 0 and "kind(s) of request change route" in proc.stdout, proc.stderr


def check_rollback(cli: Cli, tmp: Path) -> None:
    proc = cli("rollback", "tiering", "--registry", _registry(cli, tmp))
    assert proc.returncode == 2 and "no earlier deployment" in proc.stderr, proc.stderr


def check_delete(cli: Cli, tmp: Path) -> None:
    proc = cli("delete", "tiering", "--yes", "--registry", _registry(cli, tmp))
    assert proc.returncode == 0 and "deleted tiering" in proc.stdout, proc.stderr


def _routed(cli: Cli, tmp: Path) -> Path:
    registry = _registry(cli, tmp)
    code = ("import sys, routelang; r = routelang.Router('tiering', registry=sys.argv[1]); "
            "r.route({'user': {'tier': 'free'}}); r.close()")
    subprocess.run([cli.bin_dir / "python", "-c", code, str(registry)], check=True, timeout=TIMEOUT, cwd="/")
    return registry


def check_requests(cli: Cli, tmp: Path) -> None:
    proc = cli("requests", "tiering", "--format", "json", "--registry", _routed(cli, tmp))
    assert proc.returncode == 0, proc.stderr
    assert [r["rule"] for r in json.loads(proc.stdout)] == ["standard"]


def check_request(cli: Cli, tmp: Path) -> None:
    registry = _routed(cli, tmp)
    [row] = json.loads(cli("requests", "tiering", "--format", "json", "--registry", registry).stdout)
    proc = cli("request", row["id"], "--registry", registry)
    assert proc.returncode == 0 and json.loads(proc.stdout)["rule"] == "standard", proc.stderr


def check_history(cli: Cli, tmp: Path) -> None:
    registry = _routed(cli, tmp)
    proc = cli("history", "prune", "--max-rows", "1", "--registry", registry)
    assert proc.returncode == 0 and proc.stdout.startswith("deleted 0 request(s)"), proc.stdout + proc.stderr
    proc = cli("history", "prune", "--max-days", "0.000001", "--registry", registry)
    assert proc.returncode == 0 and proc.stdout.startswith("deleted 1 request(s)"), proc.stdout + proc.stderr


def check_ab(cli: Cli, tmp: Path) -> None:
    """The A/B report of SDK-recorded split decisions, in json and html (its charts drawn by vl-convert)."""
    registry = tmp / "registry.db"
    assert cli("push", EXAMPLES / "ab_split.route", "--registry", registry).returncode == 0
    assert cli("deploy", "ab_test", "1", "--yes", "--registry", registry).returncode == 0
    code = ("import sys, routelang; r = routelang.Router('ab_test', registry=sys.argv[1]); "
            "[r.route({'user': {'id': f'u-{i}', 'email': 'a@example.com'}, 'request': {'type': 'image'}}) "
            "for i in range(200)]; r.close()")
    subprocess.run([cli.bin_dir / "python", "-c", code, str(registry)], check=True, timeout=TIMEOUT, cwd="/")
    proc = cli("ab", "ab_test", "--source", "sdk", "--format", "json", "--registry", registry)
    assert proc.returncode == 0, proc.stderr
    [experiment] = json.loads(proc.stdout)["experiments"]
    assert [arm["label"] for arm in experiment["arms"]] == ["control", "variant"]
    proc = cli("ab", "ab_test", "--source", "sdk", "--format", "html", "--registry", registry)
    assert proc.returncode == 0 and proc.stdout.count("<svg") == 2, proc.stderr   # latency, success rate


def check_registry(cli: Cli, tmp: Path) -> None:
    """`registry copy` of a registry with a routed request into a new SQLite file."""
    copy = tmp / "copy.db"
    proc = cli("registry", "copy", _routed(cli, tmp), copy)
    assert proc.returncode == 0, proc.stderr
    proc = cli("requests", "tiering", "--format", "json", "--registry", copy)
    assert proc.returncode == 0 and [r["rule"] for r in json.loads(proc.stdout)] == ["standard"], proc.stderr
    assert cli("versions", "tiering", "--registry", copy).returncode == 0


def check_keys(cli: Cli, tmp: Path) -> None:
    registry = tmp / "registry.db"
    proc = cli("keys", "create", "ws-a", "--json", "--registry", registry)
    assert proc.returncode == 0, proc.stderr
    key = json.loads(proc.stdout)
    assert key["key"].startswith("rlk_")
    proc = cli("keys", "revoke", key["id"], "--registry", registry)
    assert proc.returncode == 0 and "revoked" in proc.stdout, proc.stderr


def check_usage(cli: Cli, tmp: Path) -> None:
    registry = tmp / "registry.db"
    assert cli("push", EXAMPLES / "tenants.route", "--registry", registry).returncode == 0
    assert cli("deploy", "model_router_tenants", "1", "--yes", "--registry", registry).returncode == 0
    proc = cli("usage", "--json", "--registry", registry)
    assert proc.returncode == 0, proc.stderr
    assert {b["workspace"] for b in json.loads(proc.stdout)["budgets"]} == {"ws-marketing-001", "ws-support-007"}


INVOCATIONS: dict[str, Callable[[Cli, Path], None]] = {
    "ab": check_ab,
    "keys": check_keys,
    "usage": check_usage,
    "check": check_check,
    "compile": check_compile,
    "coverage": check_coverage,
    "delete": check_delete,
    "deploy": check_deploy,
    "diff": check_diff,
    "explain": check_explain,
    "fmt": check_fmt,
    "history": check_history,
    "import": check_import,
    "lint": check_lint,
    "lsp": check_lsp,
    "push": check_push,
    "registry": check_registry,
    "request": check_request,
    "requests": check_requests,
    "rollback": check_rollback,
    "serve": check_serve,
    "show": check_show,
    "test": check_test,
    "versions": check_versions,
}


def make_cli(bin_dir: Path) -> Cli:
    def cli(*args, input: bytes | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([bin_dir / "routelang", *map(str, args)], capture_output=True, input=input,
                              text=input is None, check=False, timeout=TIMEOUT, cwd="/",
                              env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/tmp"})
        assert "Traceback" not in (proc.stderr if input is None else proc.stderr.decode()), proc.stderr
        return proc

    def start(*args) -> subprocess.Popen:
        """A long-running command (a server), for the caller to stop."""
        return subprocess.Popen([bin_dir / "routelang", *map(str, args)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd="/",
                                env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/tmp"})

    cli.start = start
    cli.bin_dir = bin_dir   # its `python` imports the installed wheel
    return cli


@pytest.mark.parametrize("command", sorted(main.commands))
def test_subcommand_works_from_a_plain_install(command, installed, tmp_path):
    invoke = INVOCATIONS.get(command)
    assert invoke is not None, f"`routelang {command}` has no entry in INVOCATIONS (tests/test_packaging.py)"
    invoke(make_cli(installed), tmp_path)
