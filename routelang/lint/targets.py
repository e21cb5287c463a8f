"""Target settings that the checker accepts but that defeat their purpose."""

from __future__ import annotations

from ..diagnostics import Diagnostic, Severity
from .registry import lint_rule

W = Severity.WARNING

PROBE_TIMEOUT = lint_rule(
    "RL336", "probe-timeout-not-under-interval", W, "a health probe's timeout is not shorter than its interval",
    what="`health_check { interval I timeout T }` with T at least I.",
    why="Probes run one after another: a stalled endpoint is then probed every I + T, at least twice the "
        "interval written, and is noticed a whole timeout later than the interval promises.",
    example='target gpu = custom("llama", "http://gpu:8000") { health_check { interval 5s timeout 10s } }',
    fix="Give the probe a timeout well under the interval (a few seconds), or probe less often.",
)


@PROBE_TIMEOUT.check
def probe_timeout_not_under_interval(ctx):
    reported = set()  # a provider's or profile's setting is written once, whatever uses it
    for rule in ctx.router.rules:
        for target in rule.strategy.targets:
            check = target.health_check
            if check is None or check.timeout_ms is None or check.timeout_ms < check.interval_ms:
                continue
            span = target.spans.get("health_check.timeout", target.span)
            where = (span.file, span.line, span.column)  # spans compare equal whatever they hold
            if where in reported:
                continue
            reported.add(where)
            yield Diagnostic(PROBE_TIMEOUT.code,
                             f"the health probe's timeout ({check.timeout_ms}ms) is not shorter than its interval "
                             f"({check.interval_ms}ms)", span, help="give the probe a timeout well under the interval")
