"""From a config to a Router: the layer above the compiler, the backends and the runtime.

    router = routelang.load("routing.route")      # or a Mixtrain JSON config
    router = routelang.loads(text)                # .route or JSON source text, never a path

The runtime (`routelang.runtime`) routes by a `Plan` and imports neither the
compiler nor a backend; this module compiles `.route` text, reads JSON, fills
in `${VAR}` references, and gives the Router its executor.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import envvars
from .runtime.engine import Executor, MixtrainInterface, Router, interpreter
from .runtime.model import ConfigError, Plan, Target, plan_from_config
from .source import SourceError


class CompileError(ValueError):
    """A `.route` source with errors; the message holds the rendered diagnostics."""


def python_executor(plan: Plan) -> Callable[[dict], int]:
    from .backends.python import executor  # jinja2 and the emitter load only when used

    return executor(plan)


# How each backend finds the first matching rule (see docs/runtime.md).
EXECUTORS: dict[str, Executor] = {"python": python_executor, "json": interpreter}


def make_router(plan: Plan, backend: str = "python", clock: Callable[[], float] = time.monotonic) -> Router:
    """A Router for `plan` whose decisions are made by `backend`'s executor."""
    executor = EXECUTORS.get(backend)
    if executor is None:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(sorted(EXECUTORS))})")
    return Router(plan, executor=executor, clock=clock)


def load(source: Any, backend: str = "python", env: Mapping[str, str] | None = None,
         clock: Callable[[], float] = time.monotonic) -> Router:
    """A Router for a `.route` or `.json` file (a `str` or `Path`), source text
    (a `str` holding a newline or a `{`), a config dict or a mixtrain
    RoutingConfig. `${VAR}` references are filled in from `env` (default: the
    process environment). Raises CompileError (a `.route` file with errors)
    or ConfigError (no such file, or a config that cannot be loaded)."""
    return make_router(load_plan(source, env), backend=backend, clock=clock)


def loads(text: str, backend: str = "python", env: Mapping[str, str] | None = None,
          clock: Callable[[], float] = time.monotonic) -> Router:
    """Like `load`, for source text that is never taken for a path: JSON when
    it starts with `{`, else `.route`."""
    return make_router(plan_from_text(text, env), backend=backend, clock=clock)


def load_plan(source: Any, env: Mapping[str, str] | None = None) -> Plan:
    """The Plan `load` routes by (see `load` for the forms of `source`)."""
    if isinstance(source, str) and not is_source_text(source):
        source = Path(source)
    if isinstance(source, Path):
        return plan_from_file(source, env)
    if isinstance(source, str):
        return plan_from_text(source, env)
    return plan_from_json(source, env)


def is_source_text(text: str) -> bool:
    """A `str` given to `load` is source text when it holds a newline or a `{`
    and names no file: a router needs a `{` (every rule has a block), a JSON
    config starts with one. Anything else is a path, so a mistyped file name
    is reported as a missing file instead of being parsed as source."""
    if "\n" not in text and "{" not in text:
        return False
    try:
        return "\n" in text or not Path(text).is_file()
    except (OSError, ValueError):  # too long for a file name, or holds NUL
        return True


def plan_from_file(path: Path, env: Mapping[str, str] | None = None) -> Plan:
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if path.suffix == ".json":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        return plan_from_json(_parse_json(text, str(path)), env)
    from .compiler import compile_path

    try:
        result = compile_path(path, env=_environment(env))
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    return plan_from_compiled(result)


def plan_from_text(text: str, env: Mapping[str, str] | None = None) -> Plan:
    if text.lstrip().startswith("{"):
        return plan_from_json(_parse_json(text, "<input>"), env)
    from .compiler import compile_text

    return plan_from_compiled(compile_text(text, env=_environment(env)))


def plan_from_json(config: Any, env: Mapping[str, str] | None = None) -> Plan:
    """A Plan from a Mixtrain-schema config (dict or RoutingConfig), its `${VAR}`s filled in."""
    return fill_env(plan_from_config(config), _environment(env))


def plan_for_deciding(config: Any, env: Mapping[str, str] | None = None) -> Plan:
    """A Plan that decides and never sends (the registry SDK's `route`): a decision reads no
    endpoint, header or key, so a `${VAR}` that is unset stays as written instead of being an
    error (an upstream key need not be on every machine that decides); set ones are filled in."""
    return fill_env(plan_from_config(config), _environment(env), keep_unset=True)


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{name}: not valid JSON: {exc}") from None


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ if env is None else env)


def plan_from_compiled(result) -> Plan:
    """A compiled `.route` file (its `${VAR}`s already filled in, each unset one an RL210 diagnostic)."""
    from .backends.json import lower
    from .compiler import rule_locations

    if not result.ok:
        raise CompileError(result.render())
    config, _notes = lower(result.router)
    return plan_from_config(config, locations=rule_locations(result.router))


def fill_env(plan: Plan, env: Mapping[str, str], keep_unset: bool = False) -> Plan:
    """`plan` with the `${VAR}` references of every target string filled in
    from `env`; an unset variable without a default raises ConfigError naming
    the variable, the rule, the target and the field (`keep_unset`: stays as written)."""

    def fill(text: str, where: str) -> str:
        try:
            return envvars.interpolate(text, env, keep_unset)
        except envvars.UnsetVariable as exc:
            raise ConfigError(f"{where}: {exc} (set {exc.name}, or give a default: ${{{exc.name}:-value}})") \
                from None

    def target(t: Target, where: str) -> Target:
        update: dict[str, Any] = {}
        for key in envvars.TARGET_STRING_FIELDS:
            value = getattr(t, key)
            if isinstance(value, str) and envvars.has_refs(value):
                update[key] = fill(value, f"{where} `{key}`")
        if t.headers and any(envvars.has_refs(v) for v in t.headers.values()):
            update["headers"] = {k: fill(v, f"{where} header `{k}`") for k, v in t.headers.items()}
        return replace(t, **update) if update else t

    rules = []
    for rule in plan.rules:
        targets = tuple(target(t, f"rule {rule.name!r}, target {i} ({t.name or t.model_name!r})")
                        for i, t in enumerate(rule.targets, start=1))
        rules.append(rule if targets == rule.targets else rule.with_targets(targets))
    return plan if all(a is b for a, b in zip(rules, plan.rules)) else replace(plan, rules=tuple(rules))


class RoutingEngine(MixtrainInterface):
    """A drop-in for `mixtrain.routing.engine.RoutingEngine`: same constructor,
    methods and results, also for `.route` files. `config` is anything `load` takes."""

    def __init__(self, config: Any, backend: str = "python"):
        self.config = config
        super().__init__(load(config, backend=backend))
