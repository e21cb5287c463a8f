"""Mixtrain's routing-config schema, read with routelang's own models.

The models below accept and reject exactly what `mixtrain.routing.models`
accepts and rejects, coerce the same way (`"weight": 1` -> 1.0,
`"timeout_ms": "500"` -> 500) and dump the same canonical form
(`RoutingConfig.from_json(x).to_json()`); `validate_config` says what
`mixtrain.routing.RoutingValidator.validate_config` says, message for
message. So routelang reads Mixtrain JSON without Mixtrain installed;
`tests/test_mixtrain_schema.py` compares both, field for field and on
generated configs, with Mixtrain as a test-only dependency.

Where Mixtrain's validator itself raises (an integer too large for
`float()`, a value `str()` refuses), `validate_config` reports the condition
as invalid instead of raising.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .ir import MIXTRAIN_STRATEGIES
from .vocab.operators import MIXTRAIN_NAMES, UNARY

RoutingStrategy = Enum("RoutingStrategy", {name.upper(): name for name in MIXTRAIN_STRATEGIES}, type=str)
ConditionOperator = Enum("ConditionOperator", {name.upper(): name for name in MIXTRAIN_NAMES}, type=str)

_MIXTRAIN = ConfigDict(use_enum_values=True)  # Mixtrain's config on every model (extra keys are ignored)


class RoutingCondition(BaseModel):
    model_config = _MIXTRAIN

    field: str
    operator: ConditionOperator
    value: str | int | float | bool | list[Any] | None = None
    description: str | None = None


class RoutingTarget(BaseModel):
    model_config = _MIXTRAIN

    provider: str
    model_name: str
    endpoint: str
    weight: float = Field(default=1.0, ge=0.0, le=1.0)
    label: str | None = None
    timeout_ms: int | None = Field(None, ge=100)
    retry_count: int | None = Field(None, ge=0, le=5)
    function_name: str | None = None
    request_class: str | None = None
    headers: dict[str, str] | None = None
    is_shadow: bool = False


class RoutingRule(BaseModel):
    model_config = _MIXTRAIN

    name: str
    description: str | None = ""
    priority: int = 0
    is_enabled: bool = True
    conditions: list[RoutingCondition] = Field(default_factory=list)
    strategy: RoutingStrategy = RoutingStrategy.SINGLE
    targets: list[RoutingTarget]

    @field_validator("targets")
    @classmethod
    def validate_targets(cls, v, info):
        # `strategy` is declared before `targets`, so it is in info.data when it was valid.
        if not v:
            raise ValueError("At least one target must be specified")
        strategy = info.data.get("strategy")
        if strategy == "split":
            if abs(sum(t.weight for t in v) - 1.0) > 0.001:
                raise ValueError("Split strategy requires target weights to sum to 1.0")
        elif strategy == "shadow" and len(v) != 2:
            raise ValueError("Shadow strategy requires exactly 2 targets (primary and shadow)")
        return v


class RoutingConfig(BaseModel):
    model_config = _MIXTRAIN

    name: str
    description: str | None = ""
    rules: list[RoutingRule]
    metadata: dict[str, Any] | None = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def validate_rules(cls, v):
        if not v:
            raise ValueError("At least one routing rule must be specified")
        return v

    @classmethod
    def from_json(cls, config_json: dict[str, Any]) -> RoutingConfig:
        return cls(**config_json)  # as Mixtrain does: keyword arguments, not model_validate

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


class SchemaProblem(ValueError):
    """The input is not a config `RoutingConfig` loads. `problems` are
    (location in the JSON, message) pairs, one per pydantic error."""

    def __init__(self, problems: list[tuple[tuple, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(str(p) for p in loc) or 'config'}: {msg}" for loc, msg in problems))


def load(config: Any) -> RoutingConfig:
    """Read `config` as Mixtrain's `RoutingConfig.from_json` does; SchemaProblem if it refuses."""
    if not isinstance(config, dict):
        raise SchemaProblem([((), f"a routing config is a JSON object, not {type(config).__name__}")])
    try:
        return RoutingConfig.from_json(config)
    except ValidationError as exc:
        raise SchemaProblem([(tuple(e["loc"]), e["msg"]) for e in exc.errors()]) from None
    except TypeError as exc:  # keys that are not strings (a dict built in Python, not JSON)
        raise SchemaProblem([((), str(exc))]) from None


def canonical(config: Any) -> dict:
    """Mixtrain's canonical dump of `config` (`RoutingConfig.from_json(x).to_json()`)."""
    return load(config).to_json()


# ---- RoutingValidator ---------------------------------------------------------------

