"""`${VAR}` and `${VAR:-default}` interpolation, as in the hybrid router's
YAML. routelang keeps these verbatim in compiled JSON unless asked to resolve
them (`compile --env`); `routelang.load` fills them in from the environment.

They are allowed in a target's strings: the fields below and every header
value. Conditions never interpolate."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .vocab import settings

# A target's string settings (their ir.Target, JSON and runtime Target field), which may hold
# references, as may every value of its `headers` setting.
TARGET_STRING_FIELDS = tuple(s.ir_field for s in settings.TABLE if s.kind == "string")

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(Exception):
    def __init__(self, name: str):
        super().__init__(f"environment variable `{name}` is not set and has no default")
        self.name = name


def has_refs(text: str) -> bool:
    return "${" in text and ENV_REF.search(text) is not None


def interpolate(text: str, env: Mapping[str, str], keep_unset: bool = False) -> str:
    """Replace every reference; an unset variable without a default raises,
    or with `keep_unset` stays as written."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        if keep_unset:
            return m.group(0)
        raise UnsetVariable(name)

    return ENV_REF.sub(sub, text)


def with_defaults(text: str) -> str | None:
    """The text with each reference replaced by its default, or None when
    some reference has no default (so the value is unknown until run time)."""
    try:
        return interpolate(text, {})
    except UnsetVariable:
        return None
