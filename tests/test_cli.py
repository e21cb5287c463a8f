"""The command line: exit codes, output formats, and never a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