# Mixtrain's messages say where as `rule[0].conditions[1]`; `validation_path` reads that back.
_CONTEXT = re.compile(r"rule\[(\d+)\](?:\.(conditions|targets)\[(\d+)\])?")
_NEEDS_VALUE = tuple(op for op in MIXTRAIN_NAMES if op not in UNARY)


def validation_path(message: str) -> tuple:
    """The JSON path (`("rules", 0, "targets", 1)`) a validator message is about; () for the config."""
    m = _CONTEXT.match(message)
    if m is None:
        return ()
    path: tuple = ("rules", int(m.group(1)))
    return path + (m.group(2), int(m.group(3))) if m.group(2) else path


def validate_config(config: RoutingConfig) -> list[str]:
    """What Mixtrain's `RoutingValidator.validate_config` says about a loaded config."""
    errors = []
    if not config.name or not config.name.strip():
        errors.append("Configuration name is required and cannot be empty")
    if not config.rules:
        errors.append("At least one routing rule must be specified")
    names: list[str] = []
    for i, rule in enumerate(config.rules):
        errors.extend(_rule_errors(rule, f"rule[{i}]"))
        if rule.name in names:
            errors.append(f"Duplicate rule name '{rule.name}' found")
        names.append(rule.name)
    return errors


def _rule_errors(rule: RoutingRule, where: str) -> list[str]:
    errors = []
    if not rule.name or not rule.name.strip():
        errors.append(f"{where}: Rule name is required and cannot be empty")
    if rule.priority < 0:
        errors.append(f"{where}: Rule priority cannot be negative")
    for j, condition in enumerate(rule.conditions):
        errors.extend(_condition_errors(condition, f"{where}.conditions[{j}]"))
    if not rule.targets:
        errors.append(f"{where}: At least one target is required")
    for k, target in enumerate(rule.targets):
        errors.extend(_target_errors(target, f"{where}.targets[{k}]"))
    if rule.strategy == "split":
        total = sum(t.weight for t in rule.targets)
        if abs(total - 1.0) > 0.001:
            errors.append(f"{where}: Split strategy requires target weights to sum to 1.0, got {total:.3f}")
        for k, target in enumerate(rule.targets):
            if target.weight == 1.0 and len(rule.targets) > 1:
                errors.append(f"{where}.targets[{k}]: Split strategy requires explicit weights for all targets")
    elif rule.strategy == "shadow" and len(rule.targets) != 2:
        errors.append(f"{where}: Shadow strategy requires exactly 2 targets (primary and shadow), "
                      f"got {len(rule.targets)}")
    return errors


def _condition_errors(c: RoutingCondition, where: str) -> list[str]:
    errors = []
    op, value = c.operator, c.value
    if not c.field or not c.field.strip():
        errors.append(f"{where}: Condition field is required and cannot be empty")
    if c.field and ".." in c.field:
        errors.append(f"{where}: Invalid field path '{c.field}' (contains '..')")
    if op in _NEEDS_VALUE and value is None:
        errors.append(f"{where}: Operator '{op}' requires a value")
    if op in ("in", "not_in") and value is not None and not isinstance(value, list):
        errors.append(f"{where}: Operator '{op}' requires a list value")
    if op in ("greater_than", "less_than") and value is not None:
        try:
            float(value)
        except (TypeError, ValueError):
            errors.append(f"{where}: Operator '{op}' requires a numeric value")
        except OverflowError:  # Mixtrain's validator raises here
            errors.append(f"{where}: Operator '{op}' requires a numeric value (this integer overflows float())")
    if op == "regex" and value is not None:
        try:
            re.compile(str(value))
        except re.error as exc:
            errors.append(f"{where}: Invalid regex pattern '{value}': {exc}")
        except (ValueError, OverflowError, RecursionError) as exc:  # Mixtrain's validator raises here
            errors.append(f"{where}: Invalid regex pattern: {type(exc).__name__}: {exc}")
    return errors


def _target_errors(t: RoutingTarget, where: str) -> list[str]:
    errors = []
    for name, value in (("provider", t.provider), ("model_name", t.model_name), ("endpoint", t.endpoint)):
        if not value or not str(value).strip():
            errors.append(f"{where}: Field '{name}' is required and cannot be empty")
    if not (0.0 <= t.weight <= 1.0):
        errors.append(f"{where}: Weight must be between 0.0 and 1.0, got {t.weight}")
    if t.timeout_ms is not None and t.timeout_ms < 100:
        errors.append(f"{where}: Timeout must be at least 100ms, got {t.timeout_ms}")
    if t.retry_count is not None and not 0 <= t.retry_count <= 5:
        errors.append(f"{where}: Retry count must be between 0 and 5, got {t.retry_count}")
    if t.endpoint and not (t.endpoint.startswith("http://") or t.endpoint.startswith("https://")):
        errors.append(f"{where}: Endpoint must be a valid HTTP/HTTPS URL")
    return errors
