"""The request history from the gateway (`serve --registry`): one row per
request a router handled, through the registry's batched writer
(`registry/history.py`). The request path builds the row, a tuple of plain
values (`row`), while what it reads is still in the CPU's caches, and appends
it to the writer's queue; the writer process narrows, encodes and writes it.

What the handler knows beyond the Exchange (which router and version, the
decision, the client's key id, the body when capturing) is collected in a
`Routed` as the request goes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from routelang.registry import history, rows
from routelang.runtime.operators import lookup

from . import errors

if TYPE_CHECKING:
    from aiohttp import web

    from . import plan
    from .exchange import Exchange


@dataclass(slots=True)
class Routed:
    loaded: plan.Loaded | None = None       # the version the request runs on
    decision: plan.Decision | None = None
    doc: dict | None = None
    body: bytes | None = None               # kept only when capturing
    client_key_id: str | None = None
    tenant_key: object | None = None        # the tenancy.keys.TenantKey, with tenants on
    ticket: object | None = None            # tenants.Ticket: the request's hold, settled by _account


def outcome(ex: Exchange, status: int) -> str:
    """The row's `status`: ok, unmatched, client_disconnected or error."""
    if ex.error is None and 200 <= status < 300:
        return "ok"
    if ex.error == errors.NO_MATCHING_RULE.code:
        return "unmatched"
    if status == 499:
        return "client_disconnected"
    return "error"


def first_target(attempts: list[dict]) -> tuple[str | None, str | None, bool | None]:
    """(the first target, its outcome, whether another target was called after it) from the
    attempts: the first target's outcome is that of its last try (its own retries included), so
    a split arm is judged by its own target, not by the arm it fell over to."""
    if not attempts:
        return None, None, None
    first = attempts[0]["target"]
    outcome = attempts[0]["outcome"]
    failed_over = False
    for attempt in attempts[1:]:
        if attempt["target"] == first:
            outcome = attempt["outcome"]
        elif "ms" in attempt:   # called (a target skipped for its open breaker was not)
            failed_over = True
    return first, outcome, failed_over


class Recorder:
    """`dropped`: the metric counting rows the writer's full queue refused (the database down
    or slower than the requests for longer than the queue holds)."""

    def __init__(self, writer: history.HistoryWriter, capture: bool = False, dropped=None):
        self.writer = writer
        self.capture = capture
        self.dropped = dropped

    def record(self, ex: Exchange, routed: Routed, status: int, total_s: float, cost: float | None,
               response: web.StreamResponse | None) -> None:
        body = captured = None
        if self.capture and routed.body is not None:
            body, captured = routed.body, ex.captured
            if not captured and response is not None and isinstance(getattr(response, "body", None), bytes):
                captured = response.body
        at = time.time()
        capture = None if body is None else (ex.id, at, body, captured)
        if not self.writer.record(row(ex, routed, status, total_s, cost, at), capture) and self.dropped is not None:
            self.dropped.inc()

    def close(self) -> None:
        self.writer.close()


def row(ex: Exchange, routed: Routed, status: int, total_s: float, cost: float | None, at: float) -> rows.RawRow:
    """The history row (rows.RawRow) of a request the gateway finished."""
    decision = routed.decision
    rule = None if decision is None else decision.rule
    selected, sticky = (), None
    split_label = None if decision is None else decision.split_label
    if rule is not None and decision.attempts:
        selected = decision.attempts[:max(decision.picked, 1)]
        if rule.selection.sticky_by is not None:
            sticky = rows.sticky_hash(lookup(routed.doc, rule.selection.sticky_by))
    usage = ex.usage
    attempts = ex.attempts
    first, first_outcome, failed_over = first_target(attempts)
    return (ex.id, at, routed.loaded.name, routed.loaded.version, None if rule is None else rule.name,
            [rows.target_fields(t) for t in selected], attempts,
            outcome(ex, status), total_s * 1000, None if ex.ttft_s is None else ex.ttft_s * 1000,
            None if usage is None else usage.prompt_tokens, None if usage is None else usage.completion_tokens,
            cost, split_label, sticky, routed.client_key_id, status, ex.error, rows.GATEWAY, first, first_outcome,
            failed_over)
