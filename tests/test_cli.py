"""The command line: exit codes, output formats, and never a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from routelang.cli import Exit, main

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "examples" / "_sample_syntax.route"


def run(*args, cwd=None, input=None):
    proc = subprocess.run(
        [sys.executable, "-m", "routelang", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, input=input, check=False,
    )
    return proc


def test_check_clean_file_exits_0():
    proc = run("check", SAMPLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no errors" in proc.stdout


def test_check_reports_errors_and_exits_1():
    proc = run("check", ROOT / "tests" / "check_cases" / "values.route")
    assert proc.returncode == 1
    assert "values.route:12:25: error[RL201]:" in proc.stdout
    assert "help:" in proc.stdout


def test_check_json_format_is_a_list_of_diagnostic_objects():
    proc = run("check", "--format", "json", ROOT / "tests" / "check_cases" / "values.route")
    assert proc.returncode == 1
    items = json.loads(proc.stdout)
    assert {"code", "name", "severity", "message", "file", "line", "column", "end_line", "end_column",
            "rule"} <= set(items[0])
    assert [i["line"] for i in items] == sorted(i["line"] for i in items)
    assert any(i["name"] == "invalid-regex" and i["rule"] == "bad_regex" for i in items)


def test_check_sarif_format():
    proc = run("check", "--format", "sarif", ROOT / "tests" / "check_cases" / "values.route")
    doc = json.loads(proc.stdout)
    assert doc["version"] == "2.1.0"
    assert doc["runs"][0]["results"][0]["ruleId"] == "RL201"


def test_missing_file_is_a_usage_error():
    proc = run("check", "does-not-exist.route")
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compile_json_to_file_loads_in_mixtrain(tmp_path):
    from mixtrain.routing import RoutingConfig

    out = tmp_path / "out.json"
    proc = run("compile", SAMPLE, "--target", "json", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "note[RL901]" in proc.stderr
    config = RoutingConfig.from_json(json.loads(out.read_text()))
    assert config.name == "production"


def test_compile_refuses_a_file_with_errors():
    proc = run("compile", ROOT / "tests" / "check_cases" / "values.route")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "error[RL204]" in proc.stderr


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\x01\x02binary\xff\xfe",
        bytes(range(256)) * 20,
        b"router x\nrule a { when a.b == \"\xff\" route x }",
        b"router x\n" + b"rule a { when " + b"(" * 3000 + b"a.b == 1" + b")" * 3000 + b" route x }",
        b"router x\n" + b"rule a { when " + b" and ".join(b"not a.b%d == 1" % i for i in range(2000))
        + b" route { provider \"p\" model \"m\" endpoint \"https://e\" } }",
        b"router x\nrule a { when a.b == \"" + b"x" * 200_000 + b"\" route x }",
        b"router x\nmetadata " + b"{ a: " * 500 + b"1" + b" }" * 500,
        b"\xef\xbb\xbfrouter bom\r\nrule a { route { provider \"p\" model \"m\" endpoint \"https://e\" } }\r\n",
        b"router x\nrule a { when " + b"not " * 5000 + b"a.b == 1 route x }",
        b"rule",
        b"}}}}{{{{",
        b'router x\nrule a { when a.b =~ "(a+)+$" route { provider "p" model "m" endpoint "https://e" } }',
    ],
    ids=["empty", "binary", "all-bytes", "bad-utf8", "deep-parens", "wide-and", "huge-string",
         "deep-metadata", "deep-not", "bom-crlf", "truncated", "braces", "redos-regex"],
)
def test_hostile_input_never_crashes(tmp_path, content):
    path = tmp_path / "input.route"
    path.write_bytes(content)
    for command in (["check"], ["compile", "--target", "json"]):
        proc = run(*command, path)
        assert "Traceback" not in proc.stderr + proc.stdout
        assert "internal error" not in proc.stderr
        assert proc.returncode in (0, 1), proc.stderr


# ---- one exit-code table for every command (README "Exit codes") ---------------------

TIERING = ROOT / "examples" / "user_tiering.route"
MIXTRAIN_CONFIG = ROOT / "tests" / "runtime" / "fixtures" / "mixtrain_config.json"


@pytest.fixture
def files(tmp_path):
    """The inputs of the table: a good router, one with errors, one not UTF-8, one missing, ..."""
    f = {"good": TIERING, "missing": tmp_path / "missing.route", "config": MIXTRAIN_CONFIG}
    for name, content in {
        "bad": TIERING.read_text().replace("route gpt4", "route gpt_4"),
        "changed": TIERING.read_text().replace("priority 110", "priority 10"),
        "failing": TIERING.read_text().replace("expect rule standard target gpt35", "expect rule premium"),
        "unformatted": TIERING.read_text().replace("rule premium priority 100", "rule  premium   priority 100"),
        "requests.jsonl": '{"user": {"tier": "free"}}\n',
        "broken.jsonl": '{"user": {"tier": "free"}}\n{"user": \n',
        "broken.json": '{"name": "x",',
    }.items():
        f[name] = tmp_path / (name if "." in name else f"{name}.route")
        f[name].write_text(content)
    f["binary"] = tmp_path / "binary.route"
    f["binary"].write_bytes(b'router r\n# caf\xe9\n')
    f["binary.json"] = tmp_path / "binary.json"
    f["binary.json"].write_bytes(b'{"name": "caf\xe9"}')
    assert f["failing"].read_text() != TIERING.read_text() and f["bad"].read_text() != TIERING.read_text()
    # A registry holding one version of the tiering router, for the registry commands.
    f["registry"] = tmp_path / "registry.db"
    f["copy.db"] = tmp_path / "copy.db"
    pushed = CliRunner().invoke(main, ["push", "--registry", str(f["registry"]), str(TIERING)])
    assert pushed.exit_code == Exit.OK and "version 1" in pushed.output, pushed.output
    return f


REG = ("--registry", "registry")
# Per command, per situation, the arguments (names from `files`). Every command of the click group
# must be here; the table in the README is this one.
EXIT_TABLE = {
    "check": {Exit.OK: ["good"], Exit.FINDINGS: ["bad"], "not utf-8": ["binary"], Exit.USAGE: ["missing"],
              "worst of several": (["good", "missing", "bad"], Exit.USAGE)},
    "lint": {Exit.OK: ["good"], Exit.FINDINGS: ["bad"], "not utf-8": ["binary"], Exit.USAGE: ["missing"],
             "worst of several": (["bad", "missing"], Exit.USAGE)},
    "compile": {Exit.OK: ["good"], Exit.FINDINGS: ["bad"], "not utf-8": ["binary"], Exit.USAGE: ["missing"]},
    "explain": {Exit.OK: ["good"], Exit.FINDINGS: ["bad"], "not utf-8": ["binary"], Exit.USAGE: ["missing"]},
    "test": {Exit.OK: ["good"], Exit.FINDINGS: ["failing"], "errors": (["bad"], Exit.FINDINGS),
             "not utf-8": ["binary"], Exit.USAGE: ["missing"]},
    "coverage": {Exit.OK: ["good", "requests.jsonl"], Exit.FINDINGS: ["bad", "requests.jsonl"],
                 "bad requests": (["good", "broken.jsonl"], Exit.FINDINGS),
                 "not utf-8": ["binary", "requests.jsonl"], Exit.USAGE: ["good", "missing"]},
    "diff": {Exit.OK: ["good", "good"], Exit.FINDINGS: ["good", "changed"],
             "errors": (["good", "bad"], Exit.FINDINGS), "not utf-8": ["good", "binary"],
             Exit.USAGE: ["good", "missing"]},
    "fmt": {Exit.OK: ["--check", "good"], Exit.FINDINGS: ["--check", "unformatted"],
            "not utf-8": ["--check", "binary"], Exit.USAGE: ["--check", "missing"],
            "worst of several": (["--check", "binary", "missing", "good"], Exit.USAGE)},
    "import": {Exit.OK: ["config"], Exit.FINDINGS: ["broken.json"], "not utf-8": ["binary.json"],
               Exit.USAGE: ["missing"]},
    # The servers run until stopped (tests/test_packaging.py, tests/gateway/test_cli_serve.py drive
    # them), so no OK case here.
    "lsp": {},
    "serve": {Exit.FINDINGS: ["bad"], "not utf-8": ["binary"], Exit.USAGE: ["missing"],
              "no such registry": (["--registry", "no-such-registry.db"], Exit.USAGE)},
    # The registry commands: a registry problem (no such router, version or request) is an I/O error.
    "push": {Exit.OK: ["--registry", "registry", "good"], Exit.FINDINGS: ["--registry", "registry", "bad"],
             "not utf-8": ["--registry", "registry", "binary"], Exit.USAGE: ["--registry", "registry", "missing"]},
    "versions": {Exit.OK: [*REG, "user_tiering"], "unknown router": ([*REG, "nope"], Exit.USAGE)},
    "show": {Exit.OK: [*REG, "user_tiering@1"], "unknown version": ([*REG, "user_tiering@9"], Exit.USAGE)},
    "deploy": {Exit.OK: [*REG, "user_tiering", "1", "--yes"],
               "unknown version": ([*REG, "user_tiering", "9", "--yes"], Exit.USAGE)},
    "rollback": {"nothing to roll back to": ([*REG, "user_tiering"], Exit.USAGE)},
    "delete": {Exit.OK: [*REG, "user_tiering", "--yes"], "unknown router": ([*REG, "nope", "--yes"], Exit.USAGE)},
    "requests": {Exit.OK: [*REG, "user_tiering"], "unknown router": ([*REG, "nope"], Exit.USAGE)},
    "request": {"unknown request": ([*REG, "nope"], Exit.USAGE)},
    "history": {Exit.OK: ["prune", *REG], "no such registry": (["prune", "--registry", "no-such-registry.db"],
                                                               Exit.USAGE)},
    "registry": {Exit.OK: ["copy", "registry", "copy.db"],
                 "no such registry": (["copy", "no-such-registry.db", "copy.db"], Exit.USAGE)},
    # `ab` prints a report whatever it concludes (no requests yet: "not enough data"); it never exits 1.
    # (A bad --since or --control also exits 2: tests/registry/test_ab_report.py.)
    "ab": {Exit.OK: [*REG, "user_tiering"], "unknown router": ([*REG, "nope"], Exit.USAGE)},
    "keys": {Exit.OK: ["list", *REG], "unknown key": (["revoke", "key_000000000000", *REG], Exit.USAGE)},
    "usage": {Exit.OK: [*REG], "no such registry": (["--registry", "no-such-registry.db"], Exit.USAGE)},
}
CASES = [(command, situation) for command, row in EXIT_TABLE.items() for situation in row]


def test_every_command_is_in_the_exit_code_table():
    assert set(EXIT_TABLE) == set(main.commands)


@pytest.mark.parametrize(("command", "situation"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_exit_code_table(command, situation, files):
    entry = EXIT_TABLE[command][situation]
    args, expected = entry if isinstance(entry, tuple) else (entry, situation)
    if situation == "not utf-8":
        expected = Exit.FINDINGS  # readable, but not valid input
    result = CliRunner().invoke(main, [command, *(str(files.get(a, a)) for a in args)])
    assert result.exit_code == expected, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if situation == "not utf-8":
        assert ":2:6: error[RL002]: the file is not valid UTF-8 (byte b'\\xe9')" in result.output or \
            ":1:14: error[RL002]: the file is not valid UTF-8 (byte b'\\xe9')" in result.output, result.output
    if "missing" in args:
        assert "missing.route" in result.output and "No such file or directory" in result.output
    elif expected is Exit.USAGE:
        assert "routelang: error: " in result.output and ("no " in result.output or "has no" in result.output)


@pytest.mark.parametrize("command", sorted(EXIT_TABLE))
def test_an_unknown_flag_is_a_usage_error_for_every_command(command):
    result = CliRunner().invoke(main, [command, "--no-such-flag"])
    assert result.exit_code == Exit.USAGE, result.output
    assert "No such option" in result.output


def test_an_internal_error_exits_3_with_one_line(monkeypatch):
    import routelang.cli

    def broken(*args, **kwargs):
        raise LookupError("boom")

    monkeypatch.setattr(routelang.cli, "compile_path", broken)
    result = CliRunner().invoke(main, ["check", str(TIERING)])
    assert result.exit_code == Exit.INTERNAL == 3
    assert result.output.startswith("routelang: internal error: LookupError: boom\n")


# ---- several files, modules ---------------------------------------------------------

def test_check_and_lint_report_an_unreadable_file_and_go_on(files):
    for command in ("check", "lint"):
        proc = run(command, files["good"], files["missing"], files["bad"])
        assert proc.returncode == 2  # the worst: an I/O error
        assert proc.stderr == f"{files['missing']}: error: cannot read the file: No such file or directory\n"
        # the file after the missing one is checked too
        assert f"{files['bad']}:30:11: error[RL101]: unknown target `gpt_4`" in proc.stdout


def test_check_and_lint_take_a_module_as_a_module(tmp_path):
    module = tmp_path / "shared.route"
    module.write_text('import std.providers\n'
                      'target fast = openai("gpt-4o-mini") { timeout 5s }\n'
                      'condition premium = user.tier == "premium"\n')
    for command in ("check", "lint"):
        proc = run(command, module)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "RL106" not in proc.stdout
    module.write_text('target fast = nowhere("gpt-4o-mini")\n')  # a module's own errors are still found
    proc = run("check", module)
    assert proc.returncode == 1 and "unknown provider `nowhere`" in proc.stdout
    rules_without_router = tmp_path / "headless.route"
    rules_without_router.write_text(TIERING.read_text().replace('router user_tiering "Route by user tier"', ""))
    proc = run("check", rules_without_router)
    assert proc.returncode == 1 and "error[RL106]" in proc.stdout  # rules need a router header
    assert run("compile", module).returncode == 1  # nothing to compile in a module


def test_an_ambiguous_regex_is_reported_by_lint_not_by_python_warnings(tmp_path):
    """`[[a]` makes Python warn (FutureWarning) wherever it is parsed; lint reports it once, at its place."""
    source = tmp_path / "r.route"
    source.write_text((Path(__file__).parent / "lint" / "golden" / "values.route").read_text())
    proc = subprocess.run([sys.executable, "-W", "always", "-m", "routelang", "lint", str(source)],
                          capture_output=True, text=True, check=False)
    assert "FutureWarning" not in proc.stdout + proc.stderr
    assert proc.stdout.count("warning[RL326]") == 1, proc.stdout
    assert 'regex "[[a]": possible nested set at position 1' in proc.stdout
