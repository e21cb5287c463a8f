"""The `routelang` command. Every command exits with a code of `Exit`."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import warnings
from enum import IntEnum
from pathlib import Path
from typing import NoReturn

import click

from . import __version__
from .compiler import CompileResult, compile_path, no_gc_pauses, not_utf8
from .diagnostics import Severity, has_errors, render_json, render_sarif, render_text, sort_diagnostics
from .source import SourceError


class Exit(IntEnum):
    """The exit codes of every command (the README's table). A run that meets
    several situations exits with the highest code among them."""

    OK = 0        # success: no errors; tests passed; `fmt --check` / `diff`: nothing changes; `ab`: a report
    FINDINGS = 1  # errors in the input, failed tests or expectations; `fmt --check` / `diff`: changes;
    #               `push`: not clean; `deploy` / `delete`: not confirmed
    USAGE = 2     # usage or I/O: bad flags, a file that cannot be read or written; the registry cannot be
    #               opened, or has no such router, version or request
    INTERNAL = 3  # a bug in routelang


def finish(*codes: Exit) -> NoReturn:
    sys.exit(max(codes, default=Exit.OK))


class UsageProblem(click.ClickException):
    """Bad usage or I/O: `routelang: error: ...`, exit 2."""

    exit_code = Exit.USAGE

    def show(self, file=None):
        click.echo(f"routelang: error: {self.format_message()}", err=True)


class Finite(click.FloatRange):
    """A finite number above `minimum` (from it, with `inclusive`): durations and ages, where zero,
    a negative value, nan or infinity would break every request rather than mean something."""

    def __init__(self, minimum: float = 0, inclusive: bool = False):
        super().__init__(minimum, min_open=not inclusive)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class OptionProblem(UsageProblem):
    """A bad option value, its message already located (`--limit:1:17: error[RL001]: ...`), exit 2."""

    def show(self, file=None):
        click.echo(self.format_message(), err=True)


class InputProblem(click.ClickException):
    """An error in an input file, its message already located (`file:line:col: error: ...`), exit 1."""

    exit_code = Exit.FINDINGS

    def show(self, file=None):
        click.echo(self.format_message(), err=True)


def unreadable(name: str, exc: SourceError) -> str:
    """The located message for a file that cannot be read (multi-file commands print it and go on)."""
    return f"{name}: error: cannot read the file: {getattr(exc.__cause__, 'strerror', None) or exc}"


def read_text(path: str) -> str:
    """A UTF-8 input file: exit 2 when it cannot be read, 1 (RL002) when it is not UTF-8."""
    from .source import DecodeProblem, read_source

    try:
        return read_source(path).text
    except DecodeProblem as exc:
        raise InputProblem(render_text(not_utf8(exc), {})) from None
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None


def parse_json(text: str, name: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputProblem(f"{name}:{exc.lineno}:{exc.colno}: error: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputProblem(f"{name}: error: invalid JSON: nested too deeply") from None


def guarded(fn):
    """No traceback reaches a user: unexpected failures become one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except RecursionError:
            raise InputProblem("routelang: error: the input nests too deeply to process") from None
        except Exception as exc:
            if os.environ.get("ROUTELANG_DEBUG"):
                raise
            click.echo(f"routelang: internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo("  (this is a bug in routelang; rerun with ROUTELANG_DEBUG=1 for details)", err=True)
            finish(Exit.INTERNAL)

    return wrapper


def load(path: str, env: dict | None = None) -> CompileResult:
    try:
        return compile_path(path, env=env)
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None


def load_each(files: tuple[str, ...], env: dict | None) -> tuple[list[CompileResult], Exit]:
    """Compile every file (modules as modules); a file that cannot be read is
    reported and skipped, and the run then exits 2."""
    results, code = [], Exit.OK
    for name in files:
        try:
            results.append(compile_path(name, env=env, allow_module=True))
        except SourceError as exc:
            click.echo(unreadable(name, exc), err=True)
            code = Exit.USAGE
    return results, code


def emit_diagnostics(results: list[CompileResult], fmt: str, diagnostics=None, err: bool = False) -> None:
    """Print diagnostics of several files in one of the output formats."""
    sources = {}
    for r in results:
        sources.update(r.sources)
    diags = diagnostics if diagnostics is not None else [d for r in results for d in r.diagnostics]
    diags = sort_diagnostics(diags)
    if fmt == "json":
        click.echo(render_json(diags), err=err)
    elif fmt == "sarif":
        click.echo(render_sarif(diags, __version__), err=err)
    else:
        for d in diags:
            click.echo(render_text(d, sources) + "\n", err=err)
        if diags:
            errors = sum(d.level is Severity.ERROR for d in diags)
            warnings = sum(d.level is Severity.WARNING for d in diags)
            click.echo(f"{errors} error(s), {warnings} warning(s)", err=err)


def write_output(text: str, output: str | None) -> None:
    """Write to the -o file, or to stdout."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageProblem(f"cannot write {output}: {exc.strerror or exc}")


def env_option(fn):
    return click.option(
        "--env", "use_env", is_flag=True,
        help="Fill in ${VAR} references from the environment now (default: keep them for run time).",
    )(fn)


FORMAT = click.Choice(["text", "json", "sarif"])


def registry_option(fn):
    return click.option(
        "--registry", envvar="ROUTELANG_REGISTRY",
        help="The registry: a SQLite file, or postgresql://USER@HOST:PORT/DB (default: $ROUTELANG_REGISTRY, "
             "else $XDG_DATA_HOME/routelang/registry.db).",
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="routelang")
def main() -> None:
    """routelang: declare, check, compile and run inference-routing rules.

    Exit codes, for every command: 0 success; 1 findings (errors in the
    input, failed tests; `diff`, `fmt --check`: changes); 2 usage or I/O
    error; 3 internal error."""
    # Python warns when a regex may change meaning in a future version; `lint` reports the pattern
    # with its place (RL326), so the raw warning, once per place the pattern is parsed, is noise here.
    warnings.filterwarnings("ignore", message="Possible (nested set|set difference|set intersection|"
                                              "set symmetric difference)", category=FutureWarning)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=FORMAT, default="text", show_default=True)
@env_option
@guarded
def check(files, fmt, use_env):
    """Report every error in FILES (exit 1 if any). A file without a `router`
    header, rules or tests is checked as a module."""
    results, read_code = load_each(files, dict(os.environ) if use_env else None)
    # Warnings come only from a JSON config's front end (RL005: what a .route file cannot say).
    shown = [d for r in results for d in r.diagnostics if d.level is not Severity.NOTE]
    errors = [d for d in shown if d.level is Severity.ERROR]
    emit_diagnostics(results, fmt, diagnostics=shown)
    if fmt == "text" and not errors and read_code is Exit.OK:
        click.echo(f"ok: {len(files)} file(s) checked, no errors")
    finish(Exit.FINDINGS if errors else Exit.OK, read_code)


@main.command(name="compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--target", "backend", type=click.Choice(["json", "python", "litellm", "portkey"]), default="json",
              show_default=True, help="Mixtrain JSON, a Python module, a LiteLLM proxy config.yaml or a Portkey "
                                      "config (docs/import.md).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print notes about approximations.")
@click.option("--exact", is_flag=True,
              help="Fail (exit 1) when the target cannot state a rule exactly (RL902 for json, RL911 for litellm "
                   "and portkey).")
@click.option("--mixtrain-exact", is_flag=True, help="The same as --exact, for --target json.")
@env_option
@guarded
def compile_command(file, backend, output, quiet, exact, mixtrain_exact, use_env):
    """Compile FILE to Mixtrain-schema JSON, a Python module, or a LiteLLM or Portkey config."""
    if backend == "python" and (exact or mixtrain_exact):
        raise UsageProblem("--exact is for the config targets (json, litellm, portkey): the Python module is exact")
    env = dict(os.environ) if use_env else None
    result = load(file, env)
    if not result.ok:
        emit_diagnostics([result], "text", err=True)
        finish(Exit.FINDINGS)
    with no_gc_pauses():
        if backend == "python":
            from .backends.python import generate

            text, notes = generate(result.router, source_name=file)
        else:
            text, notes = _lower(backend, result.router, exact or mixtrain_exact)
            if has_errors(notes):
                emit_diagnostics([result], "text", diagnostics=notes, err=True)
                finish(Exit.FINDINGS)
    shown = [n for n in notes if not quiet or n.level is not Severity.NOTE]  # warnings show even with -q
    if shown:
        emit_diagnostics([result], "text", diagnostics=shown, err=True)
    write_output(text, output)
    finish(Exit.OK)


def _lower(backend: str, router, exact: bool):
    """The compiled text for a config backend (json, litellm, portkey), and its notes."""
    if backend == "litellm":
        import yaml

        from .backends.litellm import lower

        config, notes = lower(router, exact=exact)
        return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120), notes
    from .backends.json import dumps

    if backend == "portkey":
        from .backends.portkey import lower

        config, notes = lower(router, exact=exact)
    else:
        from .backends.json import lower

        config, notes = lower(router, exact=exact)
    return dumps(config) + "\n", notes


@main.command(name="import")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--from", "fmt", type=click.Choice(["mixtrain", "litellm", "portkey", "hybrid"]),
              help="The config's format (default: detected from its content).")
@click.option("--models", type=click.Path(dir_okay=False),
              help="hybrid: the router's models.yaml (default: models.yaml next to CONFIG, if there).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--strict", is_flag=True, help="Exit 1 when the .route file cannot say everything the config says.")
@guarded
def import_command(config_file, fmt, models, output, strict):
    """Translate a router config into a .route file: Mixtrain routing JSON,
    a LiteLLM proxy config.yaml, a Portkey config JSON, or the hybrid
    router's routing.yaml (docs/import.md).

    Exit 1 when the file is not JSON/YAML or the config is not one its
    router loads (and, with --strict, when something could not be carried
    over)."""
    from .importers import ImportProblem, UnreadableConfig, detect, importer, parse

    def read(path: str):
        try:
            return parse(read_text(path))
        except UnreadableConfig as exc:
            raise InputProblem(f"{path}{':' + exc.where if exc.where else ''}: error: {exc}") from None

    config = read(config_file)
    fmt = fmt or detect(config)
    if fmt is None:
        raise InputProblem(f"{config_file}: error: not a config routelang can import (no Mixtrain `rules`, LiteLLM "
                           f"`model_list`, Portkey `strategy` or hybrid `local_deployment`); name the format "
                           f"with --from")
    if models and fmt != "hybrid":
        raise UsageProblem(f"--models is for the hybrid router's routing.yaml; {config_file} is a {fmt} config")
    extra = {}
    if fmt == "hybrid":
        models_path = Path(models) if models else Path(config_file).with_name("models.yaml")
        if models or models_path.is_file():
            extra["models"] = read(str(models_path))
    problems: list[str] = []
    try:
        text, notes = importer(fmt)(config, Path(config_file).name, **extra)
    except ImportProblem as exc:
        raise InputProblem(f"{config_file}: error: {exc}") from None
    if fmt == "mixtrain":
        from .importers.mixtrain import validation_errors

        problems += [f"Mixtrain's validator: {e}" for e in validation_errors(config)]
    problems += [str(n) for n in notes]
    for problem in problems:
        click.echo(f"{config_file}: warning: {problem}", err=True)
    write_output(text, output)
    finish(Exit.FINDINGS if strict and problems else Exit.OK)


@main.command(name="lsp")
def lsp_command() -> None:
    """Run the language server on stdin/stdout (for editors)."""
    from .lsp import main as lsp_main  # lazy: pygls is only needed here

    lsp_main()


@main.command(name="lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=FORMAT, default="text", show_default=True)
@click.option("--serve", "serving", is_flag=True,
              help="The routers are meant for `routelang serve`: requests are OpenAI bodies made into the "
                   "gateway's request document (docs/gateway.md).")
@env_option
@guarded
def lint_command(files, fmt, serving, use_env):
    """Report likely mistakes in FILES: unreachable rules, overlaps, gaps, ...

    Runs the checker first; its errors are reported too. Exit 1 if any
    error-severity finding (a checker error), else 0: lint warnings and
    notes alone exit 0. Silence a rule on one line with
    `# routelang: disable=NAME` on that line or the line before.
    docs/lint.md lists every rule.
    """
    from .lint import lint

    results, read_code = load_each(files, dict(os.environ) if use_env else None)
    diags = [d for r in results for d in r.diagnostics if d.level is not Severity.NOTE]
    for r in results:
        diags.extend(lint(r, serving))
    emit_diagnostics(results, fmt, diagnostics=diags)
    if fmt == "text" and not diags and read_code is Exit.OK:
        click.echo(f"ok: {len(files)} file(s) linted, no findings")
    finish(Exit.FINDINGS if has_errors(diags) else Exit.OK, read_code)


@main.command(name="diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@registry_option
@guarded
def diff_command(old, new, fmt, registry):
    """Which requests change rule or target between OLD and NEW, each with a request.

    OLD and NEW are files, or stored versions `NAME@VERSION` (a name that is
    not a file). Exit 0 when no request changes, 1 when some do (as `diff`
    and `fmt --check`) or a file does not compile, 2 when a file cannot be read.
    """
    from .diff import diff, render_json, render_text

    results = [_file_or_version(old, registry), _file_or_version(new, registry)]
    broken = [r for r in results if not r.ok]
    if broken:
        emit_diagnostics(broken, "text", err=True)
        finish(Exit.FINDINGS)
    outcome = diff(results[0].router, results[1].router)
    click.echo(render_json(outcome) if fmt == "json" else render_text(outcome))
    finish(Exit.FINDINGS if outcome.changes or outcome.policies else Exit.OK)


# ---- routelang test / coverage (runtime) --------------------------------------------

def _runtime_router(file: str, backend: str):
    """A Router for a .route file or a JSON config, its `${VAR}`s filled in from
    the environment as `routelang.load` does (errors in it: exit 1); also the
    compiled IR router (for test blocks), or None for JSON."""
    from .loader import make_router, plan_from_compiled, plan_from_json
    from .runtime.model import ConfigError

    if file.endswith(".json"):
        try:
            plan = plan_from_json(parse_json(read_text(file), file))
        except ConfigError as exc:
            raise InputProblem(f"{file}: error: {exc}") from None
        return make_router(plan, backend=backend), None
    result = load(file, dict(os.environ))
    if not result.ok:
        emit_diagnostics([result], "text", err=True)
        finish(Exit.FINDINGS)
    return make_router(plan_from_compiled(result), backend=backend), result.router


def _read_requests(path: str) -> list:
    """Requests from a .json file (one request, or a list of them) or a .jsonl file (one per line)."""
    text = read_text(path)
    if not path.endswith(".jsonl"):
        data = parse_json(text, path)
        return data if isinstance(data, list) else [data]
    requests = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                requests.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputProblem(f"{path}:{number}:{exc.colno}: error: invalid JSON: {exc.msg}") from None
            except RecursionError:
                raise InputProblem(f"{path}:{number}:1: error: invalid JSON: nested too deeply") from None
    return requests


def _http_document(body_file: str, headers: tuple[str, ...], path: str) -> dict:
    """The request document `routelang serve` would route for this body and these headers."""
    from .gateway.request import document

    body = _read_requests(body_file)
    if len(body) != 1 or not isinstance(body[0], dict):
        raise UsageProblem(f"{body_file}: an HTTP body must be one JSON object")
    pairs = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise UsageProblem(f"--header {header!r}: expected NAME:VALUE")
        pairs.append((name.strip(), value.strip()))
    return document(body[0], pairs, path)


@main.command(name="test")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--data", help="One request as inline JSON.")
@click.option("--request", "request_file", type=click.Path(dir_okay=False), help="One request in a JSON file.")
@click.option("--requests", "requests_file", type=click.Path(dir_okay=False),
              help="Requests in a .jsonl file (one per line) or a .json list.")
@click.option("--http", "http_body", type=click.Path(dir_okay=False),
              help="An HTTP request body (JSON): route the document `routelang serve` builds from it.")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="A header of the --http request.")
@click.option("--http-path", default="/v1/chat/completions", show_default=True,
              type=click.Choice(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
              help="The endpoint of the --http request.")
@click.option("--expected", help="The rule every request must match (exit 1 on a mismatch).")
@click.option("--backend", type=click.Choice(["python", "json"]), default="python", show_default=True,
              help="Route with generated Python or by interpreting the JSON config.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl"]), default="text", show_default=True)
@guarded
def test_command(file, data, request_file, requests_file, http_body, headers, http_path, expected, backend, fmt):
    """Route requests through FILE (.route or Mixtrain JSON) and show why.

    Without request options, runs the `test` blocks written in FILE. `${VAR}`s
    are filled in from the environment, as at run time. Exit 1 if a test
    fails, a request does not match --expected, or a request is refused.
    """
    from .runtime.testing import describe, render_description, run_tests

    if sum(x is not None for x in (data, request_file, requests_file, http_body)) > 1:
        raise UsageProblem("give at most one of --data, --request, --requests, --http")
    if headers and http_body is None:
        raise UsageProblem("--header needs --http")
    router, ir_router = _runtime_router(file, backend)
    if data is None and request_file is None and requests_file is None and http_body is None:
        if expected is not None:
            raise UsageProblem("--expected needs --data, --request, --requests or --http")
        tests = ir_router.tests if ir_router is not None else ()
        outcomes = run_tests(router, tests)
        if fmt == "text":
            for o in outcomes:
                click.echo(f"{'PASS' if o.passed else 'FAIL'}  {o.name}" + ("" if o.passed else f": {o.detail}"))
            failed = sum(not o.passed for o in outcomes)
            click.echo(f"{len(outcomes) - failed} passed, {failed} failed" if outcomes else "no tests in " + file)
        else:
            rows = [{"name": o.name, "passed": o.passed, "detail": o.detail} for o in outcomes]
            lines = [json.dumps(r, ensure_ascii=False) for r in rows] if fmt == "jsonl" else [json.dumps(rows, indent=2)]
            click.echo("\n".join(lines))
        finish(Exit.FINDINGS if any(not o.passed for o in outcomes) else Exit.OK)
    if http_body is not None:
        requests = [_http_document(http_body, headers, http_path)]
    elif data is not None:
        try:
            requests = [json.loads(data)]
        except (json.JSONDecodeError, RecursionError) as exc:
            raise UsageProblem(f"--data is not valid JSON: {exc}")
    elif request_file is not None:
        requests = _read_requests(request_file)[:1] if not request_file.endswith(".jsonl") else \
            _read_requests(request_file)
    else:
        requests = _read_requests(requests_file)
    outs = [describe(router, r, expected) for r in requests]
    if http_body is not None:
        outs[0]["document"] = requests[0]
    if fmt == "jsonl":
        click.echo("\n".join(json.dumps(o, ensure_ascii=False) for o in outs))
    elif fmt == "json":
        click.echo(json.dumps(outs[0] if len(outs) == 1 and requests_file is None else outs, indent=2,
                              ensure_ascii=False))
    else:
        click.echo("\n\n".join(render_description(o, f"request {i}:") for i, o in enumerate(outs, start=1)))
    bad = any("error" in o or o.get("passed") is False for o in outs)
    finish(Exit.FINDINGS if bad else Exit.OK)


@main.command(name="serve")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--registry", envvar="ROUTELANG_REGISTRY",
              help="Serve every deployed router of this registry (a file or a postgresql:// URL) (also $ROUTELANG_REGISTRY, when no FILE is given).")
@click.option("--default-router", metavar="NAME",
              help="With --registry: the router of requests that name none (default: the only deployed one).")
@click.option("--no-history", is_flag=True, help="With --registry: do not record requests in the history.")
@click.option("--capture", is_flag=True,
              help="With --registry: also store each request's body and answer (user text!) in the history.")
@click.option("--history-max-rows", type=click.IntRange(1), envvar="ROUTELANG_HISTORY_MAX_ROWS",
              help="Keep at most this many history rows (default 1,000,000).")
@click.option("--history-max-days", type=Finite(0), envvar="ROUTELANG_HISTORY_MAX_DAYS",
              help="Delete history rows older than this (default 30).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes sharing the port (metrics are summed across them).")
@click.option("--api-keys", "api_keys", type=click.Path(dir_okay=False),
              help="File of `sha256:<hex> [ID]` client-key hashes; requests then need `Authorization: Bearer`.")
@click.option("--admin-keys", "admin_keys", type=click.Path(dir_okay=False),
              help="File of admin-key hashes (same format): serves the admin API at /api. Without it there is "
                   "no /api.")
@click.option("--tenant-keys", "tenant_keys", type=click.Path(dir_okay=False),
              help="The registry file holding tenant keys (`routelang keys`): requests then need one, which gives "
                   "them their workspace and agent, whose limits and budgets admit them (docs/tenants.md).")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=Finite(0),
              help="Seconds per upstream attempt, for targets without `timeout`.")
@click.option("--first-token-timeout", "first_token_s", default=60.0, show_default=True, type=Finite(0),
              help="Seconds a stream may wait for its first byte (and between bytes).")
@click.option("--request-read-timeout", "read_timeout_s", default=30.0, show_default=True, type=Finite(0),
              metavar="SECONDS",
              help="A client must send a request's headers within this many seconds of connecting (or of the "
                   "previous answer), and its body within as many after them; else the connection is closed "
                   "(a body: after a 408). An idle kept-alive connection is closed after as long.")
@click.option("--reload-interval", default=1.0, show_default=True, type=Finite(0, inclusive=True),
              help="Seconds between checks of FILE (and the files it imports) for changes (0: on SIGHUP only).")
@click.option("--drain", "drain_s", default=30.0, show_default=True, type=Finite(0, inclusive=True),
              help="Seconds SIGTERM waits for in-flight requests.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="JSON log lines go here (default: stderr).")
@click.option("--loop", type=click.Choice(["asyncio", "uvloop"]), default="asyncio", show_default=True,
              help="Event loop; uvloop must be installed separately.")
@click.option("--state", "state", default="memory", show_default=True, envvar="ROUTELANG_STATE",
              help="Where breakers, statistics, turns, health and drains live: `memory` (each process its own) "
                   "or redis://HOST:PORT/DB (shared by every process and replica on it; also $ROUTELANG_STATE).")
@click.option("--budgets-when-down", type=click.Choice(["refuse", "admit"]), default="refuse", show_default=True,
              help="With --tenant-keys and --state redis://...: while Redis is down or slow, requests under a budget "
                   "are refused (503 tenant_state_unavailable) or admitted uncounted.")
@click.option("--limits-when-down", type=click.Choice(["refuse", "admit"]), default="admit", show_default=True,
              help="The same for rate limits.")
@click.option("--rate-limit-headers", type=click.Choice(["refusals", "all"]), default="refusals", show_default=True,
              help="With --tenant-keys: OpenAI's x-ratelimit-* headers on the 429s of a rate-limited key (refusals), "
                   "or on every one of its answers, as OpenAI and LiteLLM send them (all: about 5 % more CPU per "
                   "request; docs/tenants.md).")
@click.option("--otlp-endpoint", metavar="URL",
              help="Export OpenTelemetry traces over OTLP/HTTP to this collector (e.g. http://localhost:4318; "
                   "also $OTEL_EXPORTER_OTLP_ENDPOINT). Needs the otel extra.")
@click.pass_context
@guarded
def serve_command(ctx, file, registry, default_router, no_history, capture, history_max_rows, history_max_days,
                  host, port, workers, api_keys, admin_keys, tenant_keys, timeout_s, first_token_s, read_timeout_s,
                  reload_interval, drain_s, log_file, loop, otlp_endpoint, state, budgets_when_down, limits_when_down,
                  rate_limit_headers):
    """Serve FILE (.route or Mixtrain JSON), or with --registry every deployed
    router of a registry, as an OpenAI-compatible gateway (docs/gateway.md).

    Exit 1 when FILE does not compile or load, 2 on a usage error."""
    from .gateway.server import Options, Settings, prepare_multiprocess, run
    from .registry.rows import Retention

    compiled = None   # FILE, compiled once: for its warnings here, then served
    if file is not None:
        if ctx.get_parameter_source("registry") is click.core.ParameterSource.COMMANDLINE:
            raise UsageProblem("give FILE or --registry, not both")
        if default_router or capture or no_history:
            raise UsageProblem("--default-router, --capture and --no-history need --registry")
        registry = None
        read_text(file)  # as every command: an unreadable FILE exits 2, one that is not UTF-8 exits 1
        compiled = _warn_unserved_fields(file)
    elif registry is None:
        raise UsageProblem("serve needs FILE or --registry PATH (or $ROUTELANG_REGISTRY)")
    elif capture and no_history:
        raise UsageProblem("--capture stores text in the history: it cannot go with --no-history")
    from .gateway.state import check_url

    if check_url(state) is not None:
        raise UsageProblem(check_url(state))
    if api_keys and tenant_keys:
        raise UsageProblem("--api-keys and --tenant-keys both read `Authorization`: give one")
    for flag, name in (("--budgets-when-down", "budgets_when_down"), ("--limits-when-down", "limits_when_down")):
        given = ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        if given and (not tenant_keys or state == "memory"):
            raise UsageProblem(f"{flag} is the policy of tenants counted on Redis: it needs --tenant-keys and "
                               "--state redis://...")
    if not tenant_keys and ctx.get_parameter_source("rate_limit_headers") is not click.core.ParameterSource.DEFAULT:
        raise UsageProblem("--rate-limit-headers says where tenants' rate limits are announced: it needs --tenant-keys")
    retention = Retention(**{k: v for k, v in (("max_rows", history_max_rows), ("max_days", history_max_days))
                             if v is not None})
    metrics_dir = prepare_multiprocess(workers)
    from .gateway.auth import KeyFileError
    from .gateway.plan import LoadError
    from .registry.store import RegistryError

    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise UsageProblem("--loop uvloop needs the uvloop package: pip install uvloop") from None
    tracing = _tracing_wanted(otlp_endpoint)

    settings = Settings(timeout_s=timeout_s, first_token_timeout_s=first_token_s, request_read_timeout_s=read_timeout_s)
    options = Options(path=file, registry=registry, default_router=default_router, history=not no_history,
                      retention=retention, capture=capture, host=host, port=port, workers=workers,
                      settings=settings, api_keys_file=api_keys, admin_keys_file=admin_keys, tenant_keys=tenant_keys,
                      reload_interval_s=reload_interval, drain_s=drain_s,
                      log_file=log_file, loop=loop, tracing=tracing, otlp_endpoint=otlp_endpoint,
                      state=state, budgets_when_down=budgets_when_down, limits_when_down=limits_when_down,
                      admitted_rate_headers=rate_limit_headers == "all", compiled=compiled)
    compiled = None   # held by options until loaded, then dropped (the served config does not need its tree)
    try:
        code = run(options)
    except LoadError as exc:
        click.echo(str(exc), err=True)
        finish(Exit.FINDINGS)
    except (KeyFileError, RegistryError, OSError) as exc:
        raise UsageProblem(str(exc)) from None
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    finish(Exit.OK if code == 0 else Exit.INTERNAL)


def _warn_unserved_fields(file: str) -> CompileResult | None:
    """Before serving a .route file: the findings of `lint --serve` (fields and sticky keys an
    OpenAI request never holds), as warnings on stderr; they do not stop the gateway. The
    compiled file, which the gateway then serves (None: a JSON config). A file that does not
    compile is left to the loader, which reports it."""
    if not file.endswith(".route"):
        return None
    from .lint import LINT_RULES, lint

    result = compile_path(file, env=dict(os.environ))
    serving_only = {rule.code.code for rule in LINT_RULES.values() if rule.serving_only}
    findings = [d for d in lint(result, serving=True) if d.code.code in serving_only]
    if findings:
        emit_diagnostics([result], "text", diagnostics=findings, err=True)
    return result


def _tracing_wanted(otlp_endpoint: str | None) -> bool:
    """Whether serve exports traces. --otlp-endpoint that cannot work is a usage error; the
    OTEL_EXPORTER_OTLP_* variables alone, set for other programs too, only warn."""
    from .gateway import tracing

    try:
        return tracing.check(otlp_endpoint, os.environ)
    except tracing.TracingUnavailable as exc:
        if otlp_endpoint:
            raise UsageProblem(str(exc)) from None
        click.echo(f"routelang serve: warning: the OTEL_EXPORTER_OTLP_* variables ask for traces, but {exc}; "
                   f"serving without traces", err=True)
        return False


@main.command(name="coverage")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("requests_file", metavar="REQUESTS", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["python", "json"]), default="python", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@guarded
def coverage_command(file, requests_file, backend, fmt):
    """Which rules of FILE the REQUESTS (.json list or .jsonl) reach, and which conditions never decide.

    Mixtrain's numbers (rule hits, uncovered rules, unmatched requests, coverage %),
    plus each condition that never was decisive: flipping it would have changed no
    request's match. Exit 0 (a report, not a verdict) unless an input has errors.
    """
    from .runtime.testing import coverage, render_coverage

    router, _ = _runtime_router(file, backend)
    report = coverage(router, _read_requests(requests_file))
    click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if fmt == "json"
               else render_coverage(report))
    finish(Exit.OK)


@main.command(name="explain")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="table: plain text; json: stable, versioned; markdown: for reviews.")
@env_option
@guarded
def explain_command(file, fmt, use_env):
    """Say what FILE's router does: rules in evaluation order, conditions in
    words, each target's share of traffic, and the findings (exit 1 if it
    does not compile)."""
    from .explain import explain

    result = load(file, dict(os.environ) if use_env else None)
    if not result.ok:
        emit_diagnostics([result], "text", err=True)
        finish(Exit.FINDINGS)
    click.echo(explain(result, fmt), nl=False)
    finish(Exit.OK)


@main.command(name="fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file would change.")
@click.option("--diff", "show_diff", is_flag=True,
              help="Write nothing; print a unified diff of each change; exit 1 if any file would change.")
@guarded
def fmt_command(files, check, show_diff):
    """Rewrite FILES in the canonical layout (`-` reads stdin and writes stdout).

    Exit 1 when a file has syntax errors or is not UTF-8 (it is left as it
    is) or, with --check or --diff, when a file would change; 2 when a file
    cannot be read (the others are still formatted)."""
    import difflib

    from .fmt import FormatError, format_source
    from .source import DecodeProblem, Source, read_source

    dry_run = check or show_diff
    changed, failed, read_code = [], False, Exit.OK
    for name in files:
        try:
            source = Source("<stdin>", sys.stdin.read()) if name == "-" else read_source(name)
        except DecodeProblem as exc:
            click.echo(render_text(not_utf8(exc), {}) + "\n", err=True)
            failed = True
            continue
        except SourceError as exc:
            click.echo(unreadable(name, exc), err=True)
            read_code = Exit.USAGE
            continue
        try:
            formatted = format_source(source)
        except FormatError as exc:
            for d in exc.diagnostics:
                click.echo(render_text(d, {source.name: source}) + "\n", err=True)
            click.echo(f"{source.name}: not formatted: fix the syntax errors first", err=True)
            failed = True
            continue
        if formatted != source.text:
            changed.append(source.name)
        if show_diff and formatted != source.text:
            lines = difflib.unified_diff(source.text.splitlines(keepends=True), formatted.splitlines(keepends=True),
                                         f"{source.name}", f"{source.name} (formatted)")
            click.echo("".join(lines), nl=False)
        elif check and formatted != source.text:
            click.echo(f"would reformat {source.name}")
        elif name == "-" and not dry_run:
            click.echo(formatted, nl=False)
        elif formatted != source.text and not dry_run:
            try:
                with open(name, "w", encoding="utf-8", newline="") as out:
                    out.write(formatted)
            except OSError as exc:
                raise UsageProblem(f"cannot write {name}: {exc.strerror or exc}") from None
            click.echo(f"reformatted {name}", err=True)
    if dry_run and changed:
        click.echo(f"{len(changed)} file(s) would be reformatted", err=True)
    finish(Exit.FINDINGS if failed or (dry_run and changed) else Exit.OK, read_code)


# ---- the registry (docs/registry.md) ---------------------------------------------------

def _store(registry: str | None, create: bool = False):
    """The registry (a file or a postgresql:// URL), opened (exit 2 when it cannot be); only `push` creates one."""
    from .registry.backends import open_store
    from .registry.store import RegistryError

    try:
        return open_store(registry, create=create)
    except RegistryError as exc:
        raise UsageProblem(str(exc)) from None
    except OSError as exc:
        raise UsageProblem(f"cannot open the registry {registry or 'at the default location'}: {exc}") from None


def registry_errors(fn):
    """A registry operation that cannot be done (no such router or version): exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .registry.store import RegistryError

        try:
            return fn(*args, **kwargs)
        except RegistryError as exc:   # StorageError too: the database failed
            raise UsageProblem(str(exc)) from None

    return wrapper


def _name_at_version(ref: str) -> tuple[str, int | None]:
    name, sep, number = ref.rpartition("@")
    if not sep:
        return ref, None
    if not number.isdigit() or not name:
        raise UsageProblem(f"{ref!r}: expected NAME or NAME@VERSION (a version number)")
    return name, int(number)


def _compiled_version(version) -> CompileResult:
    from .registry.artifacts import compile_stored

    result = compile_stored(version.entry, version.sources)
    if not result.ok:  # a routelang upgrade may reject what an older one accepted
        emit_diagnostics([result], "text", err=True)
        finish(Exit.FINDINGS)
    return result


@registry_errors
def _file_or_version(arg: str, registry: str | None) -> CompileResult:
    """A file, or (when no such file exists) a stored version NAME@VERSION."""
    import re

    if Path(arg).exists() or not re.fullmatch(r".+@\d+", arg):
        return load(arg)
    name, number = _name_at_version(arg)
    return _compiled_version(_store(registry).version(name, number))


def _when(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@main.command(name="push")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--router", "name", help="The router's name in the registry (default: the file's `router` name).")
@click.option("-m", "--message", default="", help="What this version changes.")
@registry_option
@guarded
@registry_errors
def push_command(file, name, message, registry):
    """Store FILE (with its imports) as a new version, if it checks clean.

    Warnings are shown and do not stop the push; identical content creates no
    version. Exit 1 when FILE has errors, 2 when it cannot be read."""
    from .registry.artifacts import build_file

    try:
        built = build_file(file)
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None
    if built.problems:
        emit_diagnostics([built.result], "text", diagnostics=built.problems, err=True)
    if not built.ok:
        click.echo(f"not pushed: {file} does not check clean", err=True)
        finish(Exit.FINDINGS)
    name = built.result.router.name if name is None else name
    version, new = _store(registry, create=True).push(name, built.entry, built.sources, built.compiled, message)
    if new:
        click.echo(f"pushed {name} version {version.version} ({version.content_hash[:19]})")
    else:
        click.echo(f"no change: {file} is identical to {name} version {version.version}")
    finish(Exit.OK)


@main.command(name="versions")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@registry_option
@guarded
@registry_errors
def versions_command(name, fmt, registry):
    """The versions of router NAME, the active one marked `*`."""
    store = _store(registry)
    active = store.active_version(name)
    rows = store.versions(name)
    if fmt == "json":
        click.echo(json.dumps({"router": name, "active_version": active, "versions": rows}, indent=2))
        finish(Exit.OK)
    for v in rows:
        mark = "*" if v["version"] == active else " "
        click.echo(f"{mark} {v['version']:>4}  {_when(v['created_at'])}  {v['content_hash'][:19]}  {v['message']}")
    finish(Exit.OK)


@main.command(name="show")
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: what it is and its source files; json: everything stored, the compiled config too.")
@registry_option
@guarded
@registry_errors
def show_command(ref, fmt, registry):
    """A stored version (default: the active one, else the latest)."""
    name, number = _name_at_version(ref)
    store = _store(registry)
    version = store.version(name, number)
    active = store.active_version(name)
    if fmt == "json":
        click.echo(json.dumps({**version.summary(), "active": version.version == active, "entry": version.entry,
                               "sources": version.sources, "compiled": version.compiled}, indent=2,
                              ensure_ascii=False))
        finish(Exit.OK)
    state = "active" if version.version == active else "not active"
    click.echo(f"router {name} version {version.version} ({state})\n"
               f"pushed {_when(version.created_at)}  {version.content_hash}\n"
               f"message: {version.message or '(none)'}")
    from .registry.artifacts import is_stdlib

    for file, text in version.sources.items():
        if not is_stdlib(file):
            click.echo(f"\n--- {file}{' (entry)' if file == version.entry else ''}\n{text.rstrip()}")
    finish(Exit.OK)


def _confirmed(question: str) -> bool:
    """The user's answer to a yes/no question; no terminal input (end of file) is a no, not click's
    bare `Aborted!`, so the caller says what was not done and exits 1."""
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        click.echo()   # end the prompt's line
        return False


@main.command(name="deploy")
@click.argument("name")
@click.argument("version", type=click.IntRange(1))
@click.option("--yes", "-y", is_flag=True, help="Deploy without asking.")
@registry_option
@guarded
@registry_errors
def deploy_command(name, version, yes, registry):
    """Make VERSION of router NAME the active one, after showing which requests
    change route (the semantic diff against the active version). Exit 1 when
    not confirmed."""
    from .diff import diff, render_text

    store = _store(registry)
    target = store.version(name, version)
    active = store.active_version(name)
    if active == version:
        click.echo(f"{name} version {version} is already active")
        finish(Exit.OK)
    if active is None:
        click.echo(f"{name} has no active version: every request it routes is new")
    else:
        outcome = diff(_compiled_version(store.version(name, active)).router, _compiled_version(target).router)
        click.echo(f"from version {active} to version {version}: {render_text(outcome)}")
    if not yes and not _confirmed(f"deploy {name} version {version}?"):
        click.echo("not deployed", err=True)
        finish(Exit.FINDINGS)
    store.deploy(name, version)
    click.echo(f"deployed {name} version {version}")
    finish(Exit.OK)


@main.command(name="rollback")
@click.argument("name")
@registry_option
@guarded
@registry_errors
def rollback_command(name, registry):
    """Make the version deployed before the current one active again (again: further back)."""
    current, previous = _store(registry).rollback(name)
    click.echo(f"rolled back {name} from version {current} to version {previous}")
    finish(Exit.OK)


@main.command(name="delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
@registry_option
@guarded
@registry_errors
def delete_command(name, yes, registry):
    """Delete router NAME: every version, deployment and its request history."""
    store = _store(registry)
    count = len(store.versions(name))
    if not yes and not _confirmed(f"delete {name} and its {count} version(s)?"):
        click.echo("not deleted", err=True)
        finish(Exit.FINDINGS)
    store.delete(name)
    click.echo(f"deleted {name}")
    finish(Exit.OK)


SOURCE_CHOICES = click.Choice(["gateway", "sdk", "all"])


@main.command(name="requests")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@click.option("--source", type=SOURCE_CHOICES, default="all", show_default=True,
              help="Only requests the gateway served, or only the SDK's decisions.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@registry_option
@guarded
@registry_errors
def requests_command(name, limit, source, fmt, registry):
    """The newest requests router NAME routed (the request history)."""
    store = _store(registry)
    store.active_version(name)  # an unknown router is an error, not an empty list
    rows = store.list_requests(name, limit, None if source == "all" else source)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        finish(Exit.OK)
    for r in rows:
        latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}ms"
        click.echo(f"{r['id']}  {_when(r['time'])}  v{r['version']}  {r['source']:<7}  {r['status']:<9}  "
                   f"{r['rule'] or '-'}  -> {r['selected_target'] or '-'}  {latency}")
    if not rows:
        click.echo(f"no requests recorded for {name}")
    finish(Exit.OK)


@main.command(name="request")
@click.argument("request_id", metavar="ID")
@registry_option
@guarded
@registry_errors
def request_command(request_id, registry):
    """One request of the history, every field (JSON)."""
    found = _store(registry).get_request(request_id)
    if found is None:
        raise UsageProblem(f"no request {request_id!r} in the registry")
    click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    finish(Exit.OK)


@main.group(name="registry")
def registry_group() -> None:
    """The registry as a whole (docs/registry.md#moving-a-registry)."""


@registry_group.command(name="copy")
@click.argument("source", metavar="SRC")
@click.argument("target", metavar="DST")
@guarded
@registry_errors
def registry_copy_command(source, target):
    """Copy the registry SRC into the empty registry DST (each a SQLite file or a
    postgresql:// URL): routers, versions, deployments, the request history."""
    from .registry.copy import copy_registry

    destination = _store(target, create=True)
    copied = copy_registry(_store(source), destination)
    click.echo(f"copied {copied.routers} router(s), {copied.versions} version(s), {copied.deployments} "
               f"deployment(s) and {copied.requests} request(s) into {destination.shown}")
    finish(Exit.OK)


@main.group(name="history")
def history_group() -> None:
    """The request history of a registry (docs/registry.md#request-history)."""


@history_group.command(name="prune")
@click.option("--max-rows", type=click.IntRange(1), envvar="ROUTELANG_HISTORY_MAX_ROWS",
              help="Keep at most this many rows (default: $ROUTELANG_HISTORY_MAX_ROWS, else 1,000,000).")
@click.option("--max-days", type=click.FloatRange(0, min_open=True), envvar="ROUTELANG_HISTORY_MAX_DAYS",
              help="Delete rows older than this (default: $ROUTELANG_HISTORY_MAX_DAYS, else 30).")
@registry_option
@guarded
@registry_errors
def history_prune_command(max_rows, max_days, registry):
    """Apply the retention now (the writers apply it after a batch, at most once a minute)."""
    from .registry.rows import Retention

    retention = Retention(**{k: v for k, v in (("max_rows", max_rows), ("max_days", max_days)) if v is not None})
    gone = _store(registry).prune(retention)
    click.echo(f"deleted {gone} request(s) beyond {retention.max_rows} rows or older than {retention.max_days:g} days")
    finish(Exit.OK)


@main.group(name="keys")
def keys_group() -> None:
    """Tenant keys: each gives its requests a workspace (and an agent) of the router (docs/tenants.md).
    Stored hashed in the registry; `serve --tenant-keys REGISTRY` reads them."""


def _key_store(registry: str | None):
    from .registry.store import default_location
    from .tenancy.keys import KeyStore, KeyStoreError

    try:
        return KeyStore(registry or default_location())
    except KeyStoreError as exc:
        raise UsageProblem(str(exc)) from None


@keys_group.command(name="create")
@click.argument("workspace")
@click.option("--agent", help="The agent the key's requests belong to (`agent.id`).")
@click.option("--expires", help="Expire in a duration (30d, 12h) or at an ISO date or date-time (UTC unless given).")
@click.option("--limit", help='The key\'s own limits, as a workspace writes them: "60 requests per minute, 20k tokens'
                              ' per minute".')
@click.option("--budget", help='The key\'s own budgets, as a workspace writes them: "10 USD per day, 50 per week".')
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@registry_option
@guarded
def keys_create_command(workspace, agent, expires, limit, budget, as_json, registry):
    """Issue a key for WORKSPACE; the secret is printed once and never stored. Its requests count
    against its own --limit and --budget too, besides its workspace's and agent's."""
    import time

    from .tenancy.keys import KeyStoreError, allowance, expiry
    from .timetext import iso

    try:
        budgets, limits = allowance(budget, limit)
    except KeyStoreError as exc:
        raise OptionProblem(str(exc)) from None
    store = _key_store(registry)
    now = time.time()
    try:
        key, secret = store.create(workspace, agent, None if expires is None else expiry(expires, now), now,
                                   budgets, limits)
    except KeyStoreError as exc:
        raise UsageProblem(str(exc)) from None
    if as_json:
        click.echo(json.dumps(key.to_dict(now) | {"key": secret}, indent=2))
    else:
        shown = key.to_dict(now)
        click.echo(f"{key.id} for workspace {workspace}" + (f", agent {agent}" if agent else "")
                   + (f", expires {iso(key.expires_at)}" if key.expires_at else "")
                   + (f", limit {shown['limit']}" if shown["limit"] else "")
                   + (f", budget {shown['budget']}" if shown["budget"] else ""))
        click.echo(f"key: {secret}")
        click.echo("(shown once: only its sha256 is stored)", err=True)
    finish(Exit.OK)


@keys_group.command(name="list")
@click.option("--workspace", help="Only this workspace's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@registry_option
@guarded
def keys_list_command(workspace, as_json, registry):
    """Every key (never a secret): id, workspace, agent, created, expires, state."""
    import time

    from .explain import text_table
    from .timetext import iso

    now = time.time()
    keys = _key_store(registry).list(workspace)
    if as_json:
        click.echo(json.dumps([k.to_dict(now) for k in keys], indent=2))
    elif keys:
        shown = [k.to_dict(now) for k in keys]
        click.echo(text_table(["ID", "WORKSPACE", "AGENT", "CREATED", "EXPIRES", "STATE", "LIMIT", "BUDGET"], [
            [k.id, k.workspace, k.agent or "-", iso(k.created_at), iso(k.expires_at) or "-", k.state(now),
             d["limit"] or "-", d["budget"] or "-"] for k, d in zip(keys, shown, strict=True)]))
    else:
        click.echo("no keys")
    finish(Exit.OK)


@keys_group.command(name="revoke")
@click.argument("key_id")
@registry_option
@guarded
def keys_revoke_command(key_id, registry):
    """Revoke a key by its id: gateways refuse it within 2 s at most (docs/tenants.md, Keys)."""
    from .tenancy.keys import KeyStoreError

    try:
        key = _key_store(registry).revoke(key_id)
    except KeyStoreError as exc:
        raise UsageProblem(str(exc)) from None
    click.echo(f"revoked {key.id} (workspace {key.workspace})")
    finish(Exit.OK)


@main.command(name="usage")
@click.option("--workspace", help="Only this workspace.")
@click.option("--since", default="7d", show_default=True,
              help="From this time: a duration ago (24h, 7d) or an ISO date or date-time (UTC unless given).")
@click.option("--by", "by", type=click.Choice(["model", "key", "day"]), default="model", show_default=True,
              help="Group each workspace's requests by the target that answered first, the key, or the UTC day.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@registry_option
@guarded
@registry_errors
def usage_command(workspace, since, by, as_json, registry):
    """Spend, tokens, requests, errors and latency per workspace from the request history,
    and each budget of the deployed routers used and left (docs/tenants.md)."""
    import time

    from .ir import Policy
    from .registry import ab_report
    from .tenancy.usage import budgets, usage

    try:
        start = ab_report.parse_time(since)
    except ab_report.ReportProblem as exc:
        raise UsageProblem(str(exc)) from None
    store = _store(registry)
    policies = []
    for router in store.routers():
        active = store.active_version(router["name"])
        if active is not None:
            compiled = store.version(router["name"], active).compiled
            policies += [Policy.model_validate(p) for p in compiled.get("x-routelang", {}).get("policies", [])]
    lines = usage(store, start, by, workspace)
    left = budgets(store, policies, time.time(), workspace)
    if as_json:
        click.echo(json.dumps({"usage": lines, "budgets": left}, indent=2))
        finish(Exit.OK)
    from .explain import text_table

    if lines:
        click.echo(text_table(["WORKSPACE", by.upper(), "REQUESTS", "ERRORS", "TOKENS IN", "TOKENS OUT", "SPEND USD",
                               "P50 MS", "P95 MS"],
                              [[x["workspace"], x[by], str(x["requests"]), str(x["errors"]), str(x["tokens_in"]),
                                str(x["tokens_out"]), f"{x['spend_usd']:.6f}", _ms(x["latency_p50_ms"]),
                                _ms(x["latency_p95_ms"])] for x in lines]))
    else:
        click.echo("no requests of tenant keys in this window")
    if left:
        click.echo("")
        click.echo(text_table(["WORKSPACE", "BUDGET", "SINCE", "USED USD", "LEFT USD"],
                              [[b["workspace"], f"{b['budget_usd']:g} USD per {b['period']}", b["from"],
                                f"{b['used_usd']:.6f}", f"{b['left_usd']:.6f}"] for b in left]))
    finish(Exit.OK)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


@main.command(name="ab")
@click.argument("name")
@click.option("--rule", help="Only this split rule (default: every rule with split arms, one report each).")
@click.option("--since", help="From this time: an ISO date or date-time (UTC unless given), or a duration ago "
                              "(30m, 24h, 7d).")
@click.option("--until", help="Before this time (the same forms as --since).")
@click.option("--control", help="The control arm (default: the first label in sorted order).")
@click.option("--source", type=SOURCE_CHOICES, default="gateway", show_default=True,
              help="Whose rows: requests the gateway served, the SDK's decisions (decision time only), or all.")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="The false-positive rate of the report, shared by its variants (Bonferroni).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown", "html"]), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report here (default: stdout).")
@registry_option
@guarded
@registry_errors
def ab_command(name, rule, since, until, control, source, alpha, fmt, output, registry):
    """An A/B report of router NAME's split arms from the request history:
    per arm, requests, success rate, latency, time to first token, tokens and
    cost; per variant against the control, a z-test on the success rate and
    Welch's t-test on latency, guarded against stopping early by always-valid
    p-values (mSPRT). Exit 0 when the report is printed, whatever it says."""
    from .registry import ab_report

    store = _store(registry)
    store.active_version(name)  # an unknown router is an error, not an empty report
    try:
        start = None if since is None else ab_report.parse_time(since)
        end = None if until is None else ab_report.parse_time(until)
        if start is not None and end is not None and end <= start:
            raise ab_report.ReportProblem(f"--until {until} is not after --since {since}: the window is empty")
        report = ab_report.build_report(store, name, rule=rule, since=start, until=end, control=control,
                                        alpha=alpha, source=None if source == "all" else source)
    except ab_report.ReportProblem as exc:
        raise UsageProblem(str(exc)) from None
    if fmt == "json":
        text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    elif fmt == "html":
        from .registry.ab_html import render_html

        text = render_html(report)
    else:
        text = (ab_report.render_markdown if fmt == "markdown" else ab_report.render_text)(report)
    write_output(text, output)
    finish(Exit.OK)
