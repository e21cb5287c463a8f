"""Diagnostics: codes, the Diagnostic record, and its renderings.

Every finding has a stable code (`RL204`) and a kebab-case name
(`invalid-regex`). Codes are grouped by the phase that reports them:

    RL0xx  syntax and input          (parser)
    RL1xx  names, imports, structure (resolve)
    RL2xx  values and types          (check)
    RL3xx  lint findings             (lint, analysis)
    RL9xx  notes about backends      (backends)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

from .source import Source, Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    severity: Severity
    summary: str


CODES: dict[str, Code] = {}


def register(code: str, name: str, severity: Severity, summary: str) -> Code:
    entry = Code(code, name, severity, summary)
    assert code not in CODES, code
    CODES[code] = entry
    return entry


E, W, N = Severity.ERROR, Severity.WARNING, Severity.NOTE

SYNTAX_ERROR = register("RL001", "syntax-error", E, "the text is not valid routelang")
INPUT_ERROR = register("RL002", "unreadable-input", E, "the file cannot be read as UTF-8 text")
MIXTRAIN_SCHEMA = register("RL003", "mixtrain-schema", E, "a JSON config is not one Mixtrain's RoutingConfig loads")
MIXTRAIN_VALIDATOR = register("RL004", "mixtrain-validator", E, "Mixtrain's RoutingValidator rejects a JSON config")
INEXACT_IMPORT = register("RL005", "inexact-import", W,
                          "a JSON config says something a .route file cannot say exactly (docs/import.md)")

UNKNOWN_NAME = register("RL101", "unknown-name", E, "a name is used but never defined")
DUPLICATE_RULE = register("RL102", "duplicate-rule", E, "two rules have the same name")
DUPLICATE_DEFINITION = register("RL103", "duplicate-definition", E, "a name is defined twice")
UNKNOWN_IMPORT = register("RL104", "unknown-import", E, "an imported module or file does not exist")
IMPORT_CYCLE = register("RL105", "import-cycle", E, "files import each other in a cycle")
MISSING_ROUTER = register("RL106", "missing-router", E, "the file has no `router` header")
DUPLICATE_ROUTER = register("RL107", "duplicate-router", E, "a file has more than one router header")
NO_RULES = register("RL108", "no-rules", E, "the router has no rules")
MISSING_STRATEGY = register("RL109", "missing-strategy", E, "a rule does not say where to route")
MULTIPLE_STRATEGIES = register("RL110", "multiple-strategies", E, "a rule has more than one strategy")
MULTIPLE_WHEN = register("RL111", "multiple-when", E, "a rule has more than one `when` clause")
WRONG_KIND = register("RL112", "wrong-kind", E, "a name refers to the wrong kind of definition")
ROUTER_IN_MODULE = register("RL113", "router-in-import", E, "an imported file declares a router")

TYPE_MISMATCH = register("RL201", "type-mismatch", E, "an operator is given a value of the wrong type")
SPLIT_WEIGHTS = register("RL202", "split-weights", E, "split weights do not add up to 100%")
SHADOW_TARGETS = register("RL203", "shadow-targets", E, "shadow routing needs one primary and one shadow")
INVALID_REGEX = register("RL204", "invalid-regex", E, "a regular expression does not compile")
INVALID_ENDPOINT = register("RL205", "invalid-endpoint", E, "an endpoint is not an http(s) URL")
TIMEOUT_TOO_SHORT = register("RL206", "timeout-too-short", E, "a timeout is under 100 ms")
RETRIES_OUT_OF_RANGE = register("RL207", "retries-out-of-range", E, "retries must be between 0 and 5")
UNKNOWN_FIELD = register("RL208", "unknown-field", E, "a field is not declared in the schema")
NOT_IN_ENUM = register("RL209", "not-in-enum", E, "a value is not one of the field's declared values")
UNSET_ENV_VAR = register("RL210", "unset-env-var", E, "an environment variable without default is unset")
INCOMPLETE_TARGET = register("RL211", "incomplete-target", E, "a target lacks provider, model or endpoint")
WEIGHT_OUT_OF_RANGE = register("RL212", "weight-out-of-range", E, "a weight is outside 0..1")
DUPLICATE_SETTING = register("RL213", "duplicate-setting", E, "a setting is given twice in one block")
HYBRID_WEIGHTS = register("RL214", "hybrid-weights", E, "hybrid weights are invalid")
NEGATIVE_PRIORITY = register("RL215", "negative-priority", E, "a priority is negative")
NULL_IN_CONDITION = register("RL216", "null-comparison", E, "a condition compares with null")
BAD_CALL = register("RL217", "bad-provider-call", E, "a provider preset is called with wrong arguments")
INVALID_SETTING = register("RL218", "invalid-setting", E, "a setting's value is out of range")
BAD_TEST = register("RL219", "invalid-test", E, "a test block is malformed")
EMPTY_NAME = register("RL220", "empty-name", E, "a name or field is empty")
DOT_IN_SEGMENT = register("RL222", "dot-in-path-segment", E, "a quoted field-path segment contains `.`")
NESTED_STRATEGY = register("RL225", "nested-strategy", E, "a strategy stands where only a target may")
INVALID_POLICY = register("RL240", "invalid-policy", E,
                          "a workspace's or agent's budget, limit, restriction or requirement is not valid")
RESTRICTION_VIOLATED = register("RL241", "restriction-violated", E,
                                "a rule can send a workspace's or agent's request to a target it may not use")

# RL3xx lint codes are registered by routelang.lint.
MIXTRAIN_APPROXIMATION = register(
    "RL901", "mixtrain-approximation", N, "the Mixtrain engine will route this rule differently"
)
MIXTRAIN_INEXACT = register(
    "RL902", "mixtrain-inexact", W, "Mixtrain's conditions cannot state a condition exactly"
)
PEER_APPROXIMATION = register(
    "RL910", "peer-approximation", N, "LiteLLM or Portkey has no place for a setting; it is left out"
)
PEER_INEXACT = register(
    "RL911", "peer-inexact", W, "LiteLLM or Portkey would route some requests differently"
)


@dataclass
class Related:
    span: Span
    message: str


@dataclass
class Diagnostic:
    code: Code
    message: str
    span: Span
    help: str | None = None
    rule: str | None = None
    related: list[Related] = field(default_factory=list)
    witness: dict | None = None
    severity: Severity | None = None  # overrides the code's default

    @property
    def level(self) -> Severity:
        return self.severity or self.code.severity

    def sort_key(self):
        return (self.span.file, self.span.line, self.span.column, self.code.code)

    def to_json(self) -> dict:
        out = {
            "code": self.code.code,
            "name": self.code.name,
            "severity": self.level.value,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "rule": self.rule,
            "help": self.help,
        }
        if self.related:
            out["related"] = [
                {"message": r.message, "file": r.span.file, "line": r.span.line, "column": r.span.column}
                for r in self.related
            ]
        if self.witness is not None:
            out["witness"] = self.witness
        return out


def sort_diagnostics(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=Diagnostic.sort_key)


def has_errors(diags: list[Diagnostic]) -> bool:
    return any(d.level is Severity.ERROR for d in diags)


# ---- rendering -------------------------------------------------------------

MAX_SHOWN_LINE = 110  # longer source lines are shown as a window around the span


def _caret_block(source: Source | None, span: Span, gutter: int) -> list[str]:
    if source is None or span.line <= 0:
        return []
    text = source.line_text(span.line).expandtabs(1)
    pad = " " * gutter
    start = max(span.column, 1)
    end = span.end_column if span.end_line == span.line else len(text) + 1
    width = max(end - start, 1)
    if len(text) > MAX_SHOWN_LINE:
        # Show a window that starts a little before the span.
        left = max(start - 1 - 30, 0)
        shown = text[left:left + MAX_SHOWN_LINE]
        prefix = "..." if left > 0 else ""
        suffix = "..." if left + MAX_SHOWN_LINE < len(text) else ""
        text = prefix + shown + suffix
        start = start - left + len(prefix)
        width = max(min(width, MAX_SHOWN_LINE - (start - 1 - len(prefix))), 1)
    return [
        f"{pad} |",
        f"{span.line:>{gutter}} | {text}",
        f"{pad} | {' ' * (start - 1)}{'^' * width}",
    ]


def render_text(diag: Diagnostic, sources: dict[str, Source]) -> str:
    """rustc-style: location, severity[code], the line, carets, help."""
    span = diag.span
    gutter = max(len(str(span.line)), 1)
    lines = [f"{span.location}: {diag.level.value}[{diag.code.code}]: {diag.message}"]
    lines += _caret_block(sources.get(span.file), span, gutter)
    for rel in diag.related:
        lines.append(f"{' ' * gutter} = note: {rel.message} at {rel.span.location}")
    if diag.witness is not None:
        lines.append(f"{' ' * gutter} = witness: {json.dumps(diag.witness, sort_keys=True)}")
    if diag.help:
        lines.append(f"{' ' * gutter} = help: {diag.help}")
    return "\n".join(lines)


JSON_FORMAT_VERSION = 1


def render_json(diags: list[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diags], indent=2, ensure_ascii=False)


def render_sarif(diags: list[Diagnostic], tool_version: str) -> str:
    """SARIF 2.1.0, the format code-scanning services read."""
    used = sorted({d.code.code for d in diags})
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}
    run = {
        "tool": {
            "driver": {
                "name": "routelang",
                "version": tool_version,
                "rules": [
                    {"id": c, "name": CODES[c].name, "shortDescription": {"text": CODES[c].summary}}
                    for c in used
                ],
            }
        },
        "results": [
            {
                "ruleId": d.code.code,
                "level": level[d.level],
                "message": {"text": d.message + (f" (help: {d.help})" if d.help else "")},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": d.span.file},
                            "region": {
                                "startLine": max(d.span.line, 1),
                                "startColumn": max(d.span.column, 1),
                                "endLine": max(d.span.end_line, 1),
                                "endColumn": max(d.span.end_column, 1),
                            },
                        }
                    }
                ],
            }
            for d in diags
        ],
    }
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)
