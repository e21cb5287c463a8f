"""Every target setting, defined once: how it is written in .route (`surface`),
the `ir.Target` field it fills, where the JSON backend writes it (a field of
Mixtrain's `RoutingTarget`, or of routelang's `x-routelang` extension), its
type and bounds, and the words explain uses for it.

Order matters: the JSON backend writes fields in table order, and fmt and
the importer write settings in it.

This module imports nothing from routelang.
"""

from __future__ import annotations

from dataclasses import dataclass

# string | int | duration (whole ms) | fraction (0..1) | number | bool | headers (str -> str) | block (nested)
# | money (written in USD, kept in whole micro-dollars) | strings (a list of strings)
KINDS = ("string", "int", "duration", "fraction", "number", "bool", "headers", "block", "money", "strings")
MIXTRAIN, EXTENSION = "mixtrain", "x-routelang"


@dataclass(frozen=True)
class Setting:
    surface: str                    # the .route keyword: `timeout 30s`
    ir_field: str                   # ir.Target's field (or the block's field for sub-settings)
    json_field: str                 # the field in the compiled JSON target
    json_place: str                 # MIXTRAIN: RoutingTarget has it; EXTENSION: in target["x-routelang"]
    kind: str                       # one of KINDS
    phrase: str                     # explain: what it is, in words
    minimum: float | None = None    # inclusive bounds the checker enforces (Mixtrain's, where it has them)
    maximum: float | None = None
    required: bool = False          # every target needs it
    block: tuple[Setting, ...] = ()  # sub-settings of a `{ ... }` block


CIRCUIT_BREAKER = (
    Setting("failures", "failure_threshold", "failure_threshold", EXTENSION, "int", "failures before it opens",
            minimum=1),
    Setting("cooldown", "cooldown_ms", "cooldown_ms", EXTENSION, "duration", "time open before a retry",
            minimum=1),
    Setting("successes", "success_threshold", "success_threshold", EXTENSION, "int", "successes that close it",
            minimum=1),
)
HEALTH_CHECK = (
    Setting("path", "path", "path", EXTENSION, "string", "path probed"),
    Setting("interval", "interval_ms", "interval_ms", EXTENSION, "duration", "time between probes", minimum=1000),
    Setting("timeout", "timeout_ms", "timeout_ms", EXTENSION, "duration", "probe timeout", minimum=1),
)

TABLE: tuple[Setting, ...] = (
    Setting("provider", "provider", "provider", MIXTRAIN, "string", "provider", required=True),
    Setting("model", "model_name", "model_name", MIXTRAIN, "string", "model", required=True),
    Setting("endpoint", "endpoint", "endpoint", MIXTRAIN, "string", "endpoint", required=True),
    Setting("weight", "weight", "weight", MIXTRAIN, "fraction", "share of traffic", minimum=0.0, maximum=1.0),
    Setting("label", "label", "label", MIXTRAIN, "string", "label"),
    Setting("timeout", "timeout_ms", "timeout_ms", MIXTRAIN, "duration", "timeout", minimum=100),
    Setting("retries", "retry_count", "retry_count", MIXTRAIN, "int", "retries", minimum=0, maximum=5),
    Setting("function_name", "function_name", "function_name", MIXTRAIN, "string", "function name"),
    Setting("request_class", "request_class", "request_class", MIXTRAIN, "string", "request class"),
    Setting("headers", "headers", "headers", MIXTRAIN, "headers", "headers"),
    Setting("is_shadow", "is_shadow", "is_shadow", MIXTRAIN, "bool", "shadow target"),
    Setting("cost", "cost_per_1k_tokens", "cost_per_1k_tokens", EXTENSION, "number", "cost per 1k tokens",
            minimum=0.0),
    Setting("input_cost", "input_micros_per_1k", "input_micros_per_1k", EXTENSION, "money",
            "price of 1k prompt tokens", minimum=0),
    Setting("output_cost", "output_micros_per_1k", "output_micros_per_1k", EXTENSION, "money",
            "price of 1k completion tokens", minimum=0),
    Setting("capabilities", "capabilities", "capabilities", EXTENSION, "strings", "capabilities"),
    Setting("compliance", "compliance", "compliance", EXTENSION, "strings", "compliance tags"),
    Setting("tags", "tags", "tags", EXTENSION, "strings", "tags"),
    Setting("circuit_breaker", "circuit_breaker", "circuit_breaker", EXTENSION, "block", "circuit breaker",
            block=CIRCUIT_BREAKER),
    Setting("health_check", "health_check", "health_check", EXTENSION, "block", "health check",
            block=HEALTH_CHECK),
)

BY_SURFACE: dict[str, Setting] = {s.surface: s for s in TABLE}
BY_IR_FIELD: dict[str, Setting] = {s.ir_field: s for s in TABLE}
BLOCKS: tuple[str, ...] = tuple(s.surface for s in TABLE if s.block)
IDENTITY: tuple[Setting, ...] = tuple(s for s in TABLE if s.required)
# Settings Mixtrain's RoutingTarget has, after provider/model/endpoint/weight (written as given).
MIXTRAIN_OPTIONAL: tuple[Setting, ...] = tuple(
    s for s in TABLE if s.json_place == MIXTRAIN and not s.required and s.surface != "weight")
# Settings the resolver converts (routelang/policies.py): prices to micro-dollars, lists to tuples.
TENANCY: tuple[Setting, ...] = tuple(s for s in TABLE if s.kind in ("money", "strings"))
EXTENSIONS: tuple[Setting, ...] = tuple(s for s in TABLE if s.json_place == EXTENSION)
